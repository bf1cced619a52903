"""Resident memory and CPU time of a server's whole process tree, and of the machine."""

from __future__ import annotations

import contextlib
import os
import platform
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

GONE = (psutil.NoSuchProcess, psutil.AccessDenied)


def tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants (BentoML: the arbiter and one per service)."""
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def rss_bytes(pid: int) -> int:
    """Sum of RSS over the tree (shared pages counted once per process, as `ps` would)."""
    total = 0
    for p in tree(pid):
        with contextlib.suppress(*GONE):
            total += p.memory_info().rss
    return total


def pss_bytes(pid: int) -> int | None:
    """Sum of PSS over the tree (shared pages split between processes); None if unreadable."""
    try:
        return sum(p.memory_full_info().pss for p in tree(pid))
    except (*GONE, AttributeError):
        return None


def cpu_by_pid(*pids: int) -> dict[int, float]:
    """User + system CPU seconds of each live process of the trees rooted at ``pids``."""
    out: dict[int, float] = {}
    for p in (p for root in pids for p in tree(root)):
        with contextlib.suppress(*GONE):
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
    return out


def cpu_delta(
    before: dict[int, float], after: dict[int, float], names: dict[int, str] | None = None
) -> dict[str, float]:
    """CPU used between two ``cpu_by_pid`` snapshots, per process name (default: pid). One
    missing from a snapshot never turns its whole past into a delta; a new one counts from 0."""
    out: dict[str, float] = {}
    for pid, t in after.items():
        name = (names or {}).get(pid, str(pid))
        out[name] = out.get(name, 0.0) + max(0.0, t - before.get(pid, 0.0))
    return out


def process_names(pid: int) -> dict[int, str]:
    """A readable name per process of the tree (BentoML: the service a worker runs)."""
    procs, out = tree(pid), {}
    for p in procs:
        try:
            argv = p.cmdline()
        except GONE:
            continue
        if "--service-name" in argv[:-1]:
            out[p.pid] = argv[argv.index("--service-name") + 1]
        elif p.pid == pid:
            out[p.pid] = "main" if len(procs) == 1 else "arbiter"
        else:
            out[p.pid] = p.name()
    return out


def machine_busy_seconds() -> float:
    """CPU seconds this machine ran something, all cores, since boot (user, nice, system,
    irq, softirq; not idle, iowait or steal; guest time is already in user)."""
    t = psutil.cpu_times()
    return sum(getattr(t, k, 0.0) for k in ("user", "nice", "system", "irq", "softirq"))


@contextlib.contextmanager
def rss_peak(pid: int, every_s: float = 0.25) -> Iterator[list[int]]:
    """Samples the tree's RSS sum in a thread while the block runs; yields ``[peak]``."""
    peak, stop = [0], threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], rss_bytes(pid))
            stop.wait(every_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join(5)


def machine_info() -> dict[str, Any]:
    cpu_model = "unknown"
    with contextlib.suppress(OSError):
        models = [ln for ln in Path("/proc/cpuinfo").read_text().splitlines() if "model name" in ln]
        cpu_model = models[0].split(":", 1)[1].strip() if models else cpu_model
    return {
        "nproc": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def wait_quiet(
    exclude: list[int], threshold_cores: float, max_wait_s: float, window_s: float = 2.0
) -> tuple[float, float]:
    """Wait (bounded) until the rest of the machine (all CPU time but the ``exclude`` trees and
    this process, over ``window_s``) uses < ``threshold_cores``: (that measure, seconds waited)."""
    roots, t0 = [os.getpid(), *exclude], time.monotonic()
    while True:
        t1, busy0, ours0 = time.monotonic(), machine_busy_seconds(), cpu_by_pid(*roots)
        time.sleep(window_s)
        busy = machine_busy_seconds() - busy0
        ours = sum(cpu_delta(ours0, cpu_by_pid(*roots)).values())
        busy = max(0.0, busy - ours) / (time.monotonic() - t1)
        if busy < threshold_cores or time.monotonic() - t0 >= max_wait_s:
            return busy, time.monotonic() - t0
