"""The season the service is judged on next, end to end: `f1 refresh` on data showing a
season under way (``write_season_under_way``), then `bentoml serve` with the trained
models and that snapshot, asked as users ask before the next race."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes import UNDER_WAY_SEASON
from tests.service.servers import ROOT, serving
from tests.session import STORE_HOME

pytestmark = pytest.mark.slow
S = UNDER_WAY_SEASON


@pytest.fixture(scope="module")
def refreshed(season_under_way: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """`f1 refresh` as users run it after new results: the new f1_features and (refitted
    on the two new rounds) f1_stage1 tags."""
    import bentoml

    env = os.environ | {"F1_DATA_DIR": str(season_under_way), "BENTOML_HOME": str(STORE_HOME),
                        "F1_CACHE_DIR": str(tmp_path_factory.mktemp("cache"))}  # fmt: skip
    f1 = str(Path(sys.executable).parent / "f1")
    out = subprocess.run([f1, "refresh"], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    made = [m for m in bentoml.models.list("f1_features")
            if (m.info.metadata.get("data_latest_event") or {}).get("season") == S]  # fmt: skip
    assert len(made) == 1
    refit = [m for m in bentoml.models.list("f1_stage1")
             if (m.info.metadata.get("fitted_through") or {}).get("season") == S]  # fmt: skip
    assert len(refit) == 1, "f1 refresh did not refit Stage-1 on the new results"
    return {"features": str(made[0].tag), "stage1": str(refit[0].tag)}


@pytest.fixture(scope="module")
def server(
    refreshed: dict[str, str], pinned_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    env = pinned_env | {
        "F1_FEATURES_MODEL": refreshed["features"],
        "F1_STAGE1_MODEL": refreshed["stage1"],
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
