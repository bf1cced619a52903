"""Process-tree accounting: CPU deltas per process, memory sums, the machine's rest."""

from __future__ import annotations

import os
import subprocess
import sys

from bench import proctree


def test_cpu_delta_is_per_process() -> None:
    before = {1: 10.0, 2: 50.0}
    # 2 vanished from the second listing, 3 appeared: neither turns a total into a delta
    after = {1: 12.5, 3: 0.75}
    assert proctree.cpu_delta(before, after) == {"1": 2.5, "3": 0.75}
    assert sum(proctree.cpu_delta(after, after).values()) == 0.0


def test_tree_sums_cover_children() -> None:
    code = (
        "import time\nt=time.time()\nwhile time.time()-t<0.6: pass\n"
        "print('up', flush=True)\ntime.sleep(30)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        # measured once the child runs Python: right after the fork its RSS is a few KiB
        assert child.stdout is not None and child.stdout.readline().strip() == "up"
        me = os.getpid()
        pids = {p.pid for p in proctree.tree(me)}
        assert {me, child.pid} <= pids
        assert len(proctree.tree(me)) >= 2
        assert proctree.rss_bytes(me) > proctree.rss_bytes(child.pid) > 1_000_000
        before = proctree.cpu_by_pid(me)
        import time

        time.sleep(1.0)
        used = sum(proctree.cpu_delta(before, proctree.cpu_by_pid(me)).values())
        assert 0.0 <= used < 2.0
        assert sum(proctree.cpu_by_pid(me).values()) >= sum(proctree.cpu_by_pid(child.pid).values())
        assert sum(proctree.cpu_by_pid(child.pid).values()) > 0.0
        with proctree.rss_peak(me, every_s=0.05) as peak:
            time.sleep(0.3)
        assert peak[0] >= proctree.rss_bytes(child.pid) > 1_000_000
    finally:
        child.kill()
        child.communicate()  # reaps it and closes its pipe


def test_cpu_by_process_name() -> None:
    names = {1: "front", 2: "stage", 3: "stage"}
    got = proctree.cpu_delta({1: 1.0, 2: 1.0}, {1: 2.0, 2: 1.5, 3: 0.25}, names)
    assert got == {"front": 1.0, "stage": 0.75}
    assert proctree.process_names(os.getpid())[os.getpid()] in ("main", "arbiter")


def test_rest_of_the_machine_is_a_fraction_of_its_cores() -> None:
    # ticks are 10 ms: not shorter than a second; a threshold above the cores returns at once
    busy, waited = proctree.wait_quiet([], threshold_cores=100.0, max_wait_s=5, window_s=1.0)
    assert 0.0 <= busy <= (os.cpu_count() or 1) + 0.1 and 1.0 <= waited < 5
    # a threshold nothing can meet: it gives up after max_wait_s
    busy, waited = proctree.wait_quiet([], threshold_cores=-1.0, max_wait_s=1.5, window_s=1.0)
    assert 1.5 <= waited < 4


def test_machine_info() -> None:
    info = proctree.machine_info()
    assert info["nproc"] == os.cpu_count()
    assert info["memory_gib"] > 0 and info["cpu_model"]
