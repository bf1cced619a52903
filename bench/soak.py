"""Soak: the Bento under steady load for minutes; errors must be zero, memory flat.

    .venv/bin/python -m bench.soak                 # make soak: 5 min at concurrency 64
    .venv/bin/python -m bench.soak --minutes 0.5   # a short check

Load comes from wrk on loopback in 30 s slices. The serving processes' resident memory is
summed after a warm-up slice and after the last one. Writes bench/results/soak-<time>.json;
exits non-zero on any error or >= 10 % growth.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
MAX_GROWTH = 0.10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--minutes", type=float, default=5.0, help="load duration (default 5)")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    ap.add_argument("--slice", type=float, default=30.0, help="seconds per wrk run (default 30)")
    ap.add_argument("--store", type=Path, default=None, help="BENTOML_HOME (default: bench store)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON path")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.run import DEFAULT_STORE, FULL_BODY, ensure_models, server_env

    store = (args.store or DEFAULT_STORE).resolve()
    os.environ["BENTOML_HOME"] = str(store)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
    from bench import load, proctree
    from bench.servers import SERVERS, launch

    ensure_models(store, train=True)
    env = server_env(store, {}) | {"F1_LOG_FORMAT": "json"}
    tags = {k: v for k, v in env.items() if k.endswith("_MODEL")}
    lua = load.script(FULL_BODY, Path(tempfile.mkdtemp()) / "full.lua")
    server = launch(SERVERS["bento"], os.environ | env, BENCH / "results" / "tmp" / "logs")
    slices: list[dict[str, Any]] = []

    def run(seconds: float) -> dict[str, Any]:
        cmd = load.command(f"{server.url}/predict_full", lua, args.concurrency, seconds)
        return load.run(cmd, args.slice + 60).result

    try:
        server.wait_ready()
        run(min(args.slice, 15))  # warm-up: caches, batcher and allocator reach a steady state
        rss_start = proctree.rss_bytes(server.pid)
        n_slices = max(1, round(args.minutes * 60 / args.slice))
        for i in range(n_slices):
            r, rss = run(args.slice), proctree.rss_bytes(server.pid) / 2**20
            p99, errors = load.pct_ms(r, 99), r["failures_by_kind"]
            slices.append({"slice": i, "requests": r["requests"], "failed": r["failed"],
                           "errors": errors, "rps": r["ok_rps"], "p99_ms": p99, "rss_mib": rss})  # fmt: skip
            print(f"[soak] {i + 1}/{n_slices}: {r['ok_rps']:.0f} req/s, p99 {p99 or 0:.1f} ms, "
                  f"errors {errors or 0}, RSS {rss:.0f} MiB", flush=True)  # fmt: skip
        rss_end = proctree.rss_bytes(server.pid)
    finally:
        server.stop()
    requests, errors = (sum(s[k] for s in slices) for k in ("requests", "failed"))
    growth = (rss_end - rss_start) / rss_start
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.soak", *(argv or sys.argv[1:])]),
        "minutes": args.minutes, "concurrency": args.concurrency, "tags": tags,
        "requests": requests, "errors": errors,
        "rss_start_mib": rss_start / 2**20, "rss_end_mib": rss_end / 2**20,
        "rss_growth": growth, "slices": slices, "machine": proctree.machine_info(),
    }  # fmt: skip
    out = args.out or BENCH / "results" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    verdict = errors == 0 and growth < MAX_GROWTH
    print(f"[soak] {requests} requests, {errors} errors, RSS {rss_start / 2**20:.0f} -> "
          f"{rss_end / 2**20:.0f} MiB ({growth:+.1%}) -> {'PASS' if verdict else 'FAIL'}; {out}")  # fmt: skip
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
