"""The servers under test: started and stopped (one process group each), probed, their answers
compared, and the Bento's batch sizes read from ``/metrics``."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
SERVE_BIN = Path(os.environ.get("F1_BENCH_SERVE_BIN") or Path(sys.executable).parent)
"""The Bento's and the plain server's venv: `make bench` gives them the serving dependencies
only, as shipped. The original needs scikit-learn: it runs from the project's venv."""


@dataclass(frozen=True)
class ServerSpec:
    """A server under test: its command (host and port follow) and extra environment."""

    name: str
    description: str
    command: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    scenarios: tuple[str, ...] = ()
    """The scenarios it runs (empty: every one)."""

    def argv(self, port: int) -> list[str]:
        return [*self.command, "--host", "127.0.0.1", "--port", str(port)]


COMMANDS = {
    "bento": (str(SERVE_BIN / "bentoml"), "serve", "service:F1Predictor"),
    "original": (sys.executable, "-m", "bench.baselines", "original"),
    "plain": (str(SERVE_BIN / "python"), "-m", "bench.baselines", "plain"),
}
DESCRIPTIONS = {
    "bento": "`bentoml serve service:F1Predictor`: front service + Stage-1 + Stage-2 services "
    "(one process each, plus the arbiter)",
    "original": "FastAPI, 1 uvicorn worker (defaults, access log on), per request a pandas "
    "DataFrame + scikit-learn ColumnTransformer, both models in-process",
    "plain": "bare Starlette, 1 uvicorn worker, no access log, the project's numpy features "
    "(pipelines.serving.orchestrator.TwoStage) and both models in-process",
}
SERVERS = {name: ServerSpec(name, text, COMMANDS[name]) for name, text in DESCRIPTIONS.items()}
"""A variant is one more entry: another name, a command above and its own ``env``."""
LEDGER_OFF = ("full_c1_fresh", "full_c64", "jitter_c1_fresh", "jitter_c64")
SERVERS["bento_ledger_off"] = ServerSpec(
    "bento_ledger_off",
    "the Bento with its prediction log off (`F1_LEDGER=false`), in " + ", ".join(LEDGER_OFF),
    COMMANDS["bento"],
    {"F1_LEDGER": "false"},
    LEDGER_OFF,
)


@dataclass
class RunningServer:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started_at: float
    cold_start_s: float | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Seconds from launch to the first ``/readyz`` 200 (the cold start)."""
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < self.started_at + timeout_s:
                if self.proc.poll() is not None:
                    tail = self.log.read_text(errors="replace")[-3000:]
                    raise RuntimeError(f"{self.spec.name} exited: {self.proc.returncode}\n{tail}")
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        self.cold_start_s = time.monotonic() - self.started_at
                        return self.cold_start_s
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        raise TimeoutError(f"{self.spec.name} not ready after {timeout_s:.0f} s (see {self.log})")

    def get_text(self, path: str) -> str:
        r = httpx.get(f"{self.url}{path}", timeout=10.0)
        r.raise_for_status()
        return r.text

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM to the server's own process group (it was started in a new session)."""
        if self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def launch(spec: ServerSpec, env: dict[str, str], log_dir: Path) -> RunningServer:
    """Start ``spec`` on a free loopback port with ``env`` and the spec's own environment."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{spec.name}.log"
    started, out = time.monotonic(), log.open("wb")
    proc = subprocess.Popen(
        spec.argv(port),
        cwd=ROOT,
        env=env | spec.env,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return RunningServer(spec, proc, port, log, started)


def answer_difference(a: httpx.Response, b: httpx.Response) -> str | None:
    """How answer ``a`` differs from ``b``: status, warnings header, JSON but for the server's
    timing ``metadata.inference_ms`` (None: alike)."""
    if a.status_code != b.status_code:
        return f"status {a.status_code} != {b.status_code}"
    warn_a, warn_b = a.headers.get("x-f1-warnings"), b.headers.get("x-f1-warnings")
    if warn_a != warn_b:
        return f"X-F1-Warnings {warn_a!r} != {warn_b!r}"
    bodies = [r.json() for r in (a, b)]
    for body in bodies:
        if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
            body["metadata"].pop("inference_ms", None)
    return first_difference(*bodies)


def first_difference(a: Any, b: Any, path: str = "$") -> str | None:
    """Where two JSON values differ (None when equal)."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        if missing := sorted(set(a) ^ set(b)):
            return f"{path}.{missing[0]}: missing on one side"
        pairs = [(f"{path}.{k}", a[k], b[k]) for k in sorted(a)]
    elif isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        pairs = [(f"{path}[{i}]", x, y) for i, (x, y) in enumerate(zip(a, b, strict=True))]
    else:
        return None if a == b else f"{path}: {a!r} != {b!r}"
    return next((d for p, x, y in pairs if (d := first_difference(x, y, p))), None)


_BATCH = re.compile(r"^bentoml_service_adaptive_batch_size_(sum|count)\{(.*)\} (\S+)$", re.M)


def batch_histograms(metrics_text: str) -> dict[str, dict[str, float]]:
    """``{service.method: {"sum": s, "count": n}}`` from a Prometheus text exposition."""
    out: dict[str, dict[str, float]] = {}
    for kind, labels_text, value in _BATCH.findall(metrics_text):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', labels_text))
        key = f"{labels.get('runner_name', '?')}.{labels.get('method_name', '?')}"
        out.setdefault(key, {"sum": 0.0, "count": 0.0})[kind] += float(value)
    return out


def batch_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float | None]]:
    """Batches and calls per batch over an interval, per service method."""
    out: dict[str, dict[str, float | None]] = {}
    for key, a in after.items():
        b = before.get(key, {"sum": 0.0, "count": 0.0})
        calls, batches = a["sum"] - b["sum"], a["count"] - b["count"]
        mean = calls / batches if batches > 0 else None
        out[key] = {"batches": batches, "calls": calls, "mean_batch_size": mean}
    return out
