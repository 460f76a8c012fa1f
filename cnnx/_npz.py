"""Reading an untrusted `.npz` (checkpoints, quantised models, the MNIST cache) without trusting its sizes.

`numpy.load` allocates whatever a member's header claims and inflates whatever the zip holds, so a 2.5 MB
file can take gigabytes before anything is checked. `read_npz` instead checks, for every member and before
any array data is read:
  * the zip directory: member names (`<key>.npy`, no duplicates), each member's uncompressed size from its
    zip header, and their sum against `max_bytes` (zipfile never inflates a member past that size, and a
    CRC mismatch is an error, so the header bounds the memory);
  * the `.npy` header: a plain (non-object) dtype and a shape whose byte size, plus the header, is exactly
    the member's size;
  * the caller's policy `check(key, dtype, shape)` (which keys, dtypes and shapes it accepts).
Only then are the arrays read (no pickles: `allow_pickle=False`). Every defect raises `NpzError` (a
ValueError) with one line saying what is wrong.

`json_loads` parses the JSON such files carry, after checking its length and nesting depth (the json module
recurses once per level: 100,000 nested brackets would raise RecursionError).
"""

from __future__ import annotations

import json
import os
import re
import zipfile
import zlib
from collections.abc import Callable

import numpy as np

MAX_JSON_DEPTH = 64
MAX_JSON_CHARS = 16 * 2**20
MAX_MEMBERS = 10_000


class NpzError(ValueError):
    """An `.npz` that is unreadable, inconsistent, or not what the caller's policy accepts."""


def read_npz(path: str | os.PathLike, max_bytes: int,
             check: Callable[[str, np.dtype, tuple], None] | None = None,
             required: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """{key: array} of the `.npz` at `path`, every size checked before it is allocated (see the module
    docstring). `check` raises NpzError (or ValueError/TypeError) for a member it does not accept; the keys
    in `required` must all be present ("missing ..." otherwise, before any other check)."""
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > MAX_MEMBERS:
                raise NpzError(f"{len(infos)} members, more than {MAX_MEMBERS}")
            names = [i.filename for i in infos]
            if len(set(names)) != len(names):
                raise NpzError("duplicate member names")
            missing = [k for k in required if k + ".npy" not in names]
            if missing:
                raise NpzError(f"missing {', '.join(missing)}")
            total = sum(i.file_size for i in infos)
            if total > max_bytes:
                raise NpzError(f"its arrays would take {total} bytes uncompressed, more than the limit of "
                               f"{max_bytes} bytes")
            headers = {}
            for info in infos:
                if not info.filename.endswith(".npy"):
                    raise NpzError(f"member {info.filename!r} is not a .npy array")
                key = info.filename[: -len(".npy")]
                with zf.open(info) as f:
                    dtype, shape, offset = _npy_header(f, key)
                count = 1
                for s in shape:
                    count *= s
                if offset + count * dtype.itemsize != info.file_size:
                    raise NpzError(f"member {key!r}: its header says {dtype}{shape} "
                                   f"({count * dtype.itemsize} bytes) but the member holds "
                                   f"{info.file_size - offset} bytes of data")
                if check is not None:
                    try:
                        check(key, dtype, shape)
                    except (TypeError, ValueError) as e:
                        raise NpzError(f"member {key!r}: {e}") from None
                headers[key] = info
            arrays = {}
            for key, info in headers.items():
                with zf.open(info) as f:
                    arrays[key] = np.lib.format.read_array(f, allow_pickle=False)
            return arrays
    except NpzError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, TypeError, OverflowError,
            NotImplementedError, RuntimeError) as e:
        # BadZipFile: not a zip / CRC mismatch; ValueError: numpy's header parser; NotImplementedError: an
        # unsupported zip compression; RuntimeError: an encrypted member
        raise NpzError(f"unreadable .npz (truncated or corrupt?): {type(e).__name__}: {e}") from None


def _npy_header(f, key: str) -> tuple[np.dtype, tuple, int]:
    """(dtype, shape, header length) of the .npy stream `f`, refusing object dtypes and Fortran order."""
    fmt = np.lib.format
    version = fmt.read_magic(f)
    if version == (1, 0):
        shape, fortran, dtype = fmt.read_array_header_1_0(f)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = fmt.read_array_header_2_0(f)
    else:
        raise NpzError(f"member {key!r}: unsupported .npy version {version}")
    if dtype.hasobject:
        raise NpzError(f"member {key!r} holds Python objects (dtype {dtype}); refusing to unpickle")
    if fortran and len(shape) > 1:
        raise NpzError(f"member {key!r} is in Fortran order; cnnx writes C order")
    if any(not isinstance(s, int) or s < 0 for s in shape):
        raise NpzError(f"member {key!r} has an invalid shape {shape}")
    return dtype, tuple(shape), f.tell()


_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(r"[\[\]{}]")


def json_loads(text: str, what: str = "JSON"):
    """json.loads after checking the length (MAX_JSON_CHARS) and nesting depth (MAX_JSON_DEPTH); ValueError
    (json.JSONDecodeError is one) naming `what` otherwise."""
    if not isinstance(text, str):
        raise ValueError(f"{what} must be a string, got {type(text).__name__}")
    if len(text) > MAX_JSON_CHARS:
        raise ValueError(f"{what} is {len(text)} characters long, more than {MAX_JSON_CHARS}")
    depth = 0
    for m in _BRACKET.finditer(_STRING.sub("", text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_JSON_DEPTH:
            raise ValueError(f"{what} is nested more than {MAX_JSON_DEPTH} levels deep")
    return json.loads(text)
