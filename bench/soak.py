"""Soak: the Bento under steady load for minutes; errors must be zero, memory flat.

    .venv/bin/python -m bench.soak                 # make soak: 5 min at concurrency 64
    .venv/bin/python -m bench.soak --minutes 0.5   # a short check

Load comes from hey on loopback in 30 s slices; the resident memory of every serving
process is summed after a warm-up slice and after the last one. Writes
bench/results/soak-<time>.json and exits non-zero on any error or >= 10 % growth.
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
    ap.add_argument("--concurrency", type=int, default=64, help="hey -c (default 64)")
    ap.add_argument("--slice", type=float, default=30.0, help="seconds per hey run (default 30)")
    ap.add_argument("--store", type=Path, default=None, help="BENTOML_HOME (default: bench store)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON path")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.run import DEFAULT_STORE, ensure_models, resolve_tags

    store = (args.store or DEFAULT_STORE).resolve()
    os.environ["BENTOML_HOME"] = str(store)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from bench import proctree
    from bench.hey import hey_command, run_hey
    from bench.servers import SERVERS, launch

    ensure_models(store, train=True)
    tags = resolve_tags({"features": None, "stage1": None, "stage2": None})
    env = {
        "BENTOML_HOME": str(store),
        "F1_FEATURES_MODEL": tags["features"],
        "F1_STAGE1_MODEL": tags["stage1"],
        "F1_STAGE2_MODEL": tags["stage2"],
        "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
        "F1_LOG_FORMAT": "json",
    }
    body = Path(tempfile.mkdtemp()) / "full.json"
    body.write_text(json.dumps({"event": {"season": 2025, "round": 8}}))
    log_dir = BENCH / "results" / "tmp" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    server = launch(SERVERS["bento"], env, log_dir)
    slices: list[dict[str, Any]] = []
    try:
        server.wait_ready()
        url = f"{server.url}/predict_full"
        n_slices = max(1, round(args.minutes * 60 / args.slice))
        # warm-up slice: caches, batcher and allocator reach their steady state first
        run_hey(hey_command(url, body, args.concurrency, min(args.slice, 15)), args.slice + 60)
        rss_start = proctree.rss_bytes(server.pid)
        for i in range(n_slices):
            run = run_hey(hey_command(url, body, args.concurrency, args.slice), args.slice + 60)
            r = run.result
            rss = proctree.rss_bytes(server.pid)
            slices.append({"slice": i, "requests": r.requests, "ok": r.ok,
                           "errors": r.failures_by_kind(), "rps": r.ok_rps,
                           "p99_ms": r.pct_ms(99), "rss_mib": rss / 2**20})  # fmt: skip
            print(f"[soak] {i + 1}/{n_slices}: {r.ok_rps:.0f} req/s, p99 {r.pct_ms(99):.1f} ms, "
                  f"errors {r.failures_by_kind() or 0}, RSS {rss / 2**20:.0f} MiB", flush=True)  # fmt: skip
        rss_end = proctree.rss_bytes(server.pid)
    finally:
        server.stop()
    requests = sum(s["requests"] for s in slices)
    errors = sum(s["requests"] - s["ok"] for s in slices)
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
