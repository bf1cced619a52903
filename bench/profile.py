"""Where the time goes: py-spy (optional; `make bench` installs it in .tools) on the serving
processes, in an extra load run outside the timed table (sampling costs the server CPU)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

CATEGORIES: dict[str, str] = {
    "model (lightgbm predict)": "lightgbm/",
    "pandas": "pandas/",
    "scikit-learn": "sklearn/",
    "project features (pipelines/features/)": "pipelines/features/",
    "project serving code (pipelines/serving/)": "pipelines/serving/",
    "pole estimate (pipelines estimate_pole)": "estimate_pole",
    "pydantic validation/serialisation": "pydantic/ pydantic_core",
    "OpenTelemetry tracing": "opentelemetry OpenTelemetry Tracer. Span. (trace/ _semconv "
    "(asgi/__init__.py (context/",
    "Prometheus metrics": "prometheus_client/",
    "logging (access log)": "logging/__init__.py access.py /logging/",
    "inter-service client (aiohttp/httpx)": "aiohttp/ httpx/ httpcore/",
    "pickle (de)serialisation": "pickle _pickle serde.py",
    "BentoML API layer (_bentoml_impl/_bentoml_sdk)": "_bentoml_impl/ _bentoml_sdk/",
    "BentoML batching dispatcher": "dispatcher.py",
    "HTTP server (uvicorn/h11/httptools)": "uvicorn/ h11/ httptools",
    "ASGI framework (starlette/fastapi)": "starlette/ fastapi/",
    "asyncio event loop": "asyncio/",
    "json": "json/",
}
"""Space-separated needles per category; a sample counts in every category a frame matches.
py-spy shortens namespace-package paths: opentelemetry/trace/__init__.py is trace/__init__.py."""

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def summarise(text: str, seconds: float, rate: int, top: int = 12) -> dict[str, Any]:
    """Total samples, share per category (inclusive) and the top leaf functions (self), from
    py-spy ``--format raw`` (collapsed stacks: ``frame;frame;... count`` per line)."""
    cats: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in text.splitlines():
        joined, _, count = line.strip().rpartition(" ")
        if not (joined and count.isdigit()):
            continue
        for cat, needles in CATEGORIES.items():
            if any(needle in joined for needle in needles.split()):
                cats[cat] += int(count)
        leaf = joined.split(";")[-1]
        found = _FRAME.match(leaf)
        leaves[f"{found.group('func')} ({found.group('file')})" if found else leaf] += int(count)
    total = sum(leaves.values())
    possible = seconds * rate

    def pct(counts: list[tuple[str, int]]) -> dict[str, float]:
        return {k: round(100.0 * v / total, 1) for k, v in counts if total}

    return {
        "samples": total,
        "busy_fraction_of_one_core": total / possible if possible else None,
        "categories_pct": pct(cats.most_common()),
        "top_self_pct": pct(leaves.most_common(top)),
    }


def profile_server(srv: Any, script: Path, seconds: float, out_dir: Path) -> dict[str, Any]:
    """py-spy (``PY_SPY`` or PATH) on every process of ``srv`` under wrk at c=64."""
    from bench import load, proctree

    spy, rate = os.environ.get("PY_SPY"), 100
    if not (spy and os.access(spy, os.X_OK)) and not (spy := shutil.which("py-spy")):
        return {"skipped": "py-spy not found (PY_SPY or PATH)"}
    names = proctree.process_names(srv.pid)
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = load.command(f"{srv.url}/predict_full", script, 64, seconds + 4)
    loader = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(2)
    raws = {pid: out_dir / f"profile-{srv.spec.name}-{pid}.raw" for pid in names}
    record = [spy, "record", "--duration", f"{max(1, round(seconds))}", "--rate", str(rate)]
    record += ["--format", "raw", "--nonblocking"]  # collapsed stacks
    spies = {}
    for pid, raw in raws.items():
        cmd = [*record, "--pid", str(pid), "--output", str(raw)]
        spies[pid] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    processes: list[dict[str, Any]] = []
    for pid, sp in spies.items():
        _, err = sp.communicate(timeout=seconds + 60)
        text = raws[pid].read_text() if raws[pid].exists() else ""
        summary = summarise(text, seconds, rate)
        error = None if text else err.decode(errors="replace")[-500:]
        processes.append({"pid": pid, "name": names[pid], "summary": summary, "error": error})
    res = load.parse(loader.communicate(timeout=seconds + 60)[0])
    processes.sort(key=lambda r: -(r["summary"].get("samples") or 0))
    return {
        "server": srv.spec.name,
        "endpoint": "/predict_full",
        "concurrency": 64,
        "seconds": seconds,
        "rate": rate,
        "load": {"ok_rps": res["ok_rps"], "p99_ms": load.pct_ms(res, 99), "failed": res["failed"]},
        "processes": processes,
    }
