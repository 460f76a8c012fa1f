"""The one place the OpenMP thread count is resolved.

Order: an explicit `n_threads` argument, then `cnnx.set_num_threads(n)`, then the `OMP_NUM_THREADS`
environment variable, then every core of the machine.
"""

import os

_NUM_THREADS: int | None = None


def set_num_threads(n: int | None) -> None:
    """Set the threads every kernel uses from now on; `None` goes back to OMP_NUM_THREADS / all cores."""
    global _NUM_THREADS
    if n is not None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"number of threads must be a positive int, got {n!r}")
    _NUM_THREADS = n


def get_num_threads() -> int:
    """The thread count kernels use when called with `n_threads=None`."""
    return resolve_n_threads(None)


def resolve_n_threads(n_threads: int | None) -> int:
    if n_threads is not None:
        if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
            raise ValueError(f"n_threads must be a positive int or None, got {n_threads!r}")
        return n_threads
    if _NUM_THREADS is not None:
        return _NUM_THREADS
    env = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    return os.cpu_count() or 1
