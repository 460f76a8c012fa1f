"""Worker processes that cannot outlive, hang or silently fail their parent: the fan-out of `cnnx cosim`.

* Each worker is spawned (not forked), asks the kernel to SIGKILL it when its parent dies
  (prctl(PR_SET_PDEATHSIG) through ctypes, Linux) and also runs a watchdog thread that exits when its
  parent pid changes (everywhere else, and the moment between spawn and prctl). So SIGKILL of the parent
  leaves no worker behind.
* Each worker has its own pipe; the parent waits on the pipes AND the process sentinels at once, so a
  worker that dies (killed, crashed in C) is noticed at once, not after the others finish.
* A worker that reports no progress for `stall_timeout` seconds (stopped with SIGSTOP, hung) fails the run
  with a message naming it.
* Whatever ends the wait (an error, Ctrl-C, SIGTERM turned into an exception), the `finally` kills every
  worker still alive and reaps it.
* While the workers start, SIGINT and SIGTERM are held back (`_held_signals`): the parent's handler runs
  only once every worker has its job, and the workers inherit the blocked mask, so the terminal's Ctrl-C
  (sent to the whole process group) never prints a KeyboardInterrupt traceback from a half-started worker.
Failures raise `CheckFailed` (the CLI's exit 1) with one line.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence

from ._cliutil import CheckFailed

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, poll_s: float = 0.5) -> None:
    """Make this process end when `parent_pid` is no longer its parent: the kernel's parent-death signal on
    Linux, plus a watchdog thread polling os.getppid() (covers other systems and a parent that died before
    the prctl call)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="cnnx-parent-watchdog", daemon=True).start()


_HELD = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _held_signals():
    """Defer SIGINT/SIGTERM for the block: blocked in this thread (children started here inherit the mask)
    and, should another thread take one, recorded by a handler; re-delivered when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    old = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in _HELD}
    signal.pthread_sigmask(signal.SIG_BLOCK, _HELD)
    try:
        yield
    finally:
        try:
            for s, h in old.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)  # None: set outside Python
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, _HELD)  # a pending one goes to the caller's handler
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)  # to the handler the caller had (KeyboardInterrupt, Terminated ...)


def _entry(conn, parent_pid: int, target: Callable) -> None:
    """A worker's main: receive its job, report ("progress", k) as `target(*job, progress=...)` goes, then
    ("done", result) or ("error", one line, traceback). Ctrl-C is the parent's to handle (it stops the
    workers): SIGINT stays ignored here; SIGTERM (blocked while the parent started us) ends the worker."""
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])
    try:
        args = conn.recv()
    except (EOFError, OSError):  # the parent is gone before it sent the job
        os._exit(1)
    try:
        res = target(*args, progress=lambda k: conn.send(("progress", k)))
        conn.send(("done", res))
    except BaseException as e:  # the parent must hear of any failure
        with contextlib.suppress(Exception):
            conn.send(("error", f"{type(e).__name__}: {e}".splitlines()[0], traceback.format_exc()))
    finally:
        conn.close()


def _send_quietly(conn, obj) -> None:
    # the worker died (or was stopped and killed) meanwhile: OSError/ValueError; or the parent, stopping,
    # closed the connection under this thread's write (its handle is then None: TypeError)
    with contextlib.suppress(OSError, ValueError, TypeError):
        conn.send(obj)


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def stop_processes(procs, grace_s: float = 1.0) -> None:
    """SIGKILL every process still alive (a stopped one too: SIGTERM would wait for SIGCONT) and reap it."""
    for p in procs:
        if p.exitcode is None:
            with contextlib.suppress(Exception):
                p.kill()
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))


def run_workers(target: Callable, jobs: Sequence[tuple], *, stall_timeout: float,
                on_progress: Callable[[int], None] | None = None, what: str = "worker",
                on_start: Callable[[list], None] | None = None) -> list:
    """Run `target(*job, progress=callback)` for every job, one spawned process each; return the results in
    job order. `target` must be a module-level function (it is pickled). Raises CheckFailed when a worker
    fails, dies or makes no progress for `stall_timeout` seconds; every worker is stopped on the way out."""
    import multiprocessing as mp
    from multiprocessing import resource_tracker
    from multiprocessing.connection import wait

    ctx = mp.get_context("spawn")
    # Process.start() makes sure the resource tracker runs, and starting it unblocks SIGINT/SIGTERM in this
    # thread (multiprocessing.resource_tracker), which would undo _held_signals for the first worker: so
    # start it first.
    resource_tracker.ensure_running()
    procs, conns = [], []
    results: dict[int, object] = {}
    try:
        with _held_signals():
            for _ in jobs:
                here, there = ctx.Pipe()
                p = ctx.Process(target=_entry, args=(there, os.getpid(), target), daemon=True)
                p.start()
                there.close()  # the parent's copy: the pipe reports EOF once the worker is gone
                procs.append(p)
                conns.append(here)
        # The (large) jobs go out from threads: a worker that is stopped before it reads its job must not
        # block the parent, which times it out below like any stalled worker.
        for conn, job in zip(conns, jobs, strict=True):
            threading.Thread(target=_send_quietly, args=(conn, tuple(job)), name="cnnx-job-sender",
                             daemon=True).start()
        if on_start is not None:
            on_start(procs)
        last = [time.monotonic()] * len(procs)
        pending = set(range(len(procs)))
        while pending:
            wait([conns[i] for i in pending] + [procs[i].sentinel for i in pending], timeout=0.5)
            now = time.monotonic()
            for i in sorted(pending):
                exited = procs[i].exitcode is not None  # before draining: all it sent is in the pipe by now
                while i in pending and conns[i].poll():
                    try:
                        msg = conns[i].recv()
                    except (EOFError, OSError):
                        exited = True
                        break
                    last[i] = now
                    if msg[0] == "progress":
                        if on_progress is not None:
                            on_progress(msg[1])
                    elif msg[0] == "done":
                        results[i] = msg[1]
                        pending.discard(i)
                    else:
                        raise CheckFailed(f"{what} {i} (pid {procs[i].pid}) failed: {msg[1]}")
                if i not in pending:
                    continue
                if exited:
                    procs[i].join(1.0)
                    raise CheckFailed(f"{what} {i} (pid {procs[i].pid}) {_describe_exit(procs[i].exitcode)} "
                                      "before finishing its share")
                if now - last[i] > stall_timeout:
                    raise CheckFailed(f"{what} {i} (pid {procs[i].pid}) made no progress for "
                                      f"{stall_timeout:.0f} s (stopped or hung?); see --worker-timeout")
        return [results[i] for i in range(len(procs))]
    finally:
        stop_processes(procs)
        for c in conns:
            c.close()
