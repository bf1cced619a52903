"""The load generator: wrk's generated Lua scripts, its summary line, and how a run is
bounded and its CPU time read."""

from __future__ import annotations

import json
import os
import shutil
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from bench.load import LoadError, command, parse, pct_ms, run, script

BODY = {
    "event": {"season": 2025, "round": 8},
    "drivers": [
        {"driver_id": "max-verstappen", "practice": {"fp1": 72.5, "fp3": 71.2}},
        {"driver_id": "lando-norris", "practice": {"fp2": 71.9}},
    ],
}
LINE = (
    'WRK-JSON {"duration_s": 3.011266, "requests": 842, "status_errors": 2, "connect": 0, '
    '"read": 0, "write": 0, "timeout": 3, "min_s": 0.007745, "max_s": 0.104279, '
    '"mean_s": 0.016963, "percentiles_s": {"10": 0.010825, "25": 0.011300, "50": 0.012383, '
    '"75": 0.015476, "90": 0.019317, "95": 0.049155, "99": 0.092172}}'
)


def test_a_fixed_script_sends_the_body_as_it_is(tmp_path: Path) -> None:
    lua = script(BODY, tmp_path / "f.lua").read_text()
    assert f"wrk.body = [==[{json.dumps(BODY)}]==]" in lua
    assert 'wrk.method = "POST"' in lua and "local laps = {}" in lua


def test_a_jitter_script_leaves_a_slot_for_every_lap(tmp_path: Path) -> None:
    lua = script(BODY, tmp_path / "j.lua", jitter=True, seed=7).read_text()
    assert '"practice": {"fp1": %s, "fp3": %s}' in lua and '"practice": {"fp2": %s}' in lua
    assert "local laps = {72.500, 71.200, 71.900}" in lua
    assert "math.randomseed(7)" in lua and "function request()" in lua


def test_an_event_not_in_the_data_goes_as_given(tmp_path: Path) -> None:
    """The next season's event (circuit and date) is sent as the request names it, and a
    per cent sign survives Lua's string.format."""
    event = {"season": 2026, "circuit_id": "monaco", "date": "2026-06-07", "note": "50%"}
    lua = script(BODY | {"event": event}, tmp_path / "n.lua", jitter=True).read_text()
    assert '{"season": 2026, "circuit_id": "monaco", "date": "2026-06-07", "note": "50%%"}' in lua
    with pytest.raises(ValueError, match="not embeddable"):
        script(BODY | {"event": {"name": "]==]"}}, tmp_path / "x.lua")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


@pytest.fixture
def echo_url() -> Iterator[tuple[str, list[bytes]]]:
    """A loopback HTTP server that keeps every body it gets and answers 200 (500 for bad
    JSON)."""
    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            bodies.append(body)
            try:
                json.loads(body)
                self.send_response(200)
            except ValueError:
                self.send_response(500)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/predict_full", bodies
    server.shutdown()
    server.server_close()


@pytest.mark.skipif(shutil.which("wrk") is None and not in_ci(), reason="wrk not installed")
def test_wrk_sends_a_new_valid_body_every_request(tmp_path: Path, echo_url) -> None:
    url, bodies = echo_url
    res = run(command(url, script(BODY, tmp_path / "j.lua", jitter=True), 2, 1), 30).result
    # wrk counts the answers it read; the last requests in flight reach the server unread
    assert res["failed"] == 0 and 10 < res["ok"] == res["responses"] <= len(bodies) <= res["ok"] + 2
    assert pct_ms(res, 50) is not None and pct_ms(res, 50) <= pct_ms(res, 99)  # type: ignore[operator]
    sent = [json.loads(b) for b in bodies]
    assert len({json.dumps(b) for b in sent}) > 0.9 * len(sent)  # no cache could answer
    for b in sent:
        assert b["event"] == BODY["event"]
        laps = [t for d in b["drivers"] for t in d["practice"].values()]
        assert all(abs(t - t0) <= 0.25 for t, t0 in zip(laps, (72.5, 71.2, 71.9), strict=True))
    bodies.clear()
    res = run(command(url, script(BODY, tmp_path / "f.lua"), 2, 1), 30).result
    assert res["ok"] > 10 and {json.loads(b) == BODY for b in bodies} == {True}


def test_the_summary_line_becomes_counts_and_percentiles() -> None:
    r = parse("Running 3s test\n  842 requests in 3.01s\n" + LINE + "\n")
    assert (r["responses"], r["ok"], r["requests"], r["failed"]) == (842, 840, 845, 5)
    assert r["errors"] == {"timeout": 3}
    assert r["failures_by_kind"] == {"non-2xx": 2, "timeout": 3}
    assert pct_ms(r, 50) == pytest.approx(12.383) and pct_ms(r, 99) == pytest.approx(92.172)
    assert r["ok_rps"] == pytest.approx(840 / 3.011266)
    assert json.loads(json.dumps(r)) == r


def test_no_answer_means_no_latency() -> None:
    line = LINE.replace('"requests": 842, "status_errors": 2', '"requests": 0, "status_errors": 0')
    r = parse(line.replace('"connect": 0', '"connect": 64'))
    assert r["percentiles_s"] == {} and pct_ms(r, 99) is None and r["mean_s"] is None
    assert r["failed"] == r["requests"] == 67 and r["ok_rps"] == 0.0


def test_no_summary_line_is_an_error() -> None:
    with pytest.raises(LoadError, match="WRK-JSON"):
        parse("unable to connect to 127.0.0.1:9 Connection refused\n")


def test_the_command_is_time_bounded_and_loopback_only(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WRK", "/usr/bin/wrk")
    cmd = command("http://127.0.0.1:3000/predict_full", tmp_path / "f.lua", 64, 15)
    assert cmd[:5] == ["/usr/bin/wrk", "-t1", "-c64", "-d15s", "--timeout=20s"]
    assert cmd[5:] == ["-s", str(tmp_path / "f.lua"), "http://127.0.0.1:3000/predict_full"]
    for url in ("http://10.0.0.5:3000/x", "http://example.com/x", "https://127.0.0.1:1/x"):
        with pytest.raises(LoadError, match="loopback"):
            command(url, tmp_path / "f.lua", 1, 1)


def test_run_parses_the_output_and_reads_the_generators_cpu_time() -> None:
    """Any program printing the summary line stands in for wrk."""
    burn = "s=0\nfor i in range(3_000_000): s+=i\n"
    res = run([sys.executable, "-c", f"{burn}print({LINE!r})"], max_wall_s=60)
    assert res.result["ok"] == 840 and LINE in res.output
    assert res.cpu["cpu_s"] > 0.01 and 0 < res.cpu["cores_used"] <= 2.5


def test_run_fails_loudly_on_a_nonzero_exit() -> None:
    with pytest.raises(LoadError, match="exited with 3"):
        run([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"], max_wall_s=30)


def test_run_kills_a_run_that_outlives_its_bound() -> None:
    with pytest.raises(LoadError, match="still running"):
        run([sys.executable, "-c", "import time; time.sleep(30)"], max_wall_s=0.5)
