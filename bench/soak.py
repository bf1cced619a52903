"""Soak (`make soak`): the Bento under wrk on loopback for minutes, in 30 s slices. Writes
bench/results/soak-<time>.json; fails on any error or on 10 % growth of the serving processes'
memory from after a warm-up slice to after the last one. A short check: --minutes 0.5."""

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=5.0, help="load duration (default 5)")
    ap.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    ap.add_argument("--slice", type=float, default=30.0, help="seconds per wrk run (default 30)")
    ap.add_argument("--store", type=Path, default=None, help="BENTOML_HOME (default: bench store)")
    ap.add_argument("--out", type=Path, default=None, help="results JSON path")
    args = ap.parse_args(argv)
    from bench.run import DEFAULT_STORE, FULL_BODY, ensure_models, server_env, use_store

    store = (args.store or DEFAULT_STORE).resolve()
    use_store(store)
    from bench import load, proctree
    from bench.servers import SERVERS, launch

    ensure_models(store)
    env = server_env(store, {}) | {"F1_LOG_FORMAT": "json"}
    lua = load.script(FULL_BODY, Path(tempfile.mkdtemp()) / "full.lua")
    server = launch(SERVERS["bento"], os.environ | env, BENCH / "results" / "tmp" / "logs")
    slices: list[dict[str, Any]] = []

    def run(seconds: float) -> dict[str, Any]:
        cmd = load.command(f"{server.url}/predict_full", lua, args.concurrency, seconds)
        return load.run(cmd, args.slice + 60).result

    try:
        server.wait_ready()
        run(min(args.slice, 15))  # warm-up: caches, batcher and allocator reach a steady state
        rss_start = proctree.rss_bytes(server.pid) / 2**20
        n_slices = max(1, round(args.minutes * 60 / args.slice))
        for i in range(n_slices):
            r, rss = run(args.slice), proctree.rss_bytes(server.pid) / 2**20
            p99, errors = load.pct_ms(r, 99), r["failures_by_kind"]
            rec = {"slice": i, "requests": r["requests"], "failed": r["failed"], "errors": errors}
            slices.append(rec | {"rps": r["ok_rps"], "p99_ms": p99, "rss_mib": rss})
            print(
                f"[soak] {i + 1}/{n_slices}: {r['ok_rps']:.0f} req/s, p99 {p99 or 0:.1f} ms, "
                f"errors {errors or 0}, RSS {rss:.0f} MiB",
                flush=True,
            )
        rss_end = proctree.rss_bytes(server.pid) / 2**20
    finally:
        server.stop()
    requests, errors = (sum(s[k] for s in slices) for k in ("requests", "failed"))
    growth = (rss_end - rss_start) / rss_start
    out = args.out or BENCH / "results" / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m bench.soak", *(argv or sys.argv[1:])]),
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "tags": {k: v for k, v in env.items() if k.endswith("_MODEL")},
        "requests": requests,
        "errors": errors,
        "rss_start_mib": rss_start,
        "rss_end_mib": rss_end,
        "rss_growth": growth,
        "slices": slices,
        "machine": proctree.machine_info(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    verdict = errors == 0 and growth < MAX_GROWTH
    print(
        f"[soak] {requests} requests, {errors} errors, RSS {rss_start:.0f} -> {rss_end:.0f} MiB "
        f"({growth:+.1%}) -> {'PASS' if verdict else 'FAIL'}; {out}"
    )
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
