"""Where the time goes: py-spy on the serving processes under load, summarised.

py-spy is optional (``PY_SPY=/path/to/py-spy`` or on PATH; ``make bench`` installs it
in .tools). It samples only while profiling, in an extra load run that is not part of
the timed table (sampling costs the server CPU).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

# A sample belongs to every category one of its frames matches (inclusive time).
CATEGORIES: dict[str, tuple[str, ...]] = {
    "model (lightgbm predict)": ("lightgbm/",),
    "pandas": ("pandas/",),
    "scikit-learn": ("sklearn/",),
    "project features (pipelines/features/)": ("pipelines/features/",),
    "project serving code (pipelines/serving/)": ("pipelines/serving/",),
    "pole estimate (pipelines estimate_pole)": ("estimate_pole (",),
    "pydantic validation/serialisation": ("pydantic/", "pydantic_core"),
    # py-spy shortens namespace-package paths (opentelemetry/trace/__init__.py -> trace/...)
    "OpenTelemetry tracing": (
        "opentelemetry",
        "OpenTelemetry",
        "Tracer.",
        "Span.",
        "(trace/",
        "_semconv",
        "(asgi/__init__.py",
        "(context/",
    ),
    "Prometheus metrics": ("prometheus_client/",),
    "logging (access log)": ("logging/__init__.py", "access.py", "/logging/"),
    "inter-service client (aiohttp/httpx)": ("aiohttp/", "httpx/", "httpcore/"),
    "pickle (de)serialisation": ("pickle", "_pickle", "serde.py"),
    "BentoML API layer (_bentoml_impl/_bentoml_sdk)": ("_bentoml_impl/", "_bentoml_sdk/"),
    "BentoML batching dispatcher": ("dispatcher.py",),
    "HTTP server (uvicorn/h11/httptools)": ("uvicorn/", "h11/", "httptools"),
    "ASGI framework (starlette/fastapi)": ("starlette/", "fastapi/"),
    "asyncio event loop": ("asyncio/",),
    "json": ("json/",),
}

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy_path() -> str | None:
    given = os.environ.get("PY_SPY")
    if given and os.access(given, os.X_OK):
        return given
    return shutil.which("py-spy")


def record_command(py_spy: str, pid: int, seconds: float, out: Path, rate: int = 100) -> list[str]:
    return [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        f"{max(1, round(seconds))}",
        "--rate",
        str(rate),
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
    ]


def dump_command(py_spy: str, pid: int) -> list[str]:
    return [py_spy, "dump", "--pid", str(pid), "--nonblocking"]


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    """py-spy ``--format raw`` (collapsed stacks): ``frame;frame;... count`` per line."""
    stacks = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        stacks.append((stack.split(";"), int(count)))
    return stacks


def _short(frame: str) -> str:
    m = _FRAME.match(frame)
    if not m:
        return frame
    return f"{m.group('func')} ({m.group('file')})"


def summarise(text: str, seconds: float, rate: int, top: int = 12) -> dict[str, Any]:
    """Total samples, share per category (inclusive) and the top leaf functions (self)."""
    stacks = parse_collapsed(text)
    total = sum(n for _, n in stacks)
    cats: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, n in stacks:
        joined = ";".join(frames)
        for cat, needles in CATEGORIES.items():
            if any(needle in joined for needle in needles):
                cats[cat] += n
        if frames:
            leaves[_short(frames[-1])] += n
    possible = seconds * rate
    return {
        "samples": total,
        "busy_fraction_of_one_core": total / possible if possible else None,
        "categories_pct": {k: round(100.0 * v / total, 1) for k, v in cats.most_common() if total},
        "top_self_pct": {
            k: round(100.0 * v / total, 1) for k, v in leaves.most_common(top) if total
        },
    }


def run_record(
    py_spy: str, pid: int, seconds: float, out: Path, rate: int = 100
) -> subprocess.Popen[bytes]:
    """Start ``py-spy record`` in the background (caller waits)."""
    return subprocess.Popen(
        record_command(py_spy, pid, seconds, out, rate),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
