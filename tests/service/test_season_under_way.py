"""The season the service is judged on next, end to end: `f1 refresh` on data showing a
season under way (``write_season_under_way``), then `bentoml serve` with the trained
models and that snapshot, asked as users ask before the next race."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes import UNDER_WAY_SEASON, write_season_under_way
from tests.postgres import Cluster
from tests.service.servers import ROOT, logged, serving, wait_logged
from tests.session import STORE_HOME, require_real_data

pytestmark = pytest.mark.slow
S = UNDER_WAY_SEASON


@pytest.fixture(scope="module")
def refreshed(season_under_way: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`f1 refresh` as users run it after new results: the new f1_features and (refitted
    on the two new rounds) f1_stage1 tags."""
    return _refresh(season_under_way, tmp_path_factory, through=2)


def _refresh(data: Path, tmp: pytest.TempPathFactory, through: int) -> dict[str, str]:
    """`f1 refresh` on ``data``: the f1_features and f1_stage1 it saved, whose latest
    results (and Stage-1's latest qualifying) are round ``through`` of season S."""
    import bentoml

    env = os.environ | {"F1_DATA_DIR": str(data), "BENTOML_HOME": str(STORE_HOME),
                        "F1_CACHE_DIR": str(tmp.mktemp("cache"))}  # fmt: skip
    f1 = str(Path(sys.executable).parent / "f1")
    out = subprocess.run([f1, "refresh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]

    def at(event: dict[str, Any] | None) -> bool:
        return (event or {}).get("season") == S and (event or {}).get("round") == through

    made = [m for m in bentoml.models.list("f1_features")
            if at(m.info.metadata.get("data_latest_event"))]  # fmt: skip
    assert len(made) == 1
    refit = [m for m in bentoml.models.list("f1_stage1")
             if at(m.info.metadata.get("fitted_through"))]  # fmt: skip
    assert len(refit) == 1, "f1 refresh did not refit Stage-1 on the new results"
    return {"features": str(made[0].tag), "stage1": str(refit[0].tag)}


@pytest.fixture(scope="module")
def ledger_url(postgres: Cluster) -> str:
    """The prediction log every server of this module writes to: PostgreSQL, as deployed
    (the default SQLite file is tested in test_e2e)."""
    return postgres.database("under_way")


@pytest.fixture(scope="module")
def server(
    refreshed: dict[str, str],
    pinned_env: dict[str, str],
    ledger_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    env = pinned_env | {
        "F1_FEATURES_MODEL": refreshed["features"],
        "F1_STAGE1_MODEL": refreshed["stage1"],
        "F1_LEDGER_URL": ledger_url,
    }
    with serving(env, tmp_path_factory.mktemp("under-way") / "serve.log") as url:
        yield url


def test_health_reports_the_new_results(server: str, refreshed: dict[str, str]) -> None:
    h = httpx.get(f"{server}/health", timeout=10).json()
    assert h["models"]["features"]["tag"] == refreshed["features"]
    latest = h["data"]["latest_event"]
    assert (latest["season"], latest["round"]) == (S, 2)


def test_stage1_is_refitted_on_the_seasons_results_so_far(
    server: str, refreshed: dict[str, str], pinned_env: dict[str, str]
) -> None:
    """The served Stage-1 is the one `f1 refresh` refitted through round 2 with the trained
    one's settings and held-out metrics, as `f1 evaluate` scores it (``InSeason``)."""
    import bentoml

    info = httpx.get(f"{server}/model_info", timeout=10).json()
    assert info["model_versions"]["stage1"] == refreshed["stage1"]
    through = info["stage1"]["fitted_through"]
    assert (through["season"], through["round"]) == (S, 2)
    new = bentoml.models.get(refreshed["stage1"]).info.metadata
    old = bentoml.models.get(pinned_env["F1_STAGE1_MODEL"]).info.metadata
    assert new["refit_of"] == pinned_env["F1_STAGE1_MODEL"]
    assert new["metrics"] == old["metrics"] and (old["fitted_through"]["season"]) == S - 1


def test_the_next_race_is_forecast_with_the_field_and_the_lean(server: str) -> None:
    """No event given: the next one after the results (round 3), its 22 entrants, two
    races under the new rules in the data, so half the win log-odds from the grid."""
    r = httpx.post(f"{server}/predict_full", json={}, timeout=30)
    assert r.status_code == 200
    body = r.json()
    meta = body["metadata"]
    assert (meta["event"]["season"], meta["event"]["round"]) == (S, 3)
    warnings = " | ".join(meta["warnings"])
    assert f"the next event in the calendar, {S} round 3" in warnings
    assert "2 race(s) under the current technical rules" in warnings and "takes 50%" in warnings
    assert "no results in the data before this event" not in warnings  # Cadillac has raced
    assert not meta["fitted_on_event"] and "training data" not in warnings  # after round 2
    race = body["race_winner_predictions"]
    assert len(race) == 22
    assert sum(p["win_probability"] for p in race) == pytest.approx(1.0, abs=1e-6)
    teams = {p["driver_id"]: (p["constructor_id"], p["constructor_name"]) for p in race}
    assert teams["sergio-perez"][0] == "cadillac" and teams["nico-hulkenberg"] == ("audi", "Audi")
    quali = body["qualifying_predictions"]
    assert all(q["predicted_time"] is not None for q in quali)  # practice laps in the data


def test_the_first_race_is_the_grids_and_names_the_new_team(server: str) -> None:
    r = httpx.post(f"{server}/predict_race", json={"event": {"season": S, "round": 1}},
                   timeout=30)  # fmt: skip
    assert r.status_code == 200
    header = r.headers["x-f1-warnings"]
    assert "0 race(s) under the current technical rules" in header and "takes 100%" in header
    assert 'team(s) "cadillac"' in header
    # Stage-1 was refitted on rounds 1-2 (Stage-2 only on 2014-2025): the answer says so
    assert f"{S} round 1 is in the served models' training data (Stage-1 fitted through {S} " \
        "round 2): this answer knows how the event went" in header  # fmt: skip
    assert len(r.json()) == 22


def test_a_race_days_ahead_is_forecast_from_form_and_says_so(server: str) -> None:
    """Round 4: in the calendar, no practice in the data yet."""
    r = httpx.post(f"{server}/predict_full", json={"event": {"season": S, "round": 4}},
                   timeout=30)  # fmt: skip
    assert r.status_code == 200
    warnings = r.json()["metadata"]["warnings"]
    assert any(w.startswith("no practice laps for this event") for w in warnings)
    assert len(r.json()["race_winner_predictions"]) == 22


def _practice_weights(server: str, rnd: int) -> list[float]:
    """Each car's largest practice-feature contribution to its predicted gap (0 where no
    practice feature is among its listed contributions)."""
    body = {"event": {"season": S, "round": rnd}, "explain": True}
    r = httpx.post(f"{server}/predict_quali", json=body, timeout=30)
    assert r.status_code == 200
    return [
        max(
            (
                abs(c["value"])
                for c in q["explanation"]["contributions"]
                if c["feature"][:2] == "p_"
            ),
            default=0.0,
        )
        for q in r.json()
    ]


def test_a_field_without_practice_is_the_form_only_ensembles(server: str) -> None:
    """Round 4's cars have no practice lap: the form-only ensemble answers them, so no
    practice feature moves their gap; round 3's, with practice, lean on it."""
    ahead = _practice_weights(server, 4)
    assert len(ahead) == 22 and max(ahead) < 1e-9
    with_laps = _practice_weights(server, 3)
    assert sum(w > 0.05 for w in with_laps) >= 11


# ------------------------------------------------------------ the track record


@pytest.fixture(scope="module")
def results_in(
    refreshed: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    """Rounds 3 and 4 have run: `f1 refresh` on the data with their results."""
    root = tmp_path_factory.mktemp("f1db-later") / "f1db"
    return _refresh(write_season_under_way(root, require_real_data(), results=4),
                    tmp_path_factory, through=4)  # fmt: skip


def test_the_track_record_scores_the_forecasts_given_before_the_results(
    server: str,
    ledger_url: str,
    refreshed: dict[str, str],
    results_in: dict[str, str],
    pinned_env: dict[str, str],
    browser: Any,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Forecasts asked before rounds 3 (practice in the data) and 4 (none) are scored,
    once the data has their results, with exactly the probability each gave the
    winner; an in-sample answer and one with the caller's own laps are logged, not
    scored."""
    before = logged(ledger_url)
    ask = {rnd: httpx.post(f"{server}/predict_full", json={"event": {"season": S, "round": rnd}},
                           timeout=30).json() for rnd in (3, 4)}  # fmt: skip
    in_sample = httpx.post(f"{server}/predict_race", json={"event": {"season": S, "round": 1}},
                           timeout=30)  # fmt: skip
    assert in_sample.json() and in_sample.headers["x-f1-warnings"]
    laps = {"fp1": 80.0, "fp2": 79.5}
    own = {"event": {"season": S, "round": 3},
           "drivers": [{"driver_id": "max-verstappen", "practice": laps}]}  # fmt: skip
    own_answer = httpx.post(f"{server}/predict_race", json=own, timeout=30).json()
    assert wait_logged(ledger_url, before + 4, 20) == before + 4  # off the request path
    env = pinned_env | {
        "F1_FEATURES_MODEL": results_in["features"],
        "F1_STAGE1_MODEL": results_in["stage1"],
        "F1_LEDGER_URL": ledger_url,
    }
    with serving(env, tmp_path_factory.mktemp("results-in") / "serve.log") as later:
        record = httpx.get(f"{later}/track_record", params={"season": S}, timeout=30).json()
        results = {rnd: httpx.get(f"{later}/events/{S}/{rnd}", timeout=10).json()
                   for rnd in (3, 4)}  # fmt: skip
        shown = httpx.get(f"{later}/track_record/{S}/3", timeout=10).json()
        _page_shows_the_record(browser, later, record, shown)
    scored = {(e["round"], e["kind"]): e for e in record["events"]}
    assert set(scored) == {(3, "before_qualifying"), (4, "weekend_ahead")}
    for (rnd, _), e in scored.items():
        won = next(r["driver_id"] for r in results[rnd]["race"] if r["position"] == 1)
        given = {p["driver_id"]: p["win_probability"] for p in ask[rnd]["race_winner_predictions"]}
        assert e["winner"] == won
        assert e["winner_probability"] == given[won]
        assert e["winner_log_loss"] == pytest.approx(-math.log(given[won]))
        assert e["model_versions"]["stage1"] == refreshed["stage1"]  # as served then
    own_p = {p["driver_id"]: p["win_probability"] for p in own_answer}
    ask3 = {p["driver_id"]: p["win_probability"] for p in ask[3]["race_winner_predictions"]}
    assert own_p["max-verstappen"] != ask3["max-verstappen"]  # the own laps moved it
    assert record["summary"]["before_qualifying"]["events"] == 1
    assert [p["win_probability"] for p in shown["race_winner_predictions"]] == sorted(
        ask3.values(), reverse=True)  # fmt: skip
    f1 = str(Path(sys.executable).parent / "f1")
    cli_env = os.environ | env | {"BENTOML_HOME": str(STORE_HOME)}
    out = subprocess.run([f1, "track-record", "--season", str(S), "--json"], cwd=ROOT,
                         env=cli_env, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout) == record


def _pct(p: float) -> str:
    """The page's percentage format (app.js `pct`)."""
    return f"{100 * p:.1f}%" if p < 0.1 else f"{100 * p:.0f}%"


def _page_shows_the_record(
    browser: Any, url: str, record: dict[str, Any], shown: dict[str, Any]
) -> None:
    """The page's Track record view lists the scored events; round 3 shows the recorded
    forecast beside the result instead of a new answer."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(f"{url}/ui")
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#grid tbody tr")))
    Select(browser.find_element(By.ID, "season")).select_by_value(str(S))
    wait.until(lambda b: "3" in [o.get_attribute("value")
                                 for o in Select(b.find_element(By.ID, "round")).options])  # fmt: skip
    Select(browser.find_element(By.ID, "round")).select_by_value("3")
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "before qualifying"))
    win = {p["driver_id"]: p["win_probability"] for p in shown["race_winner_predictions"]}
    for row in browser.find_elements(By.CSS_SELECTOR, "#grid tbody tr"):
        bar = row.find_element(By.CSS_SELECTOR, "td.win .bar")
        assert float(bar.get_attribute("data-value")) == win[row.get_attribute("data-driver")]
    browser.find_element(By.ID, "view-track").click()
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#track-events tbody tr")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#track-events tbody tr")
    assert [(int(r.get_attribute("data-round")), r.get_attribute("data-kind")) for r in rows] == [
        (e["round"], e["kind"]) for e in record["events"]
    ]
    for row, e in zip(rows, record["events"], strict=True):
        assert row.find_element(By.CSS_SELECTOR, "td.p-winner").text == _pct(
            e["winner_probability"])  # fmt: skip
