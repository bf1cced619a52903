"""The wrk scenarios: the generated Lua script and the parsing of its summary line."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.hey import HeyError
from bench.wrk import jitter_script, parse_output, wrk_command

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


def test_the_script_carries_every_drivers_laps_and_jitters_them(tmp_path: Path) -> None:
    lua = jitter_script(BODY, tmp_path / "j.lua", seed=7).read_text()
    assert 'id = "max-verstappen", sessions = {{"fp1", 72.500}, {"fp3", 71.200}}' in lua
    assert 'id = "lando-norris", sessions = {{"fp2", 71.900}}' in lua
    assert "math.random()" in lua and "math.randomseed(7 +" in lua
    assert """local event = '{"season": 2025, "round": 8}'""" in lua


def test_an_event_not_in_the_data_goes_as_given(tmp_path: Path) -> None:
    """The next season's event (circuit and date) is sent as the request names it."""
    body = BODY | {"event": {"season": 2026, "circuit_id": "monaco", "date": "2026-06-07"}}
    lua = jitter_script(body, tmp_path / "n.lua").read_text()
    assert (
        """local event = '{"season": 2026, "circuit_id": "monaco", "date": "2026-06-07"}'""" in lua
    )
    assert 'string.format(\'{"event": %s, "drivers": [%s]}\', event,' in lua
    with pytest.raises(ValueError, match="not embeddable"):
        jitter_script(
            BODY | {"event": {"season": 2026, "circuit_id": "o'hare"}}, tmp_path / "x.lua"
        )


def test_the_summary_line_becomes_a_result() -> None:
    r = parse_output("Running 3s test\n  842 requests in 3.01s\n" + LINE + "\n")
    assert r.responses == 842 and r.ok == 840 and r.status == {"200": 840, "non-2xx": 2}
    assert r.errors == {"socket timeout": 3} and r.failed == 5
    assert r.pct_ms(50) == pytest.approx(12.383) and r.pct_ms(99) == pytest.approx(92.172)
    assert r.ok_rps == pytest.approx(840 / 3.011266)


def test_no_summary_line_is_an_error() -> None:
    with pytest.raises(HeyError, match="WRK-JSON"):
        parse_output("unable to connect to 127.0.0.1:9 Connection refused\n")


def test_only_loopback_is_loaded(tmp_path: Path) -> None:
    with pytest.raises(HeyError, match="loopback"):
        wrk_command("http://10.0.0.1:3000/predict_full", tmp_path / "j.lua", 4, 3)
