"""Starting, probing and stopping the three servers under test (one process group each)."""

from __future__ import annotations

import json
import os
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
BIN = Path(sys.executable).parent
SERVE_BIN = Path(os.environ.get("F1_BENCH_SERVE_BIN") or BIN)
"""Where the Bento and the plain server run from: `make bench` points this at a venv with
the serving dependencies only (what the Bento installs: no scikit-learn, matplotlib...),
so memory and start-up are those of what ships. The original design needs scikit-learn
and runs from the project's venv."""


@dataclass(frozen=True)
class ServerSpec:
    name: str
    label: str
    description: str

    def argv(self, port: int) -> list[str]:
        if self.name == "bento":
            return [
                str(SERVE_BIN / "bentoml"),
                "serve",
                "service:F1Predictor",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ]
        module = {"original": "bench.original_server", "plain": "bench.plain_server"}[self.name]
        python = sys.executable if self.name == "original" else str(SERVE_BIN / "python")
        return [python, "-m", module, "--host", "127.0.0.1", "--port", str(port)]


SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec(
            "bento",
            "Bento",
            "`bentoml serve service:F1Predictor`: front service + Stage-1 + Stage-2 "
            "services (one process each, plus the arbiter)",
        ),
        ServerSpec(
            "original",
            "Original",
            "FastAPI, 1 uvicorn worker (defaults, access log on), per request a pandas "
            "DataFrame + scikit-learn ColumnTransformer, both models in-process",
        ),
        ServerSpec(
            "plain",
            "Plain",
            "bare Starlette, 1 uvicorn worker, no access log, the project's numpy "
            "features (pipelines.serving.orchestrator.TwoStage) and both models in-process",
        ),
    )
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    spec: ServerSpec
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    started_at: float
    cold_start_s: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout_s: float = 120.0, poll_s: float = 0.05) -> float:
        """Seconds from launch to the first ``/readyz`` 200 (the cold start)."""
        deadline = self.started_at + timeout_s
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.spec.name} exited with {self.proc.returncode}; "
                        f"log tail:\n{tail(self.log)}"
                    )
                try:
                    if client.get(f"{self.url}/readyz").status_code == 200:
                        self.cold_start_s = time.monotonic() - self.started_at
                        return self.cold_start_s
                except httpx.HTTPError:
                    pass
                time.sleep(poll_s)
        raise TimeoutError(f"{self.spec.name} not ready after {timeout_s:.0f} s:\n{tail(self.log)}")

    def post(self, path: str, body: dict[str, Any], timeout_s: float = 30.0) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, timeout=timeout_s)

    def get_text(self, path: str, timeout_s: float = 10.0) -> str:
        r = httpx.get(f"{self.url}{path}", timeout=timeout_s)
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


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def launch(spec: ServerSpec, env: dict[str, str], log_dir: Path) -> RunningServer:
    port = free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / f"{spec.name}.log"
    started = time.monotonic()
    proc = subprocess.Popen(
        spec.argv(port),
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return RunningServer(spec, proc, port, log, started)


# ------------------------------------------------------------------ comparisons


def comparable(body: Any) -> Any:
    """A JSON answer without the fields that legitimately differ (server timing)."""
    if isinstance(body, dict) and isinstance(body.get("metadata"), dict):
        body = json.loads(json.dumps(body))
        body["metadata"].pop("inference_ms", None)
    return body


def first_difference(a: Any, b: Any, path: str = "$") -> str | None:
    """Where two JSON values differ (None when equal)."""
    if type(a) is not type(b):
        return f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                return f"{path}.{k}: missing on one side"
            d = first_difference(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            d = first_difference(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


# ---------------------------------------------------------------------- metrics

BATCH_METRIC = "bentoml_service_adaptive_batch_size"


def batch_histograms(metrics_text: str) -> dict[str, dict[str, float]]:
    """``{service.method: {"sum": s, "count": n}}`` from a Prometheus text exposition."""
    out: dict[str, dict[str, float]] = {}
    for line in metrics_text.splitlines():
        if not line.startswith(BATCH_METRIC + "_sum") and not line.startswith(
            BATCH_METRIC + "_count"
        ):
            continue
        name, _, rest = line.partition("{")
        labels_text, _, value = rest.rpartition("}")
        labels = dict(_labels(labels_text))
        key = f"{labels.get('runner_name', '?')}.{labels.get('method_name', '?')}"
        kind = "sum" if name.endswith("_sum") else "count"
        out.setdefault(key, {"sum": 0.0, "count": 0.0})[kind] += float(value.strip())
    return out


def _labels(text: str) -> list[tuple[str, str]]:
    pairs = []
    for part in text.split('",'):
        k, _, v = part.partition("=")
        if k:
            pairs.append((k.strip(), v.strip().strip('"')))
    return pairs


def batch_delta(
    before: dict[str, dict[str, float]], after: dict[str, dict[str, float]]
) -> dict[str, dict[str, float | None]]:
    """Batches and calls per batch over an interval, per service method."""
    out: dict[str, dict[str, float | None]] = {}
    for key, a in after.items():
        b = before.get(key, {"sum": 0.0, "count": 0.0})
        calls, batches = a["sum"] - b["sum"], a["count"] - b["count"]
        out[key] = {
            "batches": batches,
            "calls": calls,
            "mean_batch_size": calls / batches if batches > 0 else None,
        }
    return out
