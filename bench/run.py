"""Run the serving benchmark of issue 6 and write bench/results/*.json and BENCHMARKS.md.

Three servers on the same stored models (the Bento, the original architecture, the
plain limit), identical answers checked first, then hey on loopback scenario by
scenario, alternating the servers. ``--quick`` proves the harness in well under a
minute (tiny durations and concurrency; numbers meaningless; written under
bench/results/tmp/ so the committed results stay untouched).

    .venv/bin/python -m bench.run            # make bench
    .venv/bin/python -m bench.run --quick    # make bench-quick
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
DEFAULT_STORE = BENCH / ".bentoml_home"

FULL_BODY: dict[str, Any] = {"event": {"season": 2025, "round": 8}}
"""Monaco 2025: the event's 20-driver entry list from the data."""
QUALI_BODY: dict[str, Any] = {
    "event": {"season": 2025, "round": 8},
    "drivers": [{"driver_id": "max-verstappen"}],
}
ENDPOINT_BODY = {"/predict_full": "full_20_drivers", "/predict_quali": "quali_1_driver"}
JITTER = "jitter"
"""The body kind of scenarios whose every request carries the 20 drivers' own practice
laps, jittered per request by wrk (bench/wrk.py): no cache can answer them."""
NEXT = "next"
"""Jittered like ``JITTER``, for an event the data does not have (``NEXT_EVENT``): what
users send for the next season's races before F1DB has them."""
NEXT_EVENT: dict[str, Any] = {"season": 2026, "circuit_id": "monaco", "date": "2026-06-07"}
WRK_BODIES = (JITTER, NEXT)
"""Body kinds sent by wrk (a new body every request); the others by hey (one body)."""


@dataclass(frozen=True)
class Scenario:
    name: str
    endpoint: str
    concurrency: int
    duration_s: float
    load: bool
    """A load scenario: memory sampled, batch metrics read."""
    body: str = "fixed"
    """"fixed": one body, sent by hey; "jitter": a new body every request, sent by wrk."""


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("full_c1_fresh", "/predict_full", 1, 5, False),
        Scenario("quali_c1_fresh", "/predict_quali", 1, 5, False),
        Scenario("full_c16", "/predict_full", 16, 15, True),
        Scenario("full_c64", "/predict_full", 64, 15, True),
        Scenario("full_c1_after_burst", "/predict_full", 1, 5, False),
        Scenario("quali_c64", "/predict_quali", 64, 15, True),
        Scenario("quali_c1_after_burst", "/predict_quali", 1, 5, False),
        Scenario("jitter_c1_fresh", "/predict_full", 1, 5, False, JITTER),
        Scenario("jitter_c64", "/predict_full", 64, 15, True, JITTER),
        Scenario("jitter_c1_after_burst", "/predict_full", 1, 5, False, JITTER),
        Scenario("next_c1_fresh", "/predict_full", 1, 5, False, NEXT),
        Scenario("next_c64", "/predict_full", 64, 15, True, NEXT),
    )
}
GROUPS: list[list[str]] = [
    ["full_c1_fresh"],
    ["quali_c1_fresh"],
    ["full_c16"],
    ["full_c64", "full_c1_after_burst"],
    ["quali_c64", "quali_c1_after_burst"],
    ["jitter_c1_fresh"],
    ["jitter_c64", "jitter_c1_after_burst"],
    ["next_c1_fresh"],
    ["next_c64"],
]
"""Each group runs on one server, then on the next: a burst and its after-burst check
stay together, and the servers alternate between groups."""

QUICK_CONCURRENCY = {1: 1, 16: 2, 64: 4}


def quick_scenarios(duration_s: float) -> dict[str, Scenario]:
    return {
        k: replace(s, concurrency=QUICK_CONCURRENCY[s.concurrency], duration_s=duration_s)
        for k, s in SCENARIOS.items()
    }


# ------------------------------------------------------------------------ setup


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def git_info() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    status = git(
        "status",
        "--porcelain",
        "--untracked-files=all",
        "--",
        "service.py",
        "pipelines",
        "bench",
        "bentofile.yaml",
    )
    dirty = [
        line[3:]
        for line in status.splitlines()
        if len(line) > 3 and not line[3:].startswith("bench/results")
    ]
    return {"commit": git("rev-parse", "--short", "HEAD").strip() or "unknown", "dirty": dirty}


def versions() -> dict[str, str]:
    from importlib import metadata

    from bench.hey import hey_version

    out = {}
    for pkg in (
        "bentoml",
        "lightgbm",
        "numpy",
        "pandas",
        "scikit-learn",
        "fastapi",
        "starlette",
        "uvicorn",
        "pydantic",
    ):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[pkg] = metadata.version(pkg)
    out["hey"] = hey_version()
    return out


def ensure_models(store: Path, train: bool) -> None:
    from pipelines.models.store import has_models

    if not train or has_models():
        return
    log(f"models: f1 train --if-missing --no-report (BENTOML_HOME={store})")
    f1 = Path(sys.executable).parent / "f1"
    cmd = [str(f1), "train", "--if-missing", "--no-report"]
    subprocess.run(cmd, cwd=ROOT, env=os.environ.copy(), check=True)


def resolve_tags(given: dict[str, str | None]) -> dict[str, str]:
    from pipelines.models import store

    out = {}
    for key, name in (
        ("features", "f1_features"),
        ("stage1", "f1_stage1"),
        ("stage2", "f1_stage2"),
    ):
        out[key] = str(store.get_model(given.get(key) or f"{name}:latest").tag)
    return out


# -------------------------------------------------------------------- measuring


def check_identity(servers: dict[str, Any], requests: dict[str, tuple[str, Any]]) -> dict[str, Any]:
    """Every server answers every request like the first one (minus inference_ms)."""
    from bench.servers import comparable, first_difference

    ref_name = next(iter(servers))
    checks = []
    for req_name, (path, body) in requests.items():
        answers = {}
        for name, srv in servers.items():
            r = srv.post(path, body)
            answers[name] = (r.status_code, comparable(r.json()), r.headers.get("x-f1-warnings"))
        ref = answers[ref_name]
        for name, ans in answers.items():
            if name == ref_name:
                continue
            diff = None
            if ans[0] != ref[0]:
                diff = f"status {ans[0]} != {ref[0]}"
            elif ans[2] != ref[2]:
                diff = f"X-F1-Warnings {ans[2]!r} != {ref[2]!r}"
            else:
                diff = first_difference(ans[1], ref[1])
            checks.append(
                {
                    "request": req_name,
                    "server": name,
                    "reference": ref_name,
                    "status": ans[0],
                    "identical": diff is None,
                    "difference": diff,
                }
            )
    ok = all(c["identical"] for c in checks)
    n_req = len(requests)
    summary = (
        f"yes: {n_req} requests, every server's JSON equal to the {ref_name}'s "
        "except metadata.inference_ms"
        if ok
        else "NO: "
        + "; ".join(
            f"{c['server']} {c['request']}: {c['difference']}" for c in checks if not c["identical"]
        )
    )
    return {"reference": ref_name, "checks": checks, "identical": ok, "summary": summary}


def warm_up(srv: Any, requests: dict[str, tuple[str, Any]], n: int) -> None:
    import httpx

    with httpx.Client(timeout=30) as client:
        for path, body in requests.values():
            for _ in range(n):
                client.post(f"{srv.url}{path}", json=body).raise_for_status()


def run_scenario(
    sc: Scenario, srv: Any, body_file: Path, others: list[Any], metrics: bool
) -> dict[str, Any]:
    from bench import hey, proctree, wrk
    from bench.servers import batch_delta, batch_histograms

    url = f"{srv.url}{sc.endpoint}"
    if sc.body in WRK_BODIES:
        cmd = wrk.wrk_command(url, body_file, sc.concurrency, sc.duration_s)
    else:
        cmd = hey.hey_command(url, body_file, sc.concurrency, sc.duration_s)
    before = batch_histograms(srv.get_text("/metrics")) if metrics else None
    own0 = proctree.cpu_by_pid(srv.pid)
    others0 = proctree.cpu_by_pid(os.getpid(), *(o.pid for o in others))
    busy0 = proctree.machine_busy_seconds()
    sampler = proctree.RssSampler(srv.pid) if sc.load else contextlib.nullcontext()
    with sampler:
        load = wrk.run_wrk if sc.body in WRK_BODIES else hey.run_hey
        run = load(cmd, max_wall_s=sc.duration_s + 60)
    busy = proctree.machine_busy_seconds() - busy0
    own1 = proctree.cpu_by_pid(srv.pid)
    cpu = proctree.cpu_delta(own0, own1)
    by_process = proctree.cpu_delta_by_name(own0, own1, proctree.process_names(srv.pid))
    ours = proctree.cpu_delta(others0, proctree.cpu_by_pid(os.getpid(), *(o.pid for o in others)))
    after = batch_histograms(srv.get_text("/metrics")) if metrics else None
    res = run.result
    other = max(0.0, busy - cpu - run.cpu_s - ours)
    out: dict[str, Any] = {
        "scenario": sc.name,
        "server": srv.spec.name,
        "endpoint": sc.endpoint,
        "concurrency": sc.concurrency,
        "duration_s": sc.duration_s,
        "ok_rps": res.ok_rps,
        "p50_ms": res.pct_ms(50),
        "p99_ms": res.pct_ms(99),
        "hey": res.to_dict(),
        "hey_cpu": run.cpu_to_dict(),
        "hey_command": shlex.join(cmd),
        "hey_output": run.raw,
        "server_cpu_s": cpu,
        "server_cpu_ms_per_request": 1000.0 * cpu / res.responses if res.responses else None,
        "server_cpu_cores": cpu / run.wall_s if run.wall_s else None,
        "server_cpu_ms_per_request_by_process": {
            k: 1000.0 * v / res.responses for k, v in by_process.items() if res.responses
        },
        "machine_busy_s": busy,
        "idle_servers_and_harness_cpu_s": ours,
        "other_cpu_cores": other / run.wall_s if run.wall_s else None,
    }
    if sc.load and isinstance(sampler, proctree.RssSampler):
        out["rss_peak_mib"] = sampler.peak / 2**20
    if before is not None and after is not None:
        out["batch"] = batch_delta(before, after)
    log(
        f"  {sc.name:<22} {srv.spec.name:<9} c={sc.concurrency:<3} "
        f"{res.ok_rps:8.1f} req/s  p50 {_ms(res.pct_ms(50))}  p99 {_ms(res.pct_ms(99))}  "
        f"failed {res.failed}  cpu {out['server_cpu_ms_per_request'] or 0:.2f} ms/req  "
        f"hey {run.cpu_to_dict()['cores_used']:.2f} cores"
    )
    return out


@dataclass
class Quiet:
    """How the benchmark copes with a shared machine."""

    threshold: float
    """Wait before a run until the rest of the machine uses fewer cores (0: never)."""
    busy: float
    """A run during which the rest of the machine used more cores is disturbed."""
    retries: int
    budget_s: float
    """Total extra seconds for waiting and retries."""
    spent_s: float = 0.0
    disturbed_attempts: int = 0

    def left(self) -> float:
        return self.budget_s - self.spent_s


def run_group(
    group: list[Scenario],
    srv: Any,
    bodies: dict[str, Path],
    others: list[Any],
    quiet: Quiet,
    pids: list[int],
) -> list[dict[str, Any]]:
    """The group's scenarios on one server; again (bounded) if the machine was busy."""
    from bench import proctree

    attempts: list[tuple[float, list[dict[str, Any]]]] = []
    for attempt in range(1 + quiet.retries):
        t0 = time.monotonic()
        if quiet.threshold > 0 and quiet.left() > 0:
            busy, waited = proctree.wait_quiet(pids, quiet.threshold, min(60.0, quiet.left()))
            if waited > 3:
                log(f"  waited {waited:.0f} s for quiet ({busy:.2f} cores busy elsewhere)")
        recs = [
            run_scenario(
                sc,
                srv,
                bodies[sc.body if sc.body in WRK_BODIES else sc.endpoint],
                others,
                srv.spec.name == "bento",
            )
            for sc in group
        ]
        worst = max((r.get("other_cpu_cores") or 0.0) for r in recs)
        attempts.append((worst, recs))
        if attempt > 0 or worst > quiet.busy:
            quiet.spent_s += time.monotonic() - t0
        if worst <= quiet.busy:
            break
        quiet.disturbed_attempts += 1
        if attempt == quiet.retries or quiet.left() <= 0:
            break
        log(f"  disturbed: the rest of the machine used {worst:.2f} cores; running again")
    worst, best = min(attempts, key=lambda a: a[0])
    for r in best:
        r["attempts"] = len(attempts)
        r["disturbed"] = (r.get("other_cpu_cores") or 0.0) > quiet.busy
    return best


def _ms(v: float | None) -> str:
    return "   n/a" if v is None else f"{v:6.1f}"


def profile_bento(
    srv: Any, body_file: Path, seconds: float, rate: int, out_dir: Path
) -> dict[str, Any]:
    """py-spy on every process of the Bento while hey loads /predict_full at c=64."""
    from bench import hey, proctree
    from bench import profile as prof

    spy = prof.py_spy_path()
    if spy is None:
        return {"skipped": "py-spy not found (PY_SPY or PATH)"}
    procs = proctree.tree(srv.pid)
    names = {}
    for p in procs:
        cmd = " ".join(p.cmdline())
        if "--service-name" in cmd:
            names[p.pid] = cmd.split("--service-name", 1)[1].split()[0]
        else:
            names[p.pid] = "arbiter (bentoml serve)" if p.pid == srv.pid else p.name()
    load_cmd = hey.hey_command(f"{srv.url}/predict_full", body_file, 64, seconds + 4)
    out_dir.mkdir(parents=True, exist_ok=True)
    loader = subprocess.Popen(load_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    time.sleep(2)
    spies = {}
    for p in procs:
        raw = out_dir / f"profile-{srv.spec.name}-{p.pid}.raw"
        spies[p.pid] = (raw, prof.run_record(spy, p.pid, seconds, raw, rate))
    results = []
    for pid, (raw, sp) in spies.items():
        _, err = sp.communicate(timeout=seconds + 60)
        text = raw.read_text() if raw.exists() else ""
        results.append(
            {
                "pid": pid,
                "name": names.get(pid, "?"),
                "summary": prof.summarise(text, seconds, rate),
                "error": None if text else err.decode(errors="replace")[-500:],
            }
        )
    out, _ = loader.communicate(timeout=seconds + 60)
    load = hey.parse_summary(out.decode(errors="replace"))
    results.sort(key=lambda r: -(r["summary"].get("samples") or 0))
    return {
        "server": srv.spec.name,
        "endpoint": "/predict_full",
        "concurrency": 64,
        "seconds": seconds,
        "rate": rate,
        "load": {"ok_rps": load.ok_rps, "p99_ms": load.pct_ms(99), "failed": load.failed},
        "processes": results,
    }


# ------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark the Bento beside the original architecture and the plain limit "
        "(issue 6); writes bench/results/<timestamp>.json, bench/results/latest.json and "
        "BENCHMARKS.md.",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="harness check: ~1 s per scenario, concurrency <= 4, results under "
        "bench/results/tmp/ (numbers meaningless)",
    )
    ap.add_argument(
        "--servers",
        default="bento,original,plain",
        help="comma-separated subset of bento,original,plain (default: all)",
    )
    ap.add_argument(
        "--scenarios",
        default=None,
        help=f"comma-separated subset of {','.join(SCENARIOS)} (default: all)",
    )
    ap.add_argument("--c1-seconds", type=float, default=5.0, help="one-at-a-time runs (default 5)")
    ap.add_argument("--load-seconds", type=float, default=15.0, help="c=16/64 runs (default 15)")
    ap.add_argument(
        "--store",
        type=Path,
        default=None,
        help=f"BENTOML_HOME to serve from (default: $BENTOML_HOME if --no-train, "
        f"else {DEFAULT_STORE.relative_to(ROOT)})",
    )
    ap.add_argument(
        "--no-train", action="store_true", help="do not run `f1 train --if-missing` in the store"
    )
    for key in ("features", "stage1", "stage2"):
        ap.add_argument(f"--{key}-tag", default=None, help=f"pin the {key} model (default: latest)")
    ap.add_argument(
        "--out-dir",
        type=Path,
        default=None,
        help="results folder (default bench/results, quick: bench/results/tmp)",
    )
    ap.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="report path (default BENCHMARKS.md, quick: <out-dir>/BENCHMARKS.md)",
    )
    ap.add_argument(
        "--profile",
        choices=("auto", "yes", "no"),
        default="auto",
        help="py-spy the Bento under c=64 after the timed runs (auto: when py-spy "
        "is found and not --quick)",
    )
    ap.add_argument("--profile-seconds", type=float, default=10.0)
    ap.add_argument(
        "--floor-iterations",
        type=int,
        default=None,
        help="model-floor iterations (default 3000, quick 200)",
    )
    ap.add_argument(
        "--quiet-cores",
        type=float,
        default=None,
        metavar="CORES",
        help="before each server's run, wait (bounded) until the rest of the machine uses "
        "< CORES (default 0.25; quick: 0 = never wait)",
    )
    ap.add_argument(
        "--busy-cores",
        type=float,
        default=0.35,
        metavar="CORES",
        help="a run during which the rest of the machine used more is disturbed: retried "
        "(default 0.35)",
    )
    ap.add_argument(
        "--retries", type=int, default=None, help="retries of a disturbed run (default 2, quick 0)"
    )
    ap.add_argument(
        "--quiet-budget",
        type=float,
        default=180.0,
        metavar="SECONDS",
        help="total time spent waiting for quiet and retrying (default 180)",
    )
    ap.add_argument(
        "--allow-mismatch",
        action="store_true",
        help="time the servers even if their answers differ",
    )
    ap.add_argument("--label", default=None, help="how the run was started (e.g. 'make bench')")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.monotonic()
    started = datetime.now(UTC)
    server_names = [s.strip() for s in args.servers.split(",") if s.strip()]
    from bench.servers import SERVERS

    unknown = [s for s in server_names if s not in SERVERS]
    if unknown or not server_names:
        raise SystemExit(f"unknown servers: {unknown} (choose from {', '.join(SERVERS)})")
    if args.quick:
        scenarios = quick_scenarios(1.0)
    else:
        scenarios = {
            k: replace(s, duration_s=args.load_seconds if s.load else args.c1_seconds)
            for k, s in SCENARIOS.items()
        }
    if args.scenarios:
        keep = [s.strip() for s in args.scenarios.split(",") if s.strip()]
        bad = [s for s in keep if s not in scenarios]
        if bad:
            raise SystemExit(f"unknown scenarios: {bad}")
        scenarios = {k: v for k, v in scenarios.items() if k in keep}
    groups = [[n for n in g if n in scenarios] for g in GROUPS]
    groups = [g for g in groups if g]

    out_dir = args.out_dir or (BENCH / "results" / "tmp" if args.quick else BENCH / "results")
    markdown = args.markdown or (
        out_dir / "BENCHMARKS.md" if args.quick else ROOT / "BENCHMARKS.md"
    )
    log_dir = BENCH / "results" / "tmp" / "logs"

    # The store must be chosen before anything imports bentoml.
    if args.store is not None:
        store = args.store.resolve()
    elif args.no_train and os.environ.get("BENTOML_HOME"):
        store = Path(os.environ["BENTOML_HOME"]).resolve()
    else:
        store = DEFAULT_STORE
    os.environ["BENTOML_HOME"] = str(store)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")

    from bench import proctree
    from bench.hey import hey_path

    hey_path()  # fail early when hey is missing
    quiet = Quiet(
        threshold=args.quiet_cores if args.quiet_cores is not None else (0 if args.quick else 0.25),
        busy=args.busy_cores,
        retries=args.retries if args.retries is not None else (0 if args.quick else 2),
        budget_s=args.quiet_budget,
    )
    if quiet.threshold > 0:
        busy, waited = proctree.wait_quiet([], quiet.threshold, 90)
        log(f"rest of the machine: {busy:.2f} cores busy (waited {waited:.0f} s)")
    machine = proctree.machine_info()
    log(f"machine: {machine}")
    ensure_models(store, train=not args.no_train)
    tags = resolve_tags(
        {"features": args.features_tag, "stage1": args.stage1_tag, "stage2": args.stage2_tag}
    )
    log(f"models: {tags} from {store}")
    server_env = {
        "BENTOML_HOME": str(store),
        "F1_FEATURES_MODEL": tags["features"],
        "F1_STAGE1_MODEL": tags["stage1"],
        "F1_STAGE2_MODEL": tags["stage2"],
        "OMP_NUM_THREADS": os.environ["OMP_NUM_THREADS"],
        "BENTOML_DO_NOT_TRACK": os.environ["BENTOML_DO_NOT_TRACK"],
    }
    os.environ.update(server_env)
    env = os.environ.copy()

    from pipelines.serving.schemas import EXAMPLES
    from pipelines.settings import get_settings

    get_settings.cache_clear()

    # Floors first, on a machine with no server running.
    from bench import floor
    from bench.common import load_models

    loaded = load_models()
    iters = args.floor_iterations or (200 if args.quick else 3000)
    log(f"floor: {iters} iterations")
    practice_body = floor.with_practice(loaded.snapshot, FULL_BODY)
    floor_res = floor.measure(
        loaded, json.dumps(FULL_BODY).encode(), iters, practice_body=practice_body
    )
    log(
        f"  model floor {floor_res['model_floor']['mean_us']:.0f} us, whole request in-process "
        f"{floor_res['in_process_request_plain_path']['mean_us']:.0f} us (memo hits), "
        f"{floor_res['in_process_request_jittered_laps']['mean_us']:.0f} us (jittered laps)"
    )
    del loaded

    from bench.wrk import jitter_script, wrk_path

    tmp = Path(tempfile.mkdtemp(prefix="f1-bench-"))
    bodies = {"/predict_full": tmp / "full.json", "/predict_quali": tmp / "quali.json"}
    bodies["/predict_full"].write_text(json.dumps(FULL_BODY))
    bodies["/predict_quali"].write_text(json.dumps(QUALI_BODY))
    next_body = {"event": NEXT_EVENT, "drivers": practice_body["drivers"]}
    if any(s.body in WRK_BODIES for s in scenarios.values()):
        wrk_path()  # fail early when wrk is missing
        bodies[JITTER] = jitter_script(practice_body, tmp / "jitter.lua")
        bodies[NEXT] = jitter_script(next_body, tmp / "next.lua")
    requests = {
        "full_20_drivers": ("/predict_full", FULL_BODY),
        "quali_1_driver": ("/predict_quali", QUALI_BODY),
        "next_season_20_drivers": ("/predict_full", next_body),
        **{
            f"example_{k}": ("/predict_full", v)
            for k, v in EXAMPLES.items()
            if k != "race_with_grid"
        },
    }

    from bench.servers import launch

    running: dict[str, Any] = {}
    results: dict[str, Any] = {
        "schema": 1,
        "started_at": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "label": args.label,
        "command": shlex.join(
            [
                os.path.relpath(sys.executable, ROOT),
                "-m",
                "bench.run",
                *(argv if argv is not None else sys.argv[1:]),
            ]
        ),
        "machine": machine,
        "git": git_info(),
        "versions": versions(),
        "models": tags,
        "server_env": {k: v for k, v in server_env.items() if not k.startswith("F1_")},
        "requests": {
            "full_20_drivers": FULL_BODY,
            "quali_1_driver": QUALI_BODY,
            "full_20_drivers_own_laps_jittered": practice_body,
            "next_season_20_drivers_own_laps_jittered": next_body,
        },
        "scenario_order": [n for g in groups for n in g],
        "servers": {},
        "scenarios": [],
        "floor": floor_res,
    }
    exit_code = 0
    try:
        # Cold starts one at a time (nothing else starting), then all stay up; --quick
        # starts them together (its cold starts are not measurements).
        for name in server_names:
            spec = SERVERS[name]
            log(f"starting {name}: {shlex.join(spec.argv(0))}")
            running[name] = launch(spec, env, log_dir)
            if not args.quick:
                running[name].wait_ready()
        for name, srv in running.items():
            cold = srv.cold_start_s or srv.wait_ready()
            log(f"  {name} ready in {cold:.1f} s ({proctree.process_count(srv.pid)} processes)")
            results["servers"][name] = {
                "description": srv.spec.description,
                "cold_start_s": cold,
                "processes": proctree.process_count(srv.pid),
                "cold_start_alone": not args.quick,
            }

        ident = check_identity(running, requests)
        results["identity"] = ident
        log(f"identical answers: {ident['summary']}")
        if not ident["identical"] and not args.allow_mismatch:
            raise RuntimeError("the servers' answers differ; not timing (--allow-mismatch)")

        for srv in running.values():
            warm_up(
                srv,
                {k: requests[k] for k in ("full_20_drivers", "quali_1_driver")},
                5 if args.quick else 30,
            )
        time.sleep(1 if args.quick else 3)
        for name, srv in running.items():
            info = results["servers"][name]
            info["rss_rest_mib"] = proctree.rss_bytes(srv.pid) / 2**20
            pss = proctree.pss_bytes(srv.pid)
            info["pss_rest_mib"] = None if pss is None else pss / 2**20
            log(
                f"  {name} at rest: RSS {info['rss_rest_mib']:.0f} MiB over "
                f"{proctree.process_count(srv.pid)} processes"
            )

        pids = [srv.pid for srv in running.values()]
        for group in groups:
            for name, srv in running.items():
                others = [o for n, o in running.items() if n != name]
                recs = run_group([scenarios[n] for n in group], srv, bodies, others, quiet, pids)
                results["scenarios"].extend(recs)
                for res in recs:
                    if res["scenario"] == "full_c64" and "rss_peak_mib" in res:
                        results["servers"][name]["rss_load_peak_mib"] = res["rss_peak_mib"]
        results["quiet"] = asdict(quiet)

        want_profile = args.profile == "yes" or (args.profile == "auto" and not args.quick)
        if "bento" in running and want_profile:
            log(f"profiling the Bento under c=64 for {args.profile_seconds:.0f} s (py-spy)")
            results["profile"] = profile_bento(
                running["bento"], bodies["/predict_full"], args.profile_seconds, 100, log_dir
            )
        else:
            results["profile"] = {"skipped": "not requested" if not want_profile else "no Bento"}
    except Exception as exc:
        exit_code = 1
        results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"FAILED: {results['error']}")
    finally:
        if "bento" in running:
            with contextlib.suppress(Exception):
                (log_dir / "bento-metrics.txt").write_text(running["bento"].get_text("/metrics"))
        for srv in running.values():
            srv.stop()

    from bench import report

    results["wall_s"] = time.monotonic() - t_start
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["targets"] = report.evaluate_targets(results)
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    path = out_dir / f"{'quick-' if args.quick else ''}{stamp}.json"
    text = json.dumps(results, indent=1, sort_keys=False) + "\n"
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    report.write(results, markdown, None if args.quick else report.NOTES)
    log(
        f"wrote {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}, "
        f"{markdown} ({results['wall_s']:.0f} s)"
    )
    for t in results["targets"]:
        log(
            f"  target: {t['target']}: {t['value']} -> "
            f"{'n/a' if t['met'] is None else 'met' if t['met'] else 'NOT met'}"
        )
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
