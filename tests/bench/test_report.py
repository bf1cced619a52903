"""The report writer, the /metrics and py-spy parsers and the JSON comparison, on
recorded output."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench import report
from bench.profile import summarise
from bench.servers import answer_difference, batch_delta, batch_histograms, first_difference

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return json.loads((DATA / "results_sample.json").read_text())


def _row(md: str, first_cell: str, server: str | None = None) -> list[str]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == first_cell and (server is None or server in cells):
            return cells
    raise AssertionError(f"no row {first_cell!r} {server or ''} in:\n{md}")


def test_side_by_side_table_has_the_numbers_and_the_ratios(results: dict[str, Any]) -> None:
    md = report.render(results)
    for name in results["scenario_order"]:
        b = report.scenario(results, name, "bento")
        o = report.scenario(results, name, "original")
        p = report.scenario(results, name, "plain")
        assert b and o and p
        row = _row(md.split("## Every scenario")[0], name)
        assert row[1] == str(b["concurrency"])
        assert row[2] == f"{b['ok_rps']:,.1f}"
        assert row[4] == f"{o['ok_rps']:,.1f}"
        assert row[6] == f"{p['ok_rps']:,.1f}"
        assert row[-2] == f"{b['ok_rps'] / o['ok_rps']:.2f}x"
        assert row[-1] == f"{b['ok_rps'] / p['ok_rps']:.2f}x"


def test_every_scenario_row_has_rps_latency_and_errors(results: dict[str, Any]) -> None:
    md = report.render(results).split("## Every scenario")[1].split("## Resources")[0]
    for s in results["scenarios"]:
        row = _row(md, s["scenario"], report.label(s["server"]))
        assert row[4] == f"{s['ok_rps']:,.1f}"
        p50 = "n/a" if s["p50_ms"] is None else f"{s['p50_ms']:,.1f}"
        assert row[5] == p50
        assert row[7] == report.errors_text(s)


def test_report_names_machine_command_date_and_models(results: dict[str, Any]) -> None:
    md = report.render(results)
    m = results["machine"]
    assert f"{m['nproc']} CPUs ({m['cpu_model']})" in md
    assert f"{m['memory_gib']} GiB" in md
    assert results["started_at"] in md
    assert results["command"] in md
    for tag in results["models"].values():
        assert tag in md
    assert "GENERATED" in md.upper()


def test_targets_follow_the_numbers(results: dict[str, Any]) -> None:
    targets = {t["target"]: t for t in report.evaluate_targets(results)}
    b = report.scenario(results, "full_c64", "bento")
    p = report.scenario(results, "full_c64", "plain")
    assert b and p
    t = targets["the event's own data (memo hits): throughput at c=64 >= 1.0x plain"]
    assert t["value"] == f"{b['ok_rps'] / p['ok_rps']:.2f}x"
    assert t["met"] == (b["ok_rps"] / p["ok_rps"] >= 1.0)
    cold = results["servers"]["bento"]["cold_start_s"]
    assert targets["cold start (launch -> /readyz) <= 10 s"]["met"] == (cold <= 10)
    md = report.render(results)
    met = sum(1 for x in targets.values() if x["met"])
    assert f"{met} of {len(targets)} targets met." in md


def test_targets_met_and_not_met_on_made_up_numbers(results: dict[str, Any]) -> None:
    r = copy.deepcopy(results)
    rps = {"bento": 1200.0, "original": 190.0, "plain": 1100.0}
    for s in r["scenarios"]:
        s["load"]["failed"] = 0
        if s["scenario"] == "full_c64":
            s["ok_rps"] = rps[s["server"]]
            s["p99_ms"] = 300.0 if s["server"] == "bento" else 180.0
        if s["scenario"] == "full_c1_fresh":
            s["p50_ms"] = 5.0 if s["server"] == "bento" else 2.5
        if s["scenario"] == "full_c1_after_burst" and s["server"] == "bento":
            s["p50_ms"] = 5.4
    r["servers"]["bento"].update(cold_start_s=9.5, rss_load_peak_mib=1100.0)
    got = {t["target"]: t["met"] for t in report.evaluate_targets(r)}
    own = "the event's own data (memo hits)"
    assert got[f"{own}: throughput at c=64 >= 1.0x plain"] is True  # 1.09x
    assert got[f"{own}: p99 at c=64 <= 1.5x plain's"] is False  # 1.67x
    assert got[f"{own}: c=1 p50 <= 2.5x plain"] is True  # 2.0x
    assert got[f"{own}: c=1 p50 after a c=64 burst within 10 % of fresh"] is True  # 1.08x
    zero = "zero errors (every Bento run)"
    assert got[zero] is True
    assert got["cold start (launch -> /readyz) <= 10 s"] is True
    assert got["whole process tree <= 1 GiB resident under load"] is False
    # the sample run has no jittered scenarios: unknown, not met
    assert got["own laps, jittered (no memo): throughput at c=64 >= 1.0x plain"] is None
    r["scenarios"] = [s for s in r["scenarios"] if s["server"] != "plain"]
    got = {t["target"]: t["met"] for t in report.evaluate_targets(r)}
    assert got[f"{own}: throughput at c=64 >= 1.0x plain"] is None
    # a failure in an on/off pair run counts too
    load = {"failed": 1, "requests": 10}
    off = {"scenario": "full_c64", "server": "bento_ledger_off", "ok_rps": 1.0, "p99_ms": 1.0}
    r["ledger_runs"] = [off | {"load": load}]
    assert {t["target"]: t["met"] for t in report.evaluate_targets(r)}[zero] is False


def test_what_it_means_reads_its_figures_from_the_results(results: dict[str, Any]) -> None:
    head = report.render(results).split("## How it was measured")[0]
    b64, p64 = (report.scenario(results, "full_c64", s) for s in ("bento", "plain"))
    assert b64 and p64
    assert f"the Bento answers {b64['ok_rps']:,.0f} req/s when one body repeats" in head
    assert f"That is {b64['ok_rps'] / p64['ok_rps']:.2f}x and n/a the single-process" in head
    p50 = report.value(results, "full_c1_fresh", "bento", "p50_ms")
    assert f"One request at a time takes {p50:,.1f} ms with the repeated body" in head
    cold = results["servers"]["bento"]["cold_start_s"]
    assert f"Launch to `/readyz` takes {cold:,.1f} s." in head
    targets = report.evaluate_targets(results)
    assert f"{sum(1 for t in targets if t['met'])} of {len(targets)} targets are met." in head
    assert (
        f"`bench/results/{results['started_at'][:19].replace('-', '').replace(':', '')}Z.json`"
        in head
    )
    r = copy.deepcopy(results)
    for s in r["scenarios"]:
        if (s["scenario"], s["server"]) == ("full_c64", "bento"):
            s["ok_rps"] = 12345.0
    assert "the Bento answers 12,345 req/s when one body repeats" in report.render(r)


def test_quick_results_are_flagged(results: dict[str, Any]) -> None:
    r = dict(results, quick=True)
    assert "QUICK MODE" in report.render(r)
    assert "QUICK MODE" not in report.render(dict(results, quick=False))


def test_write_and_cli_round_trip(results: dict[str, Any], tmp_path: Path, monkeypatch) -> None:
    src = tmp_path / "r.json"
    src.write_text(json.dumps(results))
    out = tmp_path / "B.md"
    notes = tmp_path / "notes.md"
    notes.write_text("## Analysis\n\nhand-written\n")
    argv = ["bench.report", str(src), "-o", str(out), "--notes", str(notes)]
    monkeypatch.setattr("sys.argv", argv)
    report.main()
    assert out.read_text() == report.render(results, notes.read_text())
    assert out.read_text().endswith("hand-written\n")


# ------------------------------------------------------------------ /metrics


def test_batch_histograms_from_a_recorded_metrics_page() -> None:
    text = (DATA / "bento_metrics.txt").read_text()
    h = batch_histograms(text)
    assert set(h) == {"f1_stage1.predict_gap", "f1_stage2.predict_logit"}
    for v in h.values():
        assert v["count"] > 0 and v["sum"] >= v["count"]
    # the same numbers straight from the exposition lines
    m = re.search(
        r'^bentoml_service_adaptive_batch_size_count\{[^}]*method_name="predict_gap"'
        r"[^}]*\} (\S+)$",
        text,
        re.M,
    )
    assert m and h["f1_stage1.predict_gap"]["count"] == float(m.group(1))


def test_batch_delta_is_calls_per_batch() -> None:
    before = {"a.m": {"sum": 10.0, "count": 10.0}}
    after = {"a.m": {"sum": 110.0, "count": 35.0}, "b.n": {"sum": 0.0, "count": 0.0}}
    d = batch_delta(before, after)
    assert d["a.m"] == {"batches": 25.0, "calls": 100.0, "mean_batch_size": 4.0}
    assert d["b.n"]["mean_batch_size"] is None


# ------------------------------------------------------------------- py-spy


def test_profile_summary_of_a_recorded_py_spy_run() -> None:
    text = (DATA / "pyspy_stage1_c64.raw").read_text()
    total = sum(int(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.strip())
    assert total > 50
    s = summarise(text, seconds=5, rate=100, top=5)
    assert s["samples"] == total
    assert s["busy_fraction_of_one_core"] == pytest.approx(total / 500)
    assert len(s["top_self_pct"]) <= 5
    cats = s["categories_pct"]
    assert cats["OpenTelemetry tracing"] > 0
    assert all(0 < v <= 100 for v in cats.values())
    assert summarise("garbage line without count\n\n", seconds=5, rate=100)["samples"] == 0


# ---------------------------------------------------------------- comparison


def test_answers_differ_in_anything_but_the_timing() -> None:
    a: dict[str, Any] = {"qualifying_predictions": [1], "metadata": {"inference_ms": 1.5}}
    b: dict[str, Any] = {"qualifying_predictions": [1], "metadata": {"inference_ms": 9.0}}
    assert answer_difference(httpx.Response(200, json=a), httpx.Response(200, json=b)) is None
    assert a["metadata"]["inference_ms"] == 1.5  # the input is left alone
    b["qualifying_predictions"] = [2]
    diff = answer_difference(httpx.Response(200, json=a), httpx.Response(200, json=b))
    assert diff == "$.qualifying_predictions[0]: 1 != 2"
    assert answer_difference(httpx.Response(200, json=a), httpx.Response(422, json=a)) == (
        "status 200 != 422"
    )
    warned = httpx.Response(200, json=a, headers={"X-F1-Warnings": "late data"})
    assert "X-F1-Warnings" in str(answer_difference(warned, httpx.Response(200, json=a)))
    assert first_difference([1, 2], [1]) == "$: 2 items != 1"
    assert first_difference({"a": 1}, {"b": 1}) == "$.a: missing on one side"
    assert first_difference(1, 1.0) == "$: int != float"


# ------------------------------------------------------------ prediction log


@pytest.fixture(scope="module")
def ledger_results() -> dict[str, Any]:
    """A quick run with the Bento's prediction log on and off (``bento_ledger_off``)."""
    return json.loads((DATA / "results_ledger.json").read_text())


LOG_TARGETS = {
    "full": "the event's own data (memo hits): prediction log on",
    "jitter": "own laps, jittered (no memo): prediction log on",
}


def test_prediction_log_targets_follow_the_numbers(ledger_results: dict[str, Any]) -> None:
    targets = {t["target"]: t for t in report.evaluate_targets(ledger_results)}
    for kind, text in LOG_TARGETS.items():
        on = report.scenario(ledger_results, f"{kind}_c64", "bento")
        off = report.scenario(ledger_results, f"{kind}_c64", "bento_ledger_off")
        assert on and off
        rps, p99 = on["ok_rps"] / off["ok_rps"], on["p99_ms"] / off["p99_ms"]
        t = targets[f"{text}, throughput at c=64 >= 0.95x off"]
        assert (t["value"], t["met"]) == (f"{rps:.2f}x", rps >= 0.95)
        t = targets[f"{text}, p99 at c=64 <= 1.1x off"]
        assert (t["value"], t["met"]) == (f"{p99:.2f}x", p99 <= 1.1)
    md = report.render(ledger_results)
    assert _row(md.split("## Targets")[1], f"{LOG_TARGETS['full']}, p99 at c=64 <= 1.1x off")


@pytest.mark.parametrize(
    ("rps_on", "p99_on", "rps_met", "p99_met"),
    [(950.0, 110.0, True, True), (949.0, 111.0, False, False), (1200.0, 80.0, True, True)],
)
def test_prediction_log_targets_at_their_bounds(
    ledger_results: dict[str, Any], rps_on: float, p99_on: float, rps_met: bool, p99_met: bool
) -> None:
    r = copy.deepcopy(ledger_results)
    for s in r["scenarios"]:
        if s["scenario"] in ("full_c64", "jitter_c64"):
            on = s["server"] == "bento"
            s["ok_rps"], s["p99_ms"] = (rps_on, p99_on) if on else (1000.0, 100.0)
    got = {t["target"]: t["met"] for t in report.evaluate_targets(r)}
    for text in LOG_TARGETS.values():
        assert got[f"{text}, throughput at c=64 >= 0.95x off"] is rps_met
        assert got[f"{text}, p99 at c=64 <= 1.1x off"] is p99_met
    r["scenarios"] = [s for s in r["scenarios"] if s["server"] != "bento_ledger_off"]
    got = {t["target"]: t["met"] for t in report.evaluate_targets(r)}
    assert got[f"{LOG_TARGETS['jitter']}, p99 at c=64 <= 1.1x off"] is None


def test_what_it_means_reports_the_prediction_log(ledger_results: dict[str, Any]) -> None:
    r = copy.deepcopy(ledger_results)
    rows, answers = r["ledger"]["after"]
    r["ledger"]["before"] = [rows - 300, answers - 2000]
    head = report.render(r).split("## How it was measured")[0]
    assert f"the log holds {answers:,} answers in {rows:,} rows." in head
    assert "This run added\n  2,000 answers in 300 new rows." in head
    on, off = (report.scenario(r, "jitter_c64", s) for s in ("bento", "bento_ledger_off"))
    assert on and off
    assert f"{on['ok_rps'] / off['ok_rps']:.2f}x the req/s it answers with it off" in head
    assert f"and {on['p99_ms'] / off['p99_ms']:.2f}x the p99 with it off" in head
    assert "Bento ledger off" in report.render(r).split("## Side by side")[1]
    old = report.render(dict(r, ledger=None)).split("## How it was measured")[0]
    assert "the log holds n/a answers in n/a rows" in old
