"""BENCHMARKS.md from a results JSON (written by bench.run; re-renderable on its own).

python -m bench.report bench/results/latest.json -o BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

SERVER_ORDER = ("bento", "original", "plain")
NOTES = Path(__file__).resolve().parent / "analysis.md"
LABELS = {"bento": "Bento", "original": "Original", "plain": "Plain"}
MIB = 2**20
GIB_MIB = 1024.0


# ---------------------------------------------------------------------- lookups


def scenario(results: dict[str, Any], name: str, server: str) -> dict[str, Any] | None:
    for s in results.get("scenarios", []):
        if s["scenario"] == name and s["server"] == server:
            return s
    return None


def value(s: dict[str, Any] | None, key: str) -> Any:
    """``s[key]`` of a scenario record that may be missing."""
    return None if s is None else s.get(key)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def _f(v: float | None, digits: int = 1, unit: str = "") -> str:
    if v is None:
        return "n/a"
    return f"{v:,.{digits}f}{unit}"


def _x(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def errors_text(s: dict[str, Any]) -> str:
    kinds = s["hey"].get("failures_by_kind", {})
    if not kinds:
        return "0"
    parts = ", ".join(f"{k}: {n}" for k, n in sorted(kinds.items()))
    return f"{sum(kinds.values())} ({parts})"


def servers_in(results: dict[str, Any]) -> list[str]:
    present = {s["server"] for s in results.get("scenarios", [])} | set(results.get("servers", {}))
    return [s for s in SERVER_ORDER if s in present]


# ---------------------------------------------------------------------- targets


KINDS = (("full", "the event's own data (memo hits)"), ("jitter", "own laps, jittered (no memo)"))
"""The two request kinds of issue 14: the fixed /predict_full body, and bodies carrying the
20 drivers' own practice laps jittered per request (no cache can answer them)."""


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The Bento targets of issue 14 (ratios to the 1-worker plain server in the same
    run, for both request kinds), each with its value and met / not met (None: unknown)."""
    out: list[dict[str, Any]] = []

    def add(target: str, value: str, met: bool | None) -> None:
        out.append({"target": target, "value": value, "met": met})

    for kind, label in KINDS:
        b64 = scenario(results, f"{kind}_c64", "bento")
        p64 = scenario(results, f"{kind}_c64", "plain")
        r_rps = ratio(value(b64, "ok_rps"), value(p64, "ok_rps"))
        add(
            f"{label}: throughput at c=64 >= 1.0x plain",
            _x(r_rps),
            None if r_rps is None else r_rps >= 1.0,
        )
        r_p99 = ratio(value(b64, "p99_ms"), value(p64, "p99_ms"))
        add(
            f"{label}: p99 at c=64 <= 1.5x plain's",
            _x(r_p99),
            None if r_p99 is None else r_p99 <= 1.5,
        )
        b1 = scenario(results, f"{kind}_c1_fresh", "bento")
        p1 = scenario(results, f"{kind}_c1_fresh", "plain")
        r_c1 = ratio(value(b1, "p50_ms"), value(p1, "p50_ms"))
        add(f"{label}: c=1 p50 <= 2.5x plain", _x(r_c1), None if r_c1 is None else r_c1 <= 2.5)
        after = scenario(results, f"{kind}_c1_after_burst", "bento")
        r_burst = ratio(value(after, "p50_ms"), value(b1, "p50_ms"))
        add(
            f"{label}: c=1 p50 after a c=64 burst within 10 % of fresh",
            _x(r_burst),
            None if r_burst is None else r_burst <= 1.10,
        )
    bento = [s for s in results.get("scenarios", []) if s["server"] == "bento"]
    errs = sum(s["hey"]["failed"] for s in bento)
    add(
        "zero errors (every scenario)",
        f"{errs} failed of {sum(s['hey']['requests'] for s in bento)}",
        None if not bento else errs == 0,
    )
    srv = results.get("servers", {}).get("bento", {})
    cold = srv.get("cold_start_s")
    add(
        "cold start (launch -> /readyz) <= 10 s",
        _f(cold, 1, " s"),
        None if cold is None else cold <= 10.0,
    )
    rss = srv.get("rss_load_peak_mib")
    pss = srv.get("pss_rest_mib")
    add(
        "whole process tree <= 1 GiB resident under load",
        _f(rss, 0, " MiB RSS") + (f" (PSS at rest {_f(pss, 0)} MiB)" if pss else ""),
        None if rss is None else rss <= GIB_MIB,
    )
    return out


# ----------------------------------------------------------------------- render


def _scenario_rows(results: dict[str, Any]) -> list[str]:
    rows = [
        "| scenario | endpoint | c | server | req/s (2xx) | p50 ms | p99 ms | errors "
        "| server CPU ms/req | hey CPU (cores) | other CPU (cores) |",
        "|---|---|---:|---|---:|---:|---:|---|---:|---:|---:|",
    ]
    for name in results.get("scenario_order", []):
        for server in servers_in(results):
            s = scenario(results, name, server)
            if s is None:
                continue
            rows.append(
                f"| {name} | {s['endpoint']} | {s['concurrency']} | {LABELS[server]} "
                f"| {_f(s['ok_rps'])} | {_f(s['p50_ms'], 1)} | {_f(s['p99_ms'], 1)} "
                f"| {errors_text(s)} | {_f(s.get('server_cpu_ms_per_request'), 2)} "
                f"| {_f(s['hey_cpu'].get('cores_used'), 2)} | {_f(s.get('other_cpu_cores'), 2)}"
                f"{' ⚠' if s.get('disturbed') else ''} |"
            )
    return rows


def _side_by_side(results: dict[str, Any]) -> list[str]:
    servers = servers_in(results)
    head = "| scenario | c | " + " | ".join(
        f"{LABELS[s]} req/s | {LABELS[s]} p50 / p99 ms" for s in servers
    )
    head += " | Bento/Original req/s | Bento/Plain req/s |"
    sep = "|---|---:|" + "---:|---:|" * len(servers) + "---:|---:|"
    rows = [head, sep]
    for name in results.get("scenario_order", []):
        cells = []
        conc = None
        rps: dict[str, float | None] = {}
        for server in servers:
            s = scenario(results, name, server)
            if s is None:
                cells += ["n/a", "n/a"]
                continue
            conc = s["concurrency"]
            rps[server] = s["ok_rps"]
            cells += [_f(s["ok_rps"]), f"{_f(s['p50_ms'], 1)} / {_f(s['p99_ms'], 1)}"]
        if conc is None:
            continue
        r1 = _x(ratio(rps.get("bento"), rps.get("original")))
        r2 = _x(ratio(rps.get("bento"), rps.get("plain")))
        rows.append(f"| {name} | {conc} | " + " | ".join(cells) + f" | {r1} | {r2} |")
    return rows


def _resources(results: dict[str, Any]) -> list[str]:
    rows = [
        "| server | processes | cold start s | RSS at rest MiB | PSS at rest MiB "
        "| RSS peak under load MiB | server CPU ms/req at c=64 (/predict_full) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for server in servers_in(results):
        info = results.get("servers", {}).get(server, {})
        s = scenario(results, "full_c64", server)
        rows.append(
            f"| {LABELS[server]} | {info.get('processes', 'n/a')} | {_f(info.get('cold_start_s'), 1)} "
            f"| {_f(info.get('rss_rest_mib'), 0)} | {_f(info.get('pss_rest_mib'), 0)} "
            f"| {_f(info.get('rss_load_peak_mib'), 0)} "
            f"| {_f(value(s, 'server_cpu_ms_per_request'), 2)} |"
        )
    return rows


def _bento_cpu(results: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for s in results.get("scenarios", []):
        if s["server"] == "bento":
            for k in s.get("server_cpu_ms_per_request_by_process") or {}:
                if k not in names:
                    names.append(k)
    if not names:
        return []
    rows = [
        "Bento CPU ms per request, by process:",
        "",
        "| scenario | c | " + " | ".join(names) + " | all |",
        "|---|---:|" + "---:|" * (len(names) + 1),
    ]
    for name in results.get("scenario_order", []):
        s = scenario(results, name, "bento")
        if s is None:
            continue
        by = s.get("server_cpu_ms_per_request_by_process") or {}
        cells = " | ".join(_f(by.get(k), 2) for k in names)
        rows.append(
            f"| {name} | {s['concurrency']} | {cells} "
            f"| {_f(s.get('server_cpu_ms_per_request'), 2)} |"
        )
    return ["", *rows]


def _floor(results: dict[str, Any]) -> list[str]:
    floor = results.get("floor") or {}
    if not floor:
        return ["(not measured)"]
    names = {
        "model_floor": "**model floor**: Stage-1 predict_gap + Stage-2 raw_score",
        "stage1_predict_gap": "Stage-1 predict_gap (3 boosters)",
        "stage2_raw_score": "Stage-2 raw_score",
        "parse_and_resolve": "parse the JSON body + resolve_request",
        "numpy_features_both_stages": "numpy features, both stages (stage1_rows + stage2_rows)",
        "numpy_features_both_stages_no_memo": "numpy features, both stages, the drivers' own laps jittered (no memo hit)",
        "pole_estimate": "pole-lap estimate, as served (pipelines.models.pole.pole_estimate)",
        "pole_history": "FeatureSnapshot.pole_history",
        "estimate_pole": "models.estimate_pole (pandas)",
        "placings_fresh_field": "podium and points odds of a field no memo has seen (cars retire)",
        "response_models_and_json": "response: pydantic models + JSON (FullResponse)",
        "dataframe_plus_columntransformer_stage1": "original design: DataFrame + ColumnTransformer, one stage",
        "in_process_request_plain_path": "a whole request in-process: parse, resolve, both stages, JSON (plain path, no HTTP)",
        "in_process_request_jittered_laps": "the same with the drivers' own laps jittered per request (no memo hit)",
    }
    rows = [
        f"One {floor.get('rows', '?')}-driver /predict_full request, in-process, no server:",
        "",
        "| step | mean µs | p50 µs | p99 µs | iterations |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, label in names.items():
        v = floor.get(key)
        if not isinstance(v, dict):
            continue
        rows.append(
            f"| {label} | {_f(v['mean_us'], 0)} | {_f(v['p50_us'], 0)} "
            f"| {_f(v['p99_us'], 0)} | {v['iterations']} |"
        )
    return rows


def _batching(results: dict[str, Any]) -> list[str]:
    rows = [
        "| scenario | service.method | batches | calls | mean batch size (calls) |",
        "|---|---|---:|---:|---:|",
    ]
    for name in results.get("scenario_order", []):
        s = scenario(results, name, "bento")
        for key, v in sorted(((s or {}).get("batch") or {}).items()):
            if not v.get("calls"):
                continue  # an API the scenario never called (explain_*)
            rows.append(
                f"| {name} | {key} | {_f(v['batches'], 0)} | {_f(v['calls'], 0)} "
                f"| {_f(v['mean_batch_size'], 2)} |"
            )
    return rows if len(rows) > 2 else ["(no batch-size metrics: the Bento was not run)"]


def _profile(results: dict[str, Any]) -> list[str]:
    prof = results.get("profile") or {}
    if not prof.get("processes"):
        return [f"(not recorded: {prof.get('skipped', 'py-spy not available')})"]
    load = prof.get("load") or {}
    rows = [
        f"py-spy (`record --rate {prof.get('rate')} --nonblocking`, {prof.get('seconds')} s) on "
        f"each process of the {LABELS.get(prof.get('server', ''), '?')} while hey ran "
        f"{prof.get('endpoint')} at c={prof.get('concurrency')} "
        f"({_f(load.get('ok_rps'))} req/s under the profiler; not part of the table above). "
        "Shares are of the samples of that process; a sample counts in every category "
        "one of its frames matches.",
        "",
    ]
    for proc in prof["processes"]:
        summ = proc.get("summary") or {}
        rows.append(
            f"**{proc['name']}** (pid {proc['pid']}): {summ.get('samples', 0)} samples, "
            f"busy {_f((summ.get('busy_fraction_of_one_core') or 0) * 100, 0)}% of one core"
        )
        rows.append("")
        cats = summ.get("categories_pct") or {}
        if cats:
            rows.append("| category (inclusive) | % |")
            rows.append("|---|---:|")
            rows += [f"| {k} | {v} |" for k, v in cats.items()]
            rows.append("")
        top = summ.get("top_self_pct") or {}
        if top:
            rows.append("| top functions (self) | % |")
            rows.append("|---|---:|")
            rows += [f"| `{k}` | {v} |" for k, v in top.items()]
            rows.append("")
    return rows


def _quiet_text(results: dict[str, Any]) -> str:
    runs = results.get("scenarios", [])
    disturbed = [s for s in runs if s.get("disturbed")]
    q = results.get("quiet") or {}
    if not q:
        return "not watched"
    text = (
        f"each server's run waited for the rest of the machine to use < {q.get('threshold')} "
        f"cores and was repeated (up to {q.get('retries')} times, {_f(q.get('spent_s'), 0)} s "
        f"spent of {_f(q.get('budget_s'), 0)}) when it used > {q.get('busy')} cores; "
    )
    if not q.get("threshold"):
        text = "not watched (quick); "
    if disturbed:
        return text + f"**{len(disturbed)} of {len(runs)} runs still disturbed** (⚠ below)"
    return text + f"no run disturbed (other CPU <= {q.get('busy')} cores in all {len(runs)})"


def render(results: dict[str, Any], notes: str | None = None) -> str:
    """The report; ``notes`` (hand-written markdown, bench/analysis.md) goes at the end."""
    m = results.get("machine", {})
    git = results.get("git", {})
    quick = results.get("quick", False)
    targets = evaluate_targets(results)
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by bench/run.py (bench/report.py): do not edit by hand; "
        "re-run `make bench`. -->",
        "",
    ]
    if quick:
        lines += [
            "> **QUICK MODE**: a harness check with tiny durations and concurrency; the "
            "numbers mean nothing.",
            "",
        ]
    lines += [
        "Issue 14 (after issue 6): the Bento (`bentoml serve`, as users run it) beside the original "
        "architecture and the plain-server limit, all three serving the same stored models "
        "with identical answers (checked before timing), measured in one run on one machine "
        "with [hey](https://packages.debian.org/bookworm/hey) (one fixed body) and "
        "[wrk](https://packages.debian.org/bookworm/wrk) (`jitter_*`: a new body every "
        "request; `next_*` the same for an event the data does not have, the next "
        "season's Monaco by circuit and date, as users ask before F1DB has it) on "
        "loopback, scenario by scenario, alternating the servers.",
        "",
        f"- Date: {results.get('started_at', '?')} (UTC), {_f(results.get('wall_s'), 0)} s in all",
        f"- Command: `{results.get('label') or results.get('command', '?')}`"
        + (f" (`{results.get('command')}`)" if results.get("label") else ""),
        f"- Machine: {m.get('nproc', '?')} CPUs ({m.get('cpu_model', '?')}), "
        f"{m.get('memory_gib', '?')} GiB, Linux {m.get('kernel', '?')}, Python "
        f"{m.get('python', '?')}; load average at start {m.get('loadavg_at_start', '?')}",
        f"- Versions: {', '.join(f'{k} {v}' for k, v in (results.get('versions') or {}).items())}",
        f"- Code: commit `{git.get('commit', '?')}`"
        + (f", uncommitted changes in {', '.join(git['dirty'])}" if git.get("dirty") else ""),
        f"- Models: {', '.join(f'`{t}`' for t in (results.get('models') or {}).values())}",
        f"- Environment of every server: {', '.join(f'{k}={v}' for k, v in (results.get('server_env') or {}).items())}",
        "- Requests: "
        + "; ".join(f"{k}: `{json.dumps(v)}`" for k, v in (results.get("requests") or {}).items()),
        f"- Identical answers: {results.get('identity', {}).get('summary', 'not checked')}",
        f"- Shared machine: {_quiet_text(results)}",
        "",
        "Servers:",
        "",
    ]
    for name in servers_in(results):
        lines.append(
            f"- **{LABELS[name]}**: {results.get('servers', {}).get(name, {}).get('description', '')}"
        )
    lines += [
        "",
        "## Side by side",
        "",
        "req/s counts 2xx answers only; p50/p99 from hey (0.1 ms resolution).",
        "",
        *_side_by_side(results),
        "",
        "## Every scenario",
        "",
        "Scenarios ran in this order, each one on every server before the next; "
        "`*_after_burst` ran on each server right after its own c=64 burst. "
        "`hey CPU` is the load generator's own CPU (it shares the cores); `other CPU` is "
        "the rest of the machine during the run (not the servers, not hey; ⚠: above the disturbance threshold).",
        "",
        *_scenario_rows(results),
        "",
        "## Resources",
        "",
        "Memory is summed over the server's whole process tree (RSS counts shared pages in "
        "every process; PSS splits them). Cold start: process launch to the first `/readyz` 200.",
        "",
        *_resources(results),
        *_bento_cpu(results),
        "",
        "## Adaptive batching (Bento, from `/metrics`)",
        "",
        "`bentoml_service_adaptive_batch_size` counts calls per batch. The front merges "
        "concurrent requests into one call per stage before BentoML's batcher sees them "
        "(`/health` reports rows per call), so the batcher mostly sees one call at a time.",
        "",
        *_batching(results),
        "",
        "## Floors",
        "",
        *_floor(results),
        "",
        "## Targets of issue 14 (the Bento, /predict_full, 20 drivers)",
        "",
        "Ratios to the 1-worker plain server in the same run, for both request kinds: the "
        "event's own data (one fixed body: its feature rows are memoised) and the 20 "
        "drivers' own practice laps jittered per request (no memo can answer).",
        "",
        "| target | value | met |",
        "|---|---|---|",
    ]
    for t in targets:
        met = "n/a" if t["met"] is None else ("met" if t["met"] else "**not met**")
        lines.append(f"| {t['target']} | {t['value']} | {met} |")
    met_n = sum(1 for t in targets if t["met"])
    lines += [
        "",
        f"{met_n} of {len(targets)} targets met.",
        "",
        "## Where the time goes",
        "",
        *_profile(results),
    ]
    if notes:
        lines += ["", notes.strip()]
    return "\n".join(lines).rstrip() + "\n"


def write(results: dict[str, Any], path: Path, notes: Path | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = notes.read_text() if notes is not None and notes.exists() else None
    path.write_text(render(results, text))


def main() -> None:
    ap = argparse.ArgumentParser(description="Render BENCHMARKS.md from a results JSON.")
    ap.add_argument("results", type=Path)
    ap.add_argument("-o", "--output", type=Path, default=Path("BENCHMARKS.md"))
    ap.add_argument(
        "--notes", type=Path, default=NOTES, help="hand-written analysis appended (if it exists)"
    )
    args = ap.parse_args()
    write(json.loads(args.results.read_text()), args.output, args.notes)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
