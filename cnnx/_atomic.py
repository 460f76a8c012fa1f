"""Atomic file writes, the one way cnnx writes a file a reader may open: a temporary file in the same folder,
flushed to disk, then renamed over the target. Readers see the old file or the whole new one; a crash or
Ctrl-C mid-write leaves nothing half-written behind.

A process killed outright (SIGKILL, power loss) mid-write leaves its temporary file: `.NAME.PID-XXXXXXXX.tmp`
(the writer's pid in the name). `remove_stale_temps` removes those whose writer is gone; every atomic write
calls it for its folder, and `cnnx train --resume` calls it with `all_=True` (the run directory is locked, so
no temporary file there can belong to a live writer; that also covers the older names without a pid).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

# .NAME.PID-RANDOM.tmp (this module's names) or .NAME.RANDOM.tmp (before the pid was part of the name)
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?:(?P<pid>\d+)-)?[A-Za-z0-9_]{8}\.tmp$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def remove_stale_temps(folder: str | os.PathLike, all_: bool = False) -> list[Path]:
    """Remove leftover temporary files of killed atomic writes in `folder`: those whose writer pid is dead,
    or (all_=True, for a folder the caller has locked) every one. Returns the paths removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or not entry.is_file(follow_symlinks=False):
            continue
        pid = m.group("pid")
        if all_ or (pid is not None and int(pid) != os.getpid() and not _alive(int(pid))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb"):
    """`with atomic_write(path) as f: ...` writes `path` only when the block completes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; these files are ordinary user files
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def temp_beside(path: str | os.PathLike) -> str:
    """A new, empty temporary file in `path`'s folder, named as atomic_write names its own (so
    remove_stale_temps knows it), for a writer that opens the file by name itself (Verilator's VCD writer).
    Publish it with `publish_temp`, or unlink it. Raises OSError when the folder cannot take a file."""
    path = Path(path)
    remove_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return tmp


def publish_temp(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished `temp_beside` file over `path` (flushed to disk first, made world-readable)."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def replace_dir(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Publish a folder built in `tmp` (a sibling of `final`) as `final`: whatever stands at `final` (a
    damaged or stale folder a killed run left) is removed first, then the rename is atomic, so readers see no
    folder or the whole new one. Callers remove `tmp` themselves when building it fails."""
    if os.path.exists(final):
        shutil.rmtree(final)
    os.rename(tmp, final)
