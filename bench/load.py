"""The load generator: wrk (Debian package), one thread, with a script from bench/wrk.lua that
sends one fixed body or a new one every request (laps jittered: no cache can answer). It prints
one ``WRK-JSON`` line: counts, socket errors and latency percentiles (1 µs resolution)."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any

PERCENTILES = (10, 25, 50, 75, 90, 95, 99)
JITTER_S = 0.25
"""Each lap moves by up to +-0.25 s per request (a plausible practice spread)."""

LUA = Path(__file__).with_name("wrk.lua")


class LoadError(RuntimeError):
    """wrk is missing, failed, overran its bound, or printed no summary."""


def script(body: dict[str, Any], out: Path, jitter: bool = False, seed: int = 20261202) -> Path:
    """A script sending ``body``; with ``jitter`` every driver's practice laps move per
    request (the body is then a ``string.format`` template, one ``%s`` per lap)."""
    laps: list[float] = []
    if jitter:
        body = json.loads(json.dumps(body).replace("%", "%%"))
        for d in body["drivers"]:
            laps += map(float, d["practice"].values())
            d["practice"] = {s: "@LAP@" for s in d["practice"]}
    text = json.dumps(body).replace('"@LAP@"', "%s")
    if "]==]" in text:
        raise ValueError("body not embeddable in the Lua script")
    fill = {"body": text, "laps": ", ".join(f"{t:.3f}" for t in laps), "seed": seed}
    fill |= {"jitter": f"{JITTER_S:f}", "percentiles": ", ".join(map(str, PERCENTILES))}
    out.write_text(Template(LUA.read_text()).substitute(fill))
    return out


def wrk_path() -> str:
    found = os.environ.get("WRK") or shutil.which("wrk")
    if not found:
        raise LoadError("wrk not found: `apt-get install wrk` (make bench-deps installs it)")
    return found


def command(url: str, lua: Path, concurrency: int, seconds: float) -> list[str]:
    """A time-bounded load on ``url`` (loopback only)."""
    if not url.startswith(("http://127.0.0.1:", "http://localhost:")):
        raise LoadError(f"refusing to load anything but loopback: {url}")
    flags = ["-t1", f"-c{concurrency}", f"-d{max(1, round(seconds))}s", "--timeout=20s"]
    return [wrk_path(), *flags, "-s", str(lua), url]


def parse(text: str) -> dict[str, Any]:
    """The ``WRK-JSON`` line of the script's ``done()``, with the counts the report reads:
    ``responses`` are completed HTTP answers, ``errors`` socket failures by kind."""
    line = next((ln for ln in text.splitlines() if ln.startswith("WRK-JSON ")), None)
    if line is None:
        raise LoadError(f"no WRK-JSON line in wrk's output: {text[-300:]!r}")
    d = json.loads(line.removeprefix("WRK-JSON "))
    n, bad, seconds = int(d.pop("requests")), int(d.pop("status_errors")), d["duration_s"]
    errors = {k: int(d.pop(k)) for k in ("connect", "read", "write", "timeout")}
    errors = {k: v for k, v in errors.items() if v}
    if not n:  # no latency without an answer
        d |= {"percentiles_s": {}, "mean_s": None, "min_s": None, "max_s": None}
    return d | {
        "responses": n,
        "ok": n - bad,
        "requests": n + sum(errors.values()),
        "failed": bad + sum(errors.values()),
        "ok_rps": (n - bad) / seconds if seconds > 0 else 0.0,
        "errors": errors,
        "failures_by_kind": ({"non-2xx": bad} if bad else {}) | errors,
    }


def pct_ms(result: dict[str, Any], p: int) -> float | None:
    v = result["percentiles_s"].get(str(p))
    return None if v is None else v * 1000.0


@dataclass
class Run:
    result: dict[str, Any]
    output: str
    cpu: dict[str, float]
    """wrk's own CPU (it shares the cores): ``cpu_s``, ``wall_s`` and ``cores_used``."""


def run(cmd: list[str], max_wall_s: float) -> Run:
    """Run wrk (killed past ``max_wall_s``), read its CPU time, parse its summary."""
    before, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max_wall_s)
    except subprocess.TimeoutExpired as exc:
        raise LoadError(f"{cmd[0]} still running after {max_wall_s:.0f} s: killed") from exc
    wall, after = time.monotonic() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        raise LoadError(f"{cmd[0]} exited with {proc.returncode}: {out[-500:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    cores = cpu / wall if wall > 0 else 0.0
    return Run(parse(out), out, {"cpu_s": cpu, "wall_s": wall, "cores_used": cores})
