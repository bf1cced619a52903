"""What runs inside the served process tree (issue 14): read from /proc, not assumed."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.service.servers import worker_pid

pytestmark = pytest.mark.slow

SERVICES = ("F1Predictor", "f1_stage1", "f1_stage2")


def _mapped(pid: int) -> str:
    """The shared objects a process has mapped (its imported C extensions among them)."""
    return Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_process_runs_uvloop_and_parses_http_in_c(
    served: tuple[subprocess.Popen[bytes], str], service: str
) -> None:
    # uvicorn chooses them itself when importable (loop="auto", http="auto"); without them
    # each hop of the composed shape parsed HTTP in pure Python (h11: ~16 % of a model
    # service's CPU at c=1) on the slower asyncio loop.
    maps = _mapped(worker_pid(served[0].pid, service))
    assert "/uvloop/" in maps, f"{service} runs without uvloop"
    assert "/httptools/" in maps, f"{service} parses HTTP without httptools"


@pytest.mark.parametrize("service", ("arbiter", "f1_stage1", "f1_stage2"))
def test_processes_without_the_snapshot_never_load_pandas(
    served: tuple[subprocess.Popen[bytes], str], service: str
) -> None:
    # pandas + pyarrow are ~70-85 MiB per process; only the front (which opens the feature
    # snapshot) needs them. That saving pays for the second front worker (issue 14).
    pid = served[0].pid if service == "arbiter" else worker_pid(served[0].pid, service)
    maps = _mapped(pid)
    for lib in ("/pandas/", "/pyarrow/", "/sklearn/"):
        assert lib not in maps, f"{service} loaded {lib.strip('/')}"
    if service != "arbiter":
        assert "/lightgbm/" in maps  # the models are loaded there, just without pandas
