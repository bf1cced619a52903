"""hey's summary parser and runner, on output recorded from real hey runs."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from bench.hey import HeyError, hey_command, parse_summary, run_hey

DATA = Path(__file__).parent / "data"
HEY_PIPE_LEFT_OPEN = pytest.mark.filterwarnings(
    "ignore:unclosed file <_io.BufferedReader:ResourceWarning"
)
"""run_hey never closes hey's stdout pipe: the garbage collector does, and says so."""


def _read(name: str) -> str:
    return (DATA / name).read_text()


def test_parses_a_successful_run() -> None:
    r = parse_summary(_read("hey_http_server_get_c2.txt"))
    assert r.total_s == pytest.approx(2.0054)
    assert r.rps == pytest.approx(496.6654)
    assert r.average_s == pytest.approx(0.0038)
    assert r.fastest_s == pytest.approx(0.0009)
    assert r.slowest_s == pytest.approx(0.0336)
    assert r.percentiles_s == {
        10: 0.0013,
        25: 0.0018,
        50: 0.0026,
        75: 0.0044,
        90: 0.0073,
        95: 0.0093,
        99: 0.0247,
    }
    assert r.pct_ms(50) == pytest.approx(2.6)
    assert r.pct_ms(99) == pytest.approx(24.7)
    assert r.status == {"200": 996}
    assert r.errors == {}
    assert (r.responses, r.ok, r.failed, r.requests) == (996, 996, 0, 996)
    assert r.ok_rps == pytest.approx(996 / 2.0054)
    assert r.failures_by_kind() == {}


def test_parses_the_bento_under_load() -> None:
    r = parse_summary(_read("hey_bento_predict_full_c64.txt"))
    assert r.total_s > 10
    assert r.ok == r.status.get("200", 0) > 100
    assert set(r.percentiles_s) == {10, 25, 50, 75, 90, 95, 99}
    assert r.pct_ms(50) <= r.pct_ms(99)  # type: ignore[operator]
    assert r.ok_rps == pytest.approx(r.ok / r.total_s)


def test_few_requests_leave_the_top_percentile_out() -> None:
    """hey prints "0% in 0.0000 secs" where it has too few samples (36 requests here)."""
    r = parse_summary(_read("hey_bento_quick_c4_no_p99.txt"))
    assert r.ok == 36
    assert r.pct_ms(99) is None
    assert r.pct_ms(95) == pytest.approx(164.0)
    assert 0 not in r.percentiles_s


def test_non_2xx_statuses_are_failures() -> None:
    r = parse_summary(_read("hey_501_status.txt"))
    assert r.status == {"501": 1363}
    assert r.ok == 0 and r.ok_rps == 0.0
    assert r.failed == 1363
    assert r.failures_by_kind() == {"501": 1363}
    assert r.rps > 0  # hey's own figure counts any response


def test_transport_errors_are_counted_without_latencies() -> None:
    r = parse_summary(_read("hey_connection_refused.txt"))
    assert r.status == {}
    assert sum(r.errors.values()) == 15143
    assert r.percentiles_s == {} and r.pct_ms(99) is None
    assert r.average_s is None  # hey prints NaN
    assert r.failed == r.requests == 15143
    assert r.failures_by_kind() == {"refused": 15143}


def test_to_dict_is_json_ready() -> None:
    import json

    d = parse_summary(_read("hey_501_status.txt")).to_dict()
    assert json.loads(json.dumps(d))["failures_by_kind"] == {"501": 1363}
    assert d["ok_rps"] == 0.0


def test_rejects_text_that_is_not_a_summary() -> None:
    with pytest.raises(HeyError):
        parse_summary("flag provided but not defined: -x\nUsage: hey [options...] <url>")


def test_command_is_time_bounded_and_loopback_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HEY", "/usr/bin/hey")
    cmd = hey_command("http://127.0.0.1:3000/predict_full", tmp_path / "b.json", 64, 15)
    assert cmd[0] == "/usr/bin/hey"
    assert cmd[cmd.index("-z") + 1] == "15s"
    assert cmd[cmd.index("-c") + 1] == "64"
    assert cmd[cmd.index("-m") + 1] == "POST"
    assert cmd[-1] == "http://127.0.0.1:3000/predict_full"
    for url in ("http://10.0.0.5:3000/x", "http://example.com/x", "https://127.0.0.1:1/x"):
        with pytest.raises(HeyError):
            hey_command(url, tmp_path / "b.json", 1, 1)


@HEY_PIPE_LEFT_OPEN
def test_run_hey_parses_output_and_reads_its_cpu_time() -> None:
    """Any program printing a summary stands in for hey; wait4 gives its CPU time."""
    fixture = DATA / "hey_http_server_get_c2.txt"
    burn = "s=0\nfor i in range(2_000_000): s+=i\n"
    cmd = [sys.executable, "-c", f"{burn}print(open({str(fixture)!r}).read())"]
    run = run_hey(cmd, max_wall_s=60)
    assert run.result.ok == 996
    assert run.cpu_user_s > 0.01
    assert 0 < run.cpu_to_dict()["cores_used"] <= 2.5
    assert "Summary:" in run.raw


@HEY_PIPE_LEFT_OPEN
def test_run_hey_fails_loudly_on_a_nonzero_exit() -> None:
    with pytest.raises(HeyError, match="exited with 3"):
        run_hey([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], max_wall_s=30)


@HEY_PIPE_LEFT_OPEN
def test_run_hey_kills_a_run_that_outlives_its_bound() -> None:
    with pytest.raises(HeyError, match="still running"):
        run_hey([sys.executable, "-c", "import time; time.sleep(30)"], max_wall_s=0.5)
