"""Fixtures of the service tests: the Bento served by `bentoml serve` once per session.

The trained models it serves (``pinned_env``) are tests/conftest.py's: the benchmark and
deployment tests use them too.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.service.servers import start_server, stop_server


@pytest.fixture(scope="session")
def server_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serve") / "serve.log"


@pytest.fixture(scope="session")
def served(
    pinned_env: dict[str, str], server_log: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`bentoml serve service:F1Predictor` on a free port, as users run it: (process, url)."""
    proc, url = start_server("service:F1Predictor", pinned_env, server_log)
    try:
        yield proc, url
    finally:
        stop_server(proc)


@pytest.fixture(scope="session")
def server(served: tuple[subprocess.Popen[bytes], str]) -> str:
    """The URL of the session's server."""
    return served[1]
