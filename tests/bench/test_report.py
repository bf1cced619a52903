"""The report writer, the /metrics and py-spy parsers and the JSON comparison, on
recorded output."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import report
from bench.profile import parse_collapsed, summarise
from bench.servers import batch_delta, batch_histograms, comparable, first_difference

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
        row = _row(md, s["scenario"], report.LABELS[s["server"]])
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
    assert got["zero errors (every scenario)"] is True
    assert got["cold start (launch -> /readyz) <= 10 s"] is True
    assert got["whole process tree <= 1 GiB resident under load"] is False
    # the sample run has no jittered scenarios: unknown, not met
    assert got["own laps, jittered (no memo): throughput at c=64 >= 1.0x plain"] is None
    r["scenarios"] = [s for s in r["scenarios"] if s["server"] != "plain"]
    got = {t["target"]: t["met"] for t in report.evaluate_targets(r)}
    assert got[f"{own}: throughput at c=64 >= 1.0x plain"] is None


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


def test_results_measured_with_hey_render_the_same_tables(results: dict[str, Any]) -> None:
    old = copy.deepcopy(results)
    old["versions"] = {k: v for k, v in old["versions"].items() if k != "wrk"} | {"hey": "0.1.4"}
    for s in old["scenarios"]:
        s["hey"], s["hey_cpu"] = s.pop("load"), s.pop("load_cpu")
    new_md, old_md = report.render(results), report.render(old)
    assert report.evaluate_targets(old) == report.evaluate_targets(results)
    assert new_md.split("## Side by side")[1] == old_md.split("## Side by side")[1]
    assert "[hey](" in old_md.split("## Side by side")[0]
    assert "[hey](" not in new_md


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
    stacks = parse_collapsed(text)
    total = sum(n for _, n in stacks)
    assert total > 50
    s = summarise(text, seconds=5, rate=100, top=5)
    assert s["samples"] == total
    assert s["busy_fraction_of_one_core"] == pytest.approx(total / 500)
    assert len(s["top_self_pct"]) <= 5
    cats = s["categories_pct"]
    assert cats["OpenTelemetry tracing"] > 0
    assert all(0 < v <= 100 for v in cats.values())
    assert parse_collapsed("garbage line without count\n\n") == []


# ---------------------------------------------------------------- comparison


def test_comparable_drops_only_the_timing() -> None:
    a: dict[str, Any] = {"qualifying_predictions": [1], "metadata": {"inference_ms": 1.5}}
    b: dict[str, Any] = {"qualifying_predictions": [1], "metadata": {"inference_ms": 9.0}}
    assert comparable(a) == comparable(b)
    assert a["metadata"]["inference_ms"] == 1.5  # the input is left alone
    assert first_difference(comparable(a), comparable(b)) is None
    b["qualifying_predictions"] = [2]
    assert first_difference(comparable(a), comparable(b)) == "$.qualifying_predictions[0]: 1 != 2"
    assert first_difference([1, 2], [1]) == "$: 2 items != 1"
    assert first_difference({"a": 1}, {"b": 1}) == "$.a: missing on one side"
    assert first_difference(1, 1.0) == "$: int != float"
