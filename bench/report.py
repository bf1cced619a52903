"""BENCHMARKS.md from a results JSON: bench.run writes it, and `python -m bench.report
[bench/results/latest.json] [-o BENCHMARKS.md]` re-renders one (measured with wrk)."""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
NOTES = BENCH / "analysis.md"
TEMPLATE = BENCH / "report.md"
"""BENCHMARKS.md's text, with a ``{placeholder}`` for every figure and table."""
CPU = "server_cpu_ms_per_request"
KINDS = (("full", "the event's own data (memo hits)"), ("jitter", "own laps, jittered (no memo)"))
"""The request kinds the targets hold for: the fixed body, and the drivers' own laps jittered."""
LEDGER_OFF = "bento_ledger_off"
SRV = ("bento", LEDGER_OFF)
"""The Bento with its prediction log off: the log's cost is the Bento's ratio to it."""


def label(server: str) -> str:
    return server.replace("_", " ").capitalize()


def scenario(results: dict[str, Any], name: str, server: str) -> dict[str, Any] | None:
    runs = results.get("scenarios", [])
    return next((s for s in runs if (s["scenario"], s["server"]) == (name, server)), None)


def value(results: dict[str, Any], name: str, server: str, key: str) -> Any:
    """``key`` of a scenario record that may be missing."""
    return (scenario(results, name, server) or {}).get(key)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def vs_plain(results: dict[str, Any], name: str, key: str, other: str = "plain") -> float | None:
    """The Bento's ``key`` in scenario ``name`` over the plain server's (or ``other``'s)."""
    return ratio(value(results, name, "bento", key), value(results, name, other, key))


def runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every load run: the scenarios', then the log's extra on/off pairs."""
    return results.get("scenarios", []) + results.get("ledger_runs", [])


def log_ratio(results: dict[str, Any], name: str, key: str) -> float | None:
    """The Bento's ``key`` with its log on over off: the median of the paired runs' ratios."""
    rs = runs(results)
    on, off = ([r[key] for r in rs if r["scenario"] == name and r["server"] == s] for s in SRV)
    ratios = [a / b for a, b in zip(on, off, strict=False) if b]
    return statistics.median(ratios) if ratios else None


def _f(v: float | None, digits: int = 1, unit: str = "") -> str:
    """A figure to ``digits`` decimals with thousands separators and ``unit`` ("x": a ratio)."""
    return "n/a" if v is None else f"{v:,.{digits}f}{unit}"


def errors_text(s: dict[str, Any]) -> str:
    kinds = s["load"].get("failures_by_kind") or {}
    parts = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
    return f"{sum(kinds.values())} ({parts})" if kinds else "0"


def servers_in(results: dict[str, Any]) -> list[str]:
    runs = [s["server"] for s in results.get("scenarios", [])]
    return list(dict.fromkeys([*results.get("servers", {}), *runs]))


def _table(head: Sequence[str], rows: list[list[str]], align: str = "l") -> str:
    """A Markdown table; ``align`` says l(eft) or r(ight) per column, then right."""
    sep = "|" + "|".join("---" if a == "l" else "---:" for a in align.ljust(len(head), "r")) + "|"
    return "\n".join([f"| {' | '.join(head)} |", sep, *(f"| {' | '.join(r)} |" for r in rows)])


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The Bento's targets (ratios to the plain server, or to itself with its prediction log
    off, same run, both request kinds): value and met (None: unknown)."""
    out: list[dict[str, Any]] = []

    def check(
        target: str, r: float | None, limit: float, at_least: bool = False, shown: str = ""
    ) -> None:
        met = None if r is None else (r >= limit if at_least else r <= limit)
        out.append({"target": target, "value": shown or _f(r, 2, "x"), "met": met})

    for kind, text in KINDS:
        c64, c1, after = (f"{kind}_{s}" for s in ("c64", "c1_fresh", "c1_after_burst"))
        rps, p99 = (vs_plain(results, c64, k) for k in ("ok_rps", "p99_ms"))
        check(f"{text}: throughput at c=64 >= 1.0x plain", rps, 1.0, at_least=True)
        check(f"{text}: p99 at c=64 <= 1.5x plain's", p99, 1.5)
        check(f"{text}: c=1 p50 <= 2.5x plain", vs_plain(results, c1, "p50_ms"), 2.5)
        p50 = [value(results, name, "bento", "p50_ms") for name in (after, c1)]
        check(f"{text}: c=1 p50 after a c=64 burst within 10 % of fresh", ratio(*p50), 1.10)
        rps, p99 = (log_ratio(results, c64, k) for k in ("ok_rps", "p99_ms"))
        check(f"{text}: prediction log on, throughput at c=64 >= 0.95x off", rps, 0.95, True)
        check(f"{text}: prediction log on, p99 at c=64 <= 1.1x off", p99, 1.1)
    bento = [s["load"] for s in runs(results) if s["server"] in SRV and "load" in s]
    errs, total = sum(b["failed"] for b in bento), sum(b["requests"] for b in bento)
    shown = f"{errs} failed of {total}"
    check("zero errors (every Bento run)", errs if bento else None, 0, shown=shown)
    srv = results.get("servers", {}).get("bento", {})
    cold, rss, pss = srv.get("cold_start_s"), srv.get("rss_load_peak_mib"), srv.get("pss_rest_mib")
    check("cold start (launch -> /readyz) <= 10 s", cold, 10, shown=_f(cold, 1, " s"))
    rss_text = _f(rss, 0, " MiB RSS") + (f" (PSS at rest {_f(pss, 0)} MiB)" if pss else "")
    check("whole process tree <= 1 GiB resident under load", rss, 1024, shown=rss_text)
    return out


def figures(results: dict[str, Any], targets: list[dict[str, Any]]) -> dict[str, Any]:
    """The template's figures: "What it means" (the headline) and the run's facts."""

    def get(name: str, key: str, server: str = "bento") -> Any:
        return value(results, name, server, key)

    fig: dict[str, Any] = {}
    for kind in ("full", "jitter", "next"):
        c64, c1 = f"{kind}_c64", f"{kind}_c1_fresh"
        for key, k in (("ok_rps", "rps"), ("p99_ms", "p99")):
            fig[f"{k}_{kind}"] = _f(get(c64, key), 0)
            fig[f"x_{k}_{kind}"] = _f(vs_plain(results, c64, key), 2, "x")
            fig[f"log_{k}_{kind}"] = _f(log_ratio(results, c64, key), 2, "x")
        fig[f"p50_{kind}"] = _f(get(c1, "p50_ms"))
        fig[f"plain_p50_{kind}"] = _f(get(c1, "p50_ms", "plain"))
        fig[f"after_{kind}"] = _f(get(f"{kind}_c1_after_burst", "p50_ms"))
    bento = [s["load"] for s in runs(results) if s["server"] in SRV and "load" in s]
    srv, git = results.get("servers", {}).get("bento", {}), results.get("git", {})
    placings = ((results.get("floor") or {}).get("placings_fresh_field") or {}).get("mean_us")
    missed = "; ".join(t["target"] for t in targets if t["met"] is False)
    started = results.get("started_at", "?")
    stamp = ("quick-" if results.get("quick") else "") + started[:19].replace("-", "")
    log = results.get("ledger") or {}
    (rows0, n0), (rows, n) = log.get("before") or (None, None), log.get("after") or (None, None)
    how, command = results.get("label"), results.get("command", "?")
    machine = ("nproc", "cpu_model", "memory_gib", "kernel", "python", "loadavg_at_start")
    fig |= {k: "?" for k in machine} | results.get("machine", {})
    return fig | dict(
        c64=get("full_c64", "concurrency") or get("jitter_c64", "concurrency") or 64,
        errors=f"{sum(b['failed'] for b in bento):,}",
        requests=f"{sum(b['requests'] for b in bento):,}",
        rss=_f(srv.get("rss_load_peak_mib"), 0),
        cold=_f(srv.get("cold_start_s")),
        placings=_f(placings and placings / 1000, 2),
        met=sum(1 for t in targets if t["met"]),
        n_targets=len(targets),
        missed=f" Not met: {missed}." if missed else "",
        stamp=stamp.replace(":", "") + "Z",
        log_answers=_f(n, 0),
        log_rows=_f(rows, 0),
        log_added=_f(None if n is None or n0 is None else n - n0, 0),
        log_new_rows=_f(None if rows is None or rows0 is None else rows - rows0, 0),
        log_dropped=_f(log.get("dropped"), 0),
        started_at=started,
        wall_s=_f(results.get("wall_s"), 0),
        command=f"`{how}` (`{command}`)" if how else f"`{command}`",
        versions=", ".join(f"{k} {v}" for k, v in (results.get("versions") or {}).items()),
        commit=git.get("commit", "?"),
        dirty=f", uncommitted changes in {', '.join(git['dirty'])}" if git.get("dirty") else "",
        models=", ".join(f"`{t}`" for t in (results.get("models") or {}).values()),
        server_env=", ".join(f"{k}={v}" for k, v in (results.get("server_env") or {}).items()),
        request_bodies="; ".join(
            f"{k}: `{json.dumps(v)}`" for k, v in (results.get("requests") or {}).items()
        ),
        identity=results.get("identity", {}).get("summary", "not checked"),
        quiet=_quiet_text(results),
    )


def _side_by_side(results: dict[str, Any]) -> str:
    servers = servers_in(results)
    cols = [f"{label(s)} {x}" for s in servers for x in ("req/s", "p50 / p99 ms")]
    rows = []
    for name in results.get("scenario_order", []):
        recs = [scenario(results, name, s) for s in servers]
        if not any(recs):
            continue
        cells = [name, str(next(r["concurrency"] for r in recs if r))]
        for r in recs:
            latency = f"{_f(r['p50_ms'])} / {_f(r['p99_ms'])}" if r else "n/a"
            cells += [_f(r["ok_rps"]) if r else "n/a", latency]
        rps = [value(results, name, s, "ok_rps") for s in ("bento", "original", "plain")]
        rows.append(cells + [_f(ratio(rps[0], other), 2, "x") for other in rps[1:]])
    return _table(["scenario", "c", *cols, "Bento/Original req/s", "Bento/Plain req/s"], rows)


def _scenario_rows(results: dict[str, Any]) -> str:
    head = ["scenario", "endpoint", "c", "server", "req/s (2xx)", "p50 ms", "p99 ms", "errors"]
    head += ["server CPU ms/req", "load generator CPU (cores)", "other CPU (cores)"]
    rows = []
    for name in results.get("scenario_order", []):
        for s in filter(None, (scenario(results, name, srv) for srv in servers_in(results))):
            gen = s["load_cpu"]["cores_used"]
            other = _f(s.get("other_cpu_cores"), 2) + (" ⚠" if s.get("disturbed") else "")
            cells = [name, s["endpoint"], str(s["concurrency"]), label(s["server"])]
            cells += [_f(s["ok_rps"]), _f(s["p50_ms"]), _f(s["p99_ms"]), errors_text(s)]
            rows.append([*cells, _f(s.get(CPU), 2), _f(gen, 2), other])
    return _table(head, rows, "llrlrrrl")


def _resources(results: dict[str, Any]) -> str:
    head = ["server", "processes", "cold start s", "RSS at rest MiB", "PSS at rest MiB"]
    head += ["RSS peak under load MiB", "server CPU ms/req at c=64 (/predict_full)"]
    rows = []
    for server in servers_in(results):
        i = results.get("servers", {}).get(server, {})
        cells = [label(server), str(i.get("processes", "n/a")), _f(i.get("cold_start_s"))]
        cells += [_f(i.get(k), 0) for k in ("rss_rest_mib", "pss_rest_mib", "rss_load_peak_mib")]
        rows.append([*cells, _f(value(results, "full_c64", server, CPU), 2)])
    order = results.get("scenario_order", [])
    runs = [s for n in order if (s := scenario(results, n, "bento")) and s.get(CPU + "_by_process")]
    names = list(dict.fromkeys(k for s in runs for k in s[CPU + "_by_process"]))
    if not names:
        return _table(head, rows)
    by = [[s["scenario"], str(s["concurrency"])] for s in runs]
    for cells, s in zip(by, runs, strict=True):
        cells += [_f(s[CPU + "_by_process"].get(k), 2) for k in names] + [_f(s.get(CPU), 2)]
    by_process = _table(["scenario", "c", *names, "all"], by)
    return f"{_table(head, rows)}\n\nBento CPU ms per request, by process:\n\n{by_process}"


FLOOR_STEPS = {
    "model_floor": "**model floor**: Stage-1 predict_gap + Stage-2 raw_score",
    "stage1_predict_gap": "Stage-1 predict_gap (3 boosters)",
    "stage2_raw_score": "Stage-2 raw_score",
    "parse_and_resolve": "parse the JSON body + resolve_request",
    "numpy_features_both_stages": "numpy features, both stages (stage1_rows + stage2_rows)",
    "numpy_features_both_stages_no_memo": "numpy features, both stages, jittered laps (no memo)",
    "pole_estimate": "pole-lap estimate, as served (pipelines.models.pole.pole_estimate)",
    "placings_fresh_field": "podium and points odds of a field no memo has seen (cars retire)",
    "response_models_and_json": "response: pydantic models + JSON (FullResponse)",
    "dataframe_plus_columntransformer_stage1": "original: DataFrame + ColumnTransformer, one stage",
    "in_process_request_plain_path": "a whole request in-process: parse, resolve, stages, JSON",
    "in_process_request_jittered_laps": "the same with own laps jittered per request (no memo)",
}


def _floor(results: dict[str, Any]) -> str:
    floor = results.get("floor") or {}
    if not floor:
        return "(not measured)"
    rows = []
    for key, step in FLOOR_STEPS.items():
        if isinstance(v := floor.get(key), dict):
            times = [_f(v[k], 0) for k in ("mean_us", "p50_us", "p99_us")]
            rows.append([step, *times, str(v["iterations"])])
    table = _table(["step", "mean µs", "p50 µs", "p99 µs", "iterations"], rows)
    return f"One {floor.get('rows', '?')}-driver /predict_full request, in-process, no server:\n\n{table}"


def _batching(results: dict[str, Any]) -> str:
    rows = []
    for name in results.get("scenario_order", []):
        for key, v in sorted((value(results, name, "bento", "batch") or {}).items()):
            if v.get("calls"):  # not an API the scenario never called (explain_*)
                sizes = [_f(v["batches"], 0), _f(v["calls"], 0), _f(v["mean_batch_size"], 2)]
                rows.append([name, key, *sizes])
    head = ["scenario", "service.method", "batches", "calls", "mean batch size (calls)"]
    return _table(head, rows, "ll") if rows else "(no batch-size metrics: the Bento was not run)"


def _profile(results: dict[str, Any]) -> str:
    prof = results.get("profile") or {}
    if not prof.get("processes"):
        return f"(not recorded: {prof.get('skipped', 'py-spy not available')})"
    parts = [
        f"py-spy (`record --rate {prof.get('rate')} --nonblocking`, {prof.get('seconds')} s) on "
        f"each process of the {label(prof.get('server') or '?')} under "
        f"{prof.get('endpoint')} at c={prof.get('concurrency')} "
        f"({_f((prof.get('load') or {}).get('ok_rps'))} req/s under the profiler; not part of "
        "the table above). Shares are of the samples of that process; a sample counts in "
        "every category one of its frames matches."
    ]
    for proc in prof["processes"]:
        summ = proc.get("summary") or {}
        busy = _f((summ.get("busy_fraction_of_one_core") or 0) * 100, 0)
        samples = f"{summ.get('samples', 0)} samples, busy {busy}% of one core"
        parts.append(f"**{proc['name']}** (pid {proc['pid']}): {samples}")
        for head, key, fmt in (
            ("category (inclusive)", "categories_pct", "{}"),
            ("top functions (self)", "top_self_pct", "`{}`"),
        ):
            if rows := [[fmt.format(k), str(v)] for k, v in (summ.get(key) or {}).items()]:
                parts.append(_table([head, "%"], rows))
    return "\n\n".join(parts)


def _quiet_text(results: dict[str, Any]) -> str:
    runs, q = results.get("scenarios", []), results.get("quiet") or {}
    if not q:
        return "not watched"
    text = "not watched (quick); "
    if q.get("threshold"):
        text = (
            f"each server's run waited for the rest of the machine to use < {q['threshold']} cores "
            f"and was repeated (up to {q.get('retries')} times, {_f(q.get('spent_s'), 0)} s spent "
            f"of {_f(q.get('budget_s'), 0)}) when it used > {q.get('busy')} cores; "
        )
    if disturbed := sum(1 for s in runs if s.get("disturbed")):
        return text + f"**{disturbed} of {len(runs)} runs still disturbed** (⚠ below)"
    return text + f"no run disturbed (other CPU <= {q.get('busy')} cores in all {len(runs)})"


QUICK = "\n> **QUICK MODE**: a harness check with tiny durations and concurrency; the numbers "
QUICK += "mean nothing.\n"


def render(results: dict[str, Any], notes: str | None = None) -> str:
    """The report; ``notes`` (hand-written markdown, bench/analysis.md) goes at the end."""
    targets = evaluate_targets(results)
    verdict = {None: "n/a", False: "**not met**", True: "met"}
    rows = [[t["target"], t["value"], verdict[t["met"]]] for t in targets]
    servers = results.get("servers", {})
    text = TEMPLATE.read_text().format(
        **figures(results, targets),
        quick=QUICK if results.get("quick") else "",
        servers="\n".join(
            f"- **{label(s)}**: {servers.get(s, {}).get('description', '')}"
            for s in servers_in(results)
        ),
        side_by_side=_side_by_side(results),
        scenarios=_scenario_rows(results),
        resources=_resources(results),
        batching=_batching(results),
        floor=_floor(results),
        targets=_table(["target", "value", "met"], rows, "lll"),
        profile=_profile(results),
    )
    return text.rstrip() + (f"\n\n{notes.strip()}\n" if notes else "\n")


def write(results: dict[str, Any], path: Path, notes: Path | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = notes.read_text() if notes is not None and notes.exists() else None
    path.write_text(render(results, text))


def main() -> None:
    ap = argparse.ArgumentParser(description="Render BENCHMARKS.md from a results JSON.")
    ap.add_argument("results", type=Path, nargs="?", default=BENCH / "results" / "latest.json")
    ap.add_argument("-o", "--output", type=Path, default=Path("BENCHMARKS.md"))
    ap.add_argument("--notes", type=Path, default=NOTES, help="hand-written analysis appended")
    args = ap.parse_args()
    write(json.loads(args.results.read_text()), args.output, args.notes)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
