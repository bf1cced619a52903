"""The serving benchmark (`make bench`; `--quick`: the harness in a minute): the Bento, the original
design and the plain limit on the same models, answers checked identical, then wrk on loopback,
servers in turn: bench/results/*.json, BENCHMARKS.md. `--soak MINUTES`: the Bento at c=64."""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DEFAULT_STORE = BENCH / ".bentoml_home"
LOG_DIR = BENCH / "results" / "tmp" / "logs"

FULL_BODY: dict[str, Any] = {"event": {"season": 2025, "round": 8}}
"""Monaco 2025: the event's 20-driver entry list from the data."""
QUALI_BODY = {"event": {"season": 2025, "round": 8}, "drivers": [{"driver_id": "max-verstappen"}]}
NEXT_EVENT = {"season": 2026, "circuit_id": "monaco", "date": "2026-06-07"}
"""An event the data does not have: what users send for next season's races."""
PACKAGES: tuple[str, ...] = ("bentoml", "lightgbm", "numpy", "pandas", "scikit-learn", "fastapi")
PACKAGES += ("starlette", "uvicorn", "pydantic")
C1_SECONDS, LOAD_SECONDS, PROFILE_SECONDS = 5.0, 15.0, 10.0
MODELS = ("features", "stage1", "stage2")


@dataclass(frozen=True)
class Scenario:
    """``name`` starts with the body sent: "full" or "quali" (one fixed body), "jitter"
    (the drivers' own laps jittered per request) or "next" (the same for ``NEXT_EVENT``)."""

    name: str
    concurrency: int
    duration_s: float = 0.0

    @property
    def body(self) -> str:
        return self.name.split("_")[0]

    @property
    def endpoint(self) -> str:
        return "/predict_quali" if self.body == "quali" else "/predict_full"


GROUPS = [
    [Scenario("full_c1_fresh", 1)],
    [Scenario("quali_c1_fresh", 1)],
    [Scenario("full_c16", 16)],
    [Scenario("full_c64", 64), Scenario("full_c1_after_burst", 1)],
    [Scenario("quali_c64", 64), Scenario("quali_c1_after_burst", 1)],
    [Scenario("jitter_c1_fresh", 1)],
    [Scenario("jitter_c64", 64), Scenario("jitter_c1_after_burst", 1)],
    [Scenario("next_c1_fresh", 1)],
    [Scenario("next_c64", 64)],
]
"""A group runs on one server, then on the next: a burst and its after-burst check stay
together, and the servers alternate between groups."""
SCENARIOS = {s.name: s for group in GROUPS for s in group}
QUICK_CONCURRENCY = {1: 1, 16: 2, 64: 4}
SOAK_SLICE_S, SOAK_MAX_GROWTH = 30.0, 0.10


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def output(*cmd: str) -> str:
    """What a command prints ("" when it cannot run)."""
    try:
        return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance() -> dict[str, Any]:
    """The commit and what changed since, the packages' versions and wrk's Debian package
    version (``wrk -v`` exits non-zero)."""
    paths = ["service.py", "pipelines", "bench", "bentofile.yaml"]
    status = output("git", "status", "--porcelain", "--untracked-files=all", "--", *paths)
    dirty = [p for ln in status.splitlines() if (p := ln[3:]) and not p.startswith("bench/results")]
    commit = output("git", "rev-parse", "--short", "HEAD").strip() or "unknown"
    installed = {d.name.lower(): d.version for d in metadata.distributions()}
    versions = {p: installed[p] for p in PACKAGES if p in installed}
    wrk = output("dpkg-query", "-W", "-f=${Version}", "wrk") or "unknown"
    return {"git": {"commit": commit, "dirty": dirty}, "versions": versions | {"wrk": wrk}}


def ensure_models(store: Path) -> None:
    from pipelines.models.store import has_models

    if not has_models():
        log(f"models: f1 train --if-missing --no-report (BENTOML_HOME={store})")
        f1 = Path(sys.executable).parent / "f1"
        subprocess.run([str(f1), "train", "--if-missing", "--no-report"], cwd=ROOT, check=True)


def ledger_totals(store: Path) -> list[int]:
    """[rows, answers] in the prediction log the Bento keeps beside the store (none: 0)."""
    from pipelines.ledger import db

    url = db.default_url(str(store))
    if not Path(url.removeprefix("sqlite:///")).exists():
        return [0, 0]
    with db.make_engine(url, 10.0).connect() as conn:
        return list(db.totals(conn))


def server_env(store: Path, pins: dict[str, str | None]) -> dict[str, str]:
    """What every server gets: the store, the resolved model tags, one thread for OpenMP."""
    from pipelines.models import store as models

    env = {"BENTOML_HOME": str(store)}
    for key in MODELS:
        tag = pins.get(key) or f"f1_{key}:latest"
        env[f"F1_{key.upper()}_MODEL"] = str(models.get_model(tag).tag)
    return env | {k: os.environ[k] for k in ("OMP_NUM_THREADS", "BENTOML_DO_NOT_TRACK")}


def check_identity(servers: dict[str, Any], requests: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """Every server answers every request like the first one (minus inference_ms)."""
    from bench.servers import answer_difference

    ref_name, *others = servers
    checks = []
    for req_name, (path, body) in requests.items():
        ref, *answers = [httpx.post(s.url + path, json=body, timeout=30) for s in servers.values()]
        for name, r in zip(others, answers, strict=True):
            diff = answer_difference(r, ref)
            rec: dict[str, Any] = {"request": req_name, "server": name, "reference": ref_name}
            checks.append(
                rec | {"status": r.status_code, "identical": not diff, "difference": diff}
            )
    bad = [f"{c['server']} {c['request']}: {c['difference']}" for c in checks if c["difference"]]
    ok = f"yes: {len(requests)} requests, every server's JSON equal to the {ref_name}'s"
    summary = "NO: " + "; ".join(bad) if bad else ok + " except metadata.inference_ms"
    return {"reference": ref_name, "checks": checks, "identical": not bad, "summary": summary}


def run_scenario(sc: Scenario, srv: Any, script: Path, others: list[Any]) -> dict[str, Any]:
    """One wrk run on one server: answers, its CPU, the rest's CPU, (Bento) batch sizes."""
    from bench import load, proctree
    from bench.servers import COMMANDS, batch_delta, batch_histograms

    cmd = load.command(f"{srv.url}{sc.endpoint}", script, sc.concurrency, sc.duration_s)
    bento = srv.spec.command == COMMANDS["bento"]  # its /metrics count the batch sizes
    before = batch_histograms(srv.get_text("/metrics")) if bento else {}
    harness = [os.getpid(), *(o.pid for o in others)]
    own0, ours0 = proctree.cpu_by_pid(srv.pid), proctree.cpu_by_pid(*harness)
    busy0 = proctree.machine_busy_seconds()
    load_run = sc.concurrency > 1  # memory sampled
    with proctree.rss_peak(srv.pid) if load_run else contextlib.nullcontext([0]) as peak:
        run = load.run(cmd, max_wall_s=sc.duration_s + 60)
    busy = proctree.machine_busy_seconds() - busy0
    names = proctree.process_names(srv.pid)
    by_process = proctree.cpu_delta(own0, proctree.cpu_by_pid(srv.pid), names)
    ours = sum(proctree.cpu_delta(ours0, proctree.cpu_by_pid(*harness)).values())
    cpu = sum(by_process.values())
    res, wall, n = run.result, run.cpu["wall_s"], run.result["responses"]
    out: dict[str, Any] = {
        "scenario": sc.name,
        "server": srv.spec.name,
        "endpoint": sc.endpoint,
        "concurrency": sc.concurrency,
        "duration_s": sc.duration_s,
        "ok_rps": res["ok_rps"],
        "p50_ms": load.pct_ms(res, 50),
        "p99_ms": load.pct_ms(res, 99),
        "load": res,
        "load_cpu": run.cpu,
        "load_command": shlex.join(cmd),
        "load_output": run.output,
        "server_cpu_s": cpu,
        "server_cpu_ms_per_request": 1000.0 * cpu / n if n else None,
        "server_cpu_cores": cpu / wall if wall else None,
        "server_cpu_ms_per_request_by_process": {
            k: 1000.0 * v / n for k, v in by_process.items() if n
        },
        "machine_busy_s": busy,
        "idle_servers_and_harness_cpu_s": ours,
        "other_cpu_cores": max(0.0, busy - cpu - run.cpu["cpu_s"] - ours) / wall if wall else None,
    }
    if load_run:
        out["rss_peak_mib"] = peak[0] / 2**20
    if bento:
        out["batch"] = batch_delta(before, batch_histograms(srv.get_text("/metrics")))
    p50, p99 = (f"{v:6.1f}" if v is not None else "   n/a" for v in (out["p50_ms"], out["p99_ms"]))
    log(
        f"  {sc.name:<22} {srv.spec.name:<16} c={sc.concurrency:<3} {res['ok_rps']:8.1f} req/s  "
        f"p50 {p50}  p99 {p99}  failed {res['failed']}  "
        f"cpu {out['server_cpu_ms_per_request'] or 0:.2f} ms/req  wrk {run.cpu['cores_used']:.2f} cores"
    )
    return out


@dataclass
class Quiet:
    """On a shared machine: wait (0: never) until the rest uses under ``threshold`` cores; a
    run beside more than ``busy`` runs again, ``retries`` times within ``budget_s`` seconds."""

    threshold: float = 0.25
    busy: float = 0.35
    retries: int = 2
    budget_s: float = 180.0
    spent_s: float = 0.0
    disturbed_attempts: int = 0


def run_group(
    group: list[Scenario], srv: Any, scripts: dict[str, Path], others: list[Any], quiet: Quiet
) -> list[dict[str, Any]]:
    """The group's scenarios on one server; again (bounded) if the machine was busy."""
    from bench import proctree

    pids = [srv.pid, *(o.pid for o in others)]
    attempts: list[tuple[float, list[dict[str, Any]]]] = []
    for attempt in range(1 + quiet.retries):
        t0, left = time.monotonic(), quiet.budget_s - quiet.spent_s
        if quiet.threshold > 0 and left > 0:
            busy, waited = proctree.wait_quiet(pids, quiet.threshold, min(60.0, left))
            if waited > 3:
                log(f"  waited {waited:.0f} s for quiet ({busy:.2f} cores busy elsewhere)")
        recs = [run_scenario(sc, srv, scripts[sc.body], others) for sc in group]
        worst = max((r.get("other_cpu_cores") or 0.0) for r in recs)
        attempts.append((worst, recs))
        if attempt > 0 or worst > quiet.busy:
            quiet.spent_s += time.monotonic() - t0
        if worst <= quiet.busy:
            break
        quiet.disturbed_attempts += 1
        if attempt == quiet.retries or quiet.spent_s >= quiet.budget_s:
            break
        log(f"  disturbed: the rest of the machine used {worst:.2f} cores; running again")
    _, best = min(attempts, key=lambda a: a[0])
    for r in best:
        r["attempts"] = len(attempts)
        r["disturbed"] = (r.get("other_cpu_cores") or 0.0) > quiet.busy
    return best


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The options, with the defaults that depend on ``--quick`` filled in."""
    ap = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the Bento beside the original architecture and the plain limit; "
        "writes bench/results/<timestamp>.json, bench/results/latest.json and BENCHMARKS.md.",
    )
    add = ap.add_argument
    add("--quick", action="store_true", help="harness check: 1 s runs, c <= 4, numbers meaningless")
    add("--servers", default="bento,bento_ledger_off,original,plain", help="comma-separated")
    add("--scenarios", default=",".join(SCENARIOS), help="a comma-separated subset")
    add("--store", type=Path, default=None, help="BENTOML_HOME (default bench/.bentoml_home)")
    add("--no-train", action="store_true", help="no `f1 train --if-missing` in the store")
    for key in MODELS:
        add(f"--{key}-tag", default=None, help=f"pin the {key} model (default: latest)")
    add("--out-dir", type=Path, default=None, help="default bench/results (quick: .../tmp)")
    add("--markdown", type=Path, default=None, help="default BENCHMARKS.md (quick: in out-dir)")
    add("--label", default=None, help="how the run was started (e.g. 'make bench')")
    add("--soak", type=float, metavar="MINUTES", help="soak the Bento instead (make soak: 5)")
    add("--soak-concurrency", type=int, default=64, help="requests in flight when soaking")
    args = ap.parse_args(argv)
    args.out_dir = args.out_dir or BENCH / "results" / ("tmp" if args.quick else "")
    args.markdown = args.markdown or (args.out_dir if args.quick else ROOT) / "BENCHMARKS.md"
    if args.store is None and args.no_train and os.environ.get("BENTOML_HOME"):
        args.store = Path(os.environ["BENTOML_HOME"])
    args.store = (args.store or DEFAULT_STORE).resolve()
    return args


def pick(text: str, known: dict[str, Any], what: str) -> list[str]:
    """The names of a comma-separated option; exits on an unknown one."""
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names or any(s not in known for s in names):
        raise SystemExit(f"unknown {what}: {text!r} (choose from {', '.join(known)})")
    return names


def use_store(store: Path) -> None:
    """Point this process and its servers at the store (before anything imports bentoml): one
    OpenMP thread, no usage tracking, the prediction log on as shipped (SQLite beside it)."""
    os.environ["BENTOML_HOME"] = str(store)
    for key in ("F1_LEDGER", "F1_LEDGER_URL"):
        os.environ.pop(key, None)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")


class Bench:
    """One run: its options, its plan, the running servers and the results."""

    def __init__(self, args: argparse.Namespace, command: str) -> None:
        from bench.servers import SERVERS

        self.args, self.started = args, datetime.now(UTC)
        self.names = pick(args.servers, SERVERS, "servers")
        keep = pick(args.scenarios, SCENARIOS, "scenarios")
        self.groups = [[self.sized(s) for s in g if s.name in keep] for g in GROUPS]
        self.quiet = Quiet(threshold=0, retries=0) if args.quick else Quiet()
        self.running: dict[str, Any] = {}
        self.results: dict[str, Any] = {
            "schema": 2,
            "started_at": self.started.isoformat(timespec="seconds"),
            "quick": args.quick,
            "label": args.label,
            "command": command,
            "scenario_order": [s.name for g in self.groups for s in g],
            "servers": {},
            "scenarios": [],
            "ledger_runs": [],
        }

    def sized(self, s: Scenario) -> Scenario:
        if self.args.quick:
            return replace(s, concurrency=QUICK_CONCURRENCY[s.concurrency], duration_s=1.0)
        return replace(s, duration_s=LOAD_SECONDS if s.concurrency > 1 else C1_SECONDS)

    def prepare(self) -> None:
        """The store, models, servers' environment, floors, wrk's scripts, identity requests."""
        args, store = self.args, self.args.store
        use_store(store)
        from bench import floor, load, proctree

        load.wrk_path()  # fail early when wrk is missing
        if self.quiet.threshold > 0:
            busy, waited = proctree.wait_quiet([], self.quiet.threshold, 90)
            log(f"rest of the machine: {busy:.2f} cores busy (waited {waited:.0f} s)")
        machine = proctree.machine_info()
        log(f"machine: {machine}")
        if not args.no_train:
            ensure_models(store)
        if "bento" in self.names:
            self.results["ledger"] = {"before": ledger_totals(store)}
        env = server_env(store, {k: getattr(args, f"{k}_tag") for k in MODELS})
        tags = {k: env[f"F1_{k.upper()}_MODEL"] for k in MODELS}
        log(f"models: {tags} from {store}")
        os.environ.update(env)
        from pipelines.serving.schemas import EXAMPLES
        from pipelines.settings import get_settings

        get_settings.cache_clear()
        floor_res, practice = floor.measure(FULL_BODY, 200 if args.quick else 3000, log)
        nxt = {"event": NEXT_EVENT, "drivers": practice["drivers"]}
        bodies = {"full": FULL_BODY, "quali": QUALI_BODY, "jitter": practice, "next": nxt}
        tmp = Path(tempfile.mkdtemp(prefix="f1-bench-"))
        self.scripts = {
            k: load.script(body, tmp / f"{k}.lua", jitter=k in ("jitter", "next"))
            for k, body in bodies.items()
        }
        examples = {f"example_{k}": v for k, v in EXAMPLES.items() if k != "race_with_grid"}
        self.requests = {
            "full_20_drivers": ("/predict_full", FULL_BODY),
            "quali_1_driver": ("/predict_quali", QUALI_BODY),
            "next_season_20_drivers": ("/predict_full", nxt),
            **{name: ("/predict_full", body) for name, body in examples.items()},
        }
        self.results |= {
            "machine": machine,
            **provenance(),
            "models": tags,
            "server_env": {k: v for k, v in env.items() if not k.startswith("F1_")},
            "requests": {
                "full_20_drivers": FULL_BODY,
                "quali_1_driver": QUALI_BODY,
                "full_20_drivers_own_laps_jittered": practice,
                "next_season_20_drivers_own_laps_jittered": nxt,
            },
            "floor": floor_res,
        }

    def start(self) -> None:
        """Cold starts one at a time, then all stay up (--quick: together, not measured)."""
        from bench import proctree
        from bench.servers import SERVERS, launch

        for name in self.names:
            log(f"starting {name}: {shlex.join(SERVERS[name].argv(0))}")
            self.running[name] = launch(SERVERS[name], os.environ.copy(), LOG_DIR)
            if not self.args.quick:
                self.running[name].wait_ready()
        for name, srv in self.running.items():
            cold, n = srv.cold_start_s or srv.wait_ready(), len(proctree.tree(srv.pid))
            log(f"  {name} ready in {cold:.1f} s ({n} processes)")
            info = {"description": srv.spec.description, "cold_start_s": cold, "processes": n}
            self.results["servers"][name] = info | {"cold_start_alone": not self.args.quick}

    def measure(self) -> None:
        """Identity, memory at rest, the scenario groups and the profile."""
        from bench import proctree
        from bench.profile import profile_server

        args, results, running = self.args, self.results, self.running
        ident = results["identity"] = check_identity(running, self.requests)
        log(f"identical answers: {ident['summary']}")
        if not ident["identical"]:
            raise RuntimeError("the servers' answers differ; not timing")
        warm = [self.requests["full_20_drivers"], self.requests["quali_1_driver"]]
        with httpx.Client(timeout=30) as client:
            for srv, (path, body) in itertools.product(running.values(), warm):
                for _ in range(5 if args.quick else 30):
                    client.post(f"{srv.url}{path}", json=body).raise_for_status()
        time.sleep(1 if args.quick else 3)
        for name, srv in running.items():
            info, pss = results["servers"][name], proctree.pss_bytes(srv.pid)
            info["rss_rest_mib"] = proctree.rss_bytes(srv.pid) / 2**20
            info["pss_rest_mib"] = None if pss is None else pss / 2**20
            log(f"  {name} at rest: RSS {info['rss_rest_mib']:.0f} MiB")
        for group in filter(None, self.groups):
            for name, srv in running.items():
                others = [o for n, o in running.items() if n != name]
                mine = [s for s in group if s.name in (srv.spec.scenarios or SCENARIOS)]
                for rec in run_group(mine, srv, self.scripts, others, self.quiet) if mine else []:
                    results["scenarios"].append(rec)
                    if rec["scenario"] == "full_c64" and "rss_peak_mib" in rec:
                        results["servers"][name]["rss_load_peak_mib"] = rec["rss_peak_mib"]
        if {"bento", "bento_ledger_off"} <= running.keys() and not args.quick:
            on, off = running["bento"], running["bento_ledger_off"]
            keep = ("scenario", "server", "ok_rps", "p99_ms", "load")
            for sc in (s for g in self.groups for s in g if s.name in ("full_c64", "jitter_c64")):
                for srv in (off, on, on, off) * 2:  # four more pairs of log on and off, in turn
                    rest = [o for o in running.values() if o is not srv]
                    rec = run_scenario(sc, srv, self.scripts[sc.body], rest)
                    results["ledger_runs"].append({k: rec[k] for k in keep})
        results["quiet"] = asdict(self.quiet)
        results["profile"] = {"skipped": "not requested" if args.quick else "no Bento"}
        if "bento" in running and not args.quick:
            log(f"profiling the Bento under c=64 for {PROFILE_SECONDS:.0f} s (py-spy)")
            script = self.scripts["full"]
            results["profile"] = profile_server(running["bento"], script, PROFILE_SECONDS, LOG_DIR)

    def stop(self) -> None:
        """Stop the servers, keeping the Bento's last /metrics page beside the logs; then
        count its prediction log (it writes what waits as it stops)."""
        metrics = ""
        if bento := self.running.get("bento"):
            with contextlib.suppress(Exception):
                metrics = bento.get_text("/metrics")
                (LOG_DIR / "bento-metrics.txt").write_text(metrics)
        for srv in self.running.values():
            srv.stop()
        if bento:
            ledger = self.results["ledger"]
            dropped = re.findall(r"^f1_ledger_dropped_total(?:\{.*\})? (\S+)$", metrics, re.M)
            ledger["dropped"] = sum(map(float, dropped)) if metrics else None
            try:
                ledger["after"] = ledger_totals(self.args.store)
            except Exception as exc:
                ledger["error"] = f"{type(exc).__name__}: {exc}"

    def write(self) -> None:
        from bench import report

        args, results = self.args, self.results
        results["wall_s"] = (datetime.now(UTC) - self.started).total_seconds()
        results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        results["targets"] = report.evaluate_targets(results)
        args.out_dir.mkdir(parents=True, exist_ok=True)
        path = args.out_dir / f"{'quick-' if args.quick else ''}{self.started:%Y%m%dT%H%M%SZ}.json"
        text = json.dumps(results, indent=1) + "\n"
        path.write_text(text)
        (args.out_dir / "latest.json").write_text(text)
        report.write(results, args.markdown, None if args.quick else report.NOTES)
        log(f"wrote {path}, {args.markdown} ({results['wall_s']:.0f} s)")
        for t in results["targets"]:
            met = "n/a" if t["met"] is None else "met" if t["met"] else "NOT met"
            log(f"  target: {t['target']}: {t['value']} -> {met}")


def soak(args: argparse.Namespace, command: str) -> int:
    """The Bento under wrk for ``args.soak`` minutes; fails on any error or on 10 % growth
    of its processes' memory from after a warm-up slice to after the last slice."""
    use_store(args.store)
    from bench import load, proctree
    from bench.servers import SERVERS, launch

    ensure_models(args.store)
    env = server_env(args.store, {}) | {"F1_LOG_FORMAT": "json"}
    lua = load.script(FULL_BODY, Path(tempfile.mkdtemp()) / "full.lua")
    server = launch(SERVERS["bento"], os.environ | env, LOG_DIR)
    slices: list[dict[str, Any]] = []

    def run(seconds: float) -> dict[str, Any]:
        cmd = load.command(f"{server.url}/predict_full", lua, args.soak_concurrency, seconds)
        return load.run(cmd, SOAK_SLICE_S + 60).result

    try:
        server.wait_ready()
        run(15)  # warm-up: caches, batcher and allocator reach a steady state
        rss_start = proctree.rss_bytes(server.pid) / 2**20
        n_slices = max(1, round(args.soak * 60 / SOAK_SLICE_S))
        for i in range(n_slices):
            r, rss = run(SOAK_SLICE_S), proctree.rss_bytes(server.pid) / 2**20
            p99, errors = load.pct_ms(r, 99), r["failures_by_kind"]
            rec = {"slice": i, "requests": r["requests"], "failed": r["failed"], "errors": errors}
            slices.append(rec | {"rps": r["ok_rps"], "p99_ms": p99, "rss_mib": rss})
            log(
                f"soak {i + 1}/{n_slices}: {r['ok_rps']:.0f} req/s, p99 {p99 or 0:.1f} ms, "
                f"errors {errors or 0}, RSS {rss:.0f} MiB"
            )
        rss_end = proctree.rss_bytes(server.pid) / 2**20
    finally:
        server.stop()
    requests, errors = (sum(s[k] for s in slices) for k in ("requests", "failed"))
    growth = (rss_end - rss_start) / rss_start
    out = args.out_dir / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "minutes": args.soak,
        "concurrency": args.soak_concurrency,
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
    verdict = errors == 0 and growth < SOAK_MAX_GROWTH
    log(
        f"soak: {requests} requests, {errors} errors, RSS {rss_start:.0f} -> {rss_end:.0f} MiB "
        f"({growth:+.1%}) -> {'PASS' if verdict else 'FAIL'}; {out}"
    )
    return 0 if verdict else 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    command = shlex.join([os.path.relpath(sys.executable, ROOT), "-m", "bench.run", *argv])
    if args.soak is not None:
        return soak(args, command)
    bench = Bench(args, command)
    bench.prepare()
    try:
        bench.start()
        bench.measure()
    except Exception as exc:
        bench.results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {bench.results['error']}")
    finally:
        bench.stop()
    bench.write()
    return 1 if "error" in bench.results else 0


if __name__ == "__main__":
    sys.exit(main())
