"""The one place the OpenMP thread count is resolved and validated.

Order: an explicit `n_threads` argument, then `cnnx.set_num_threads(n)`, then the `OMP_NUM_THREADS`
environment variable, then every core of the machine. Whichever it comes from, the count must be an int in
[1, MAX_THREADS], else ValueError (TypeError for a non-int argument) naming where it came from.

MAX_THREADS = 256: a fixed limit (not a multiple of this machine's cores) so a count that works on one
machine works on every other; it is far above the cores anything here runs on (more threads than cores only
adds overhead: each kernel splits its work statically), and far below what breaks libgomp (a team of 5,000
fails to start with "Thread creation failed", 10**5 or 10**6 crash the process).
"""

import os

import numpy as np

MAX_THREADS = 256
_NUM_THREADS: int | None = None


def check_n_threads(n, name: str = "n_threads") -> int:
    """`n` as an int in [1, MAX_THREADS]; TypeError if it is not an int, ValueError if out of range."""
    if isinstance(n, bool) or not isinstance(n, int | np.integer):
        raise TypeError(f"{name} must be a positive int (or None), got {type(n).__name__} {n!r}")
    if not 1 <= n <= MAX_THREADS:
        raise ValueError(f"{name} must be in [1, {MAX_THREADS}], got {n}")
    return int(n)


def set_num_threads(n: int | None) -> None:
    """Set the threads every kernel uses from now on; `None` goes back to OMP_NUM_THREADS / all cores."""
    global _NUM_THREADS
    _NUM_THREADS = None if n is None else check_n_threads(n, "number of threads")


def get_num_threads() -> int:
    """The thread count kernels use when called with `n_threads=None`."""
    return resolve_n_threads(None)


def resolve_n_threads(n_threads: int | None) -> int:
    if n_threads is not None:
        return check_n_threads(n_threads)
    if _NUM_THREADS is not None:
        return _NUM_THREADS
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return check_n_threads(int(env), "OMP_NUM_THREADS")
    return min(os.cpu_count() or 1, MAX_THREADS)
