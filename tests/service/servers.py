"""Run `bentoml serve` from a test: start it on a free port, wait until ready, stop it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.session import STORE_HOME

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"{url} not ready after {timeout} s")


def start_server(
    target: str, env_extra: dict[str, str], log: Path, timeout: float = 90.0
) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = os.environ | env_extra | {"BENTOML_HOME": str(STORE_HOME), "OMP_NUM_THREADS": "1"}
    bentoml = str(Path(sys.executable).parent / "bentoml")
    with log.open("wb") as out:  # the server writes to its own copy of the file
        proc = subprocess.Popen(
            [bentoml, "serve", target, "--port", str(port), "--host", "127.0.0.1"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, timeout)
    except Exception:
        stop_server(proc)
        raise RuntimeError(f"bentoml serve failed; log:\n{log.read_text()[-3000:]}") from None
    return proc, url


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    import signal

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def serving(env_extra: dict[str, str], log: Path) -> Iterator[str]:
    """`bentoml serve service:F1Predictor` with ``env_extra`` for the block: its URL."""
    proc, url = start_server("service:F1Predictor", env_extra, log)
    try:
        yield url
    finally:
        stop_server(proc)


def worker_pid(server_pid: int, service_name: str) -> int:
    """The pid of a BentoML worker process (``--service-name NAME``) under the server."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        is_worker = ppid == server_pid and b"--service-name" in args
        if is_worker and args[args.index(b"--service-name") + 1].decode() == service_name:
            return int(entry.name)
    raise LookupError(f"no {service_name} worker under pid {server_pid}")


def logged(url: str) -> int:
    """Answers written to the prediction log at ``url``."""
    from pipelines.ledger import db

    engine = db.make_engine(url, 5.0)
    try:
        db.migrate(engine)
        with engine.connect() as conn:
            return db.totals(conn)[1]
    finally:
        engine.dispose()


def wait_logged(url: str, answers: int, timeout: float = 60.0) -> int:
    """The answers in the log once it holds ``answers`` (or ``timeout`` passed): the
    writer works off the request path, so a test waits for it."""
    deadline = time.monotonic() + timeout
    got = logged(url)
    while got < answers and time.monotonic() < deadline:
        time.sleep(0.2)
        got = logged(url)
    return got
