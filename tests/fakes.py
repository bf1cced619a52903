"""Fake F1DB data for the tests: a small synthetic YAML tree whose every value the tests
can derive, the real tree with a season under way added, and table helpers.

Plain functions and constants: the fixtures that call them live in tests/conftest.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

if TYPE_CHECKING:
    from pipelines.f1db.parse import Tables
    from pipelines.features.snapshot import FeatureSnapshot
    from pipelines.models.stage1 import Stage1Model
    from pipelines.models.stage2 import Stage2Model

# ----------------------------------------------------------------- synthetic tree

# (driver id, constructor id, car number, abbreviation); two teams of two.
DRIVERS: list[tuple[str, str, int, str]] = [
    ("max-verstappen", "red-bull", 1, "VER"),
    ("sergio-perez", "red-bull", 11, "PER"),
    ("lando-norris", "mclaren", 4, "NOR"),
    ("oscar-piastri", "mclaren", 81, "PIA"),
]
RESERVE = ("liam-lawson", "red-bull", 40, "LAW")
"""A test driver: runs in FP1 of the first round of each season, never races."""

CIRCUITS: dict[str, tuple[str, float]] = {"bahrain": ("RACE", 5.412), "monaco": ("STREET", 3.337)}
TURNS = {"bahrain": 15, "monaco": 19}
POINTS = [25.0, 18.0, 15.0, 12.0]


def fmt_lap(seconds: float) -> str:
    """A lap time the way F1DB writes it ("1:29.374")."""
    minutes, rest = divmod(round(seconds, 3), 60.0)
    return f"{int(minutes)}:{rest:06.3f}"


@dataclass
class RaceSpec:
    """What the synthetic tree says about one event (tests derive expectations from it)."""

    season: int
    round: int
    race_id: int
    slug: str
    circuit_id: str
    date: date
    is_sprint: bool
    quali: dict[str, list[float | None]] = field(default_factory=dict)  # driver -> q1,q2,q3
    practice: dict[str, dict[str, tuple[float, int]]] = field(default_factory=dict)
    grid: dict[str, int | str | None] = field(default_factory=dict)  # int, "PL" or None (DNS)
    results: list[tuple[str, str, float]] = field(default_factory=list)  # driver, pos, points
    before_quali: list[str] = field(default_factory=list)  # sessions held before qualifying

    @property
    def dir_name(self) -> str:
        return f"{self.round:02d}-{self.slug}"

    def best_quali(self, driver: str) -> float:
        return min(t for t in self.quali[driver] if t is not None)


@dataclass
class SyntheticTree:
    root: Path
    seasons: list[int]
    races: list[RaceSpec]

    def race(self, season: int, rnd: int) -> RaceSpec:
        return next(r for r in self.races if r.season == season and r.round == rnd)

    def race_dir(self, season: int, rnd: int) -> Path:
        return self.root / "seasons" / str(season) / "races" / self.race(season, rnd).dir_name


def _dump(path: Path, doc: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))


def write_f1db_tree(
    root: Path,
    seasons: tuple[int, ...] = (2023, 2024),
    rounds: int = 2,
    sprint_round: int | None = 2,
) -> SyntheticTree:
    """Write a small F1DB-shaped YAML tree under ``root`` and return what it holds.

    Every season has ``rounds`` races alternating Bahrain / Monaco. Round ``sprint_round``
    is a sprint weekend: in seasons before 2024 it has FP1 and FP2 (FP2 after qualifying,
    no session times, as in 2021-23); from 2024 FP1 and sprint qualifying with session
    start times (YAML 1.1 reads an unquoted 15:00 as the integer 900). Other rounds have
    FP1-FP3. The last driver of each season's last round starts from the pit lane; in
    the first round of the last season the last driver does not start (empty grid slot,
    result "DNS").
    """
    races: list[RaceSpec] = []
    race_id = 1000
    k = 0
    for season in seasons:
        cumulative_d: dict[str, float] = {}
        cumulative_c: dict[str, float] = {}
        for rnd in range(1, rounds + 1):
            race_id += 1
            k += 1
            circuit = list(CIRCUITS)[(rnd - 1) % len(CIRCUITS)]
            day = date(season, 3, 1) + timedelta(days=14 * (rnd - 1))
            sprint = sprint_round is not None and rnd == sprint_round
            spec = RaceSpec(season, rnd, race_id, circuit, circuit, day, sprint)
            base = 80.0 + 2.0 * (rnd % 3) + 0.25 * k
            # qualifying: everyone sets Q1, the top three Q2, the top two Q3
            for i, (d, _c, _n, _a) in enumerate(DRIVERS):
                q1 = base + 0.8 + 0.12 * i + 0.01 * ((i * k) % 5)
                q2 = q1 - 0.3 if i < 3 else None
                q3 = q2 - 0.2 if (q2 is not None and i < 2) else None
                spec.quali[d] = [round(q1, 3), None if q2 is None else round(q2, 3)]
                spec.quali[d].append(None if q3 is None else round(q3, 3))
            if sprint and season < 2024:
                sessions = ["fp1", "fp2"]
                spec.before_quali = ["fp1"]
            elif sprint:
                sessions = ["fp1", "sq"]
                spec.before_quali = ["fp1", "sq"]
            else:
                sessions = ["fp1", "fp2", "fp3"]
                spec.before_quali = list(sessions)
            for j, s in enumerate(sessions):
                field_: dict[str, tuple[float, int]] = {}
                for i, (d, _c, _n, _a) in enumerate(DRIVERS):
                    field_[d] = (round(base + 2.0 - 0.4 * j + 0.15 * i, 3), 20 + i + j)
                if s == "fp1" and rnd == 1:
                    field_[RESERVE[0]] = (round(base + 2.9, 3), 18)
                spec.practice[s] = field_
            order = sorted(spec.quali, key=spec.best_quali)
            spec.grid = {d: pos for pos, d in enumerate(order, start=1)}
            if rnd == rounds:
                spec.grid[order[-1]] = "PL"
            dns = season == seasons[-1] and rnd == 1
            if dns:
                spec.grid[order[-1]] = None
            # race: the driver starting second wins (so "pole-sitter wins" is not trivial)
            finish = [order[1], order[0], *order[2:]]
            for pos, d in enumerate(finish, start=1):
                if dns and d == order[-1]:
                    spec.results.append((d, "DNS", 0.0))
                elif pos == 3 and rnd == 2:
                    spec.results.append((d, "DNF", 0.0))
                else:
                    spec.results.append((d, str(pos), POINTS[pos - 1]))
            for d, _pos, pts in spec.results:
                cumulative_d[d] = cumulative_d.get(d, 0.0) + pts
                team = next(c for dd, c, _n, _a in DRIVERS if dd == d)
                cumulative_c[team] = cumulative_c.get(team, 0.0) + pts
            _write_race(root, spec, cumulative_d, cumulative_c)
            races.append(spec)
        _write_entrants(root, season, rounds)
    _write_reference(root)
    return SyntheticTree(root, list(seasons), races)


def _number(driver: str) -> int:
    return next(n for d, _c, n, _a in [*DRIVERS, RESERVE] if d == driver)


def _team(driver: str) -> str:
    return next(c for d, c, _n, _a in [*DRIVERS, RESERVE] if d == driver)


def _write_race(
    root: Path, spec: RaceSpec, cum_d: dict[str, float], cum_c: dict[str, float]
) -> None:
    rdir = root / "seasons" / str(spec.season) / "races" / spec.dir_name
    rdir.mkdir(parents=True, exist_ok=True)
    kind, length = CIRCUITS[spec.circuit_id]
    lines = [
        f"id: {spec.race_id}",
        f"round: {spec.round}",
        f"date: {spec.date.isoformat()}",
        "time: 15:00",
        f"grandPrixId: {spec.slug}",
        f"circuitId: {spec.circuit_id}",
        f"circuitLayoutId: {spec.circuit_id}-1",
        f"circuitType: {kind}",
        f"courseLength: {length}",
        f"turns: {TURNS[spec.circuit_id]}",
        "laps: 57",
    ]
    if spec.is_sprint and spec.season >= 2024:
        fri = spec.date - timedelta(days=2)
        sat = spec.date - timedelta(days=1)
        lines += [
            f"freePractice1Date: {fri.isoformat()}",
            "freePractice1Time: 11:30",
            f"sprintQualifyingDate: {fri.isoformat()}",
            "sprintQualifyingTime: 15:30",
            f"sprintRaceDate: {sat.isoformat()}",
            "sprintRaceTime: 11:00",
            f"qualifyingDate: {sat.isoformat()}",
            "qualifyingTime: 15:00",
        ]
    (rdir / "race.yml").write_text("\n".join(lines) + "\n")
    files = {"fp1": "free-practice-1", "fp2": "free-practice-2", "fp3": "free-practice-3"}
    for s, rows in spec.practice.items():
        ranked = sorted(rows.items(), key=lambda kv: kv[1][0])
        if s == "sq":
            doc = [
                {
                    "position": p,
                    "driverNumber": _number(d),
                    "driverId": d,
                    "constructorId": _team(d),
                    "q1": fmt_lap(t + 0.5),
                    "q2": fmt_lap(t),
                    "q3": None,
                    "laps": laps,
                }
                for p, (d, (t, laps)) in enumerate(ranked, start=1)
            ]
            _dump(rdir / "sprint-qualifying-results.yml", doc)
        else:
            doc = [
                {
                    "position": p,
                    "driverNumber": _number(d),
                    "driverId": d,
                    "constructorId": _team(d),
                    "time": fmt_lap(t),
                    "laps": laps,
                }
                for p, (d, (t, laps)) in enumerate(ranked, start=1)
            ]
            _dump(rdir / f"{files[s]}-results.yml", doc)
    order = sorted(spec.quali, key=spec.best_quali)
    _dump(
        rdir / "qualifying-results.yml",
        [
            {
                "position": p,
                "driverNumber": _number(d),
                "driverId": d,
                "constructorId": _team(d),
                "q1": fmt_lap(spec.quali[d][0]) if spec.quali[d][0] is not None else None,
                "q2": fmt_lap(spec.quali[d][1]) if spec.quali[d][1] is not None else None,
                "q3": fmt_lap(spec.quali[d][2]) if spec.quali[d][2] is not None else None,
            }
            for p, d in enumerate(order, start=1)
        ],
    )
    _dump(
        rdir / "starting-grid-positions.yml",
        [
            {
                "position": pos,
                "driverNumber": _number(d),
                "driverId": d,
                "constructorId": _team(d),
                "gridPenalty": 5 if pos == "PL" else None,
                "time": fmt_lap(spec.best_quali(d)),
            }
            for d, pos in spec.grid.items()
        ],
    )
    _dump(
        rdir / "race-results.yml",
        [
            {
                "position": int(pos) if pos.isdigit() else pos,
                "driverNumber": _number(d),
                "driverId": d,
                "constructorId": _team(d),
                "points": pts,
                "gridPosition": spec.grid[d],
            }
            for d, pos, pts in spec.results
        ],
    )
    if spec.is_sprint:
        _dump(
            rdir / "sprint-race-results.yml",
            [{"position": 1, "driverId": DRIVERS[0][0], "constructorId": DRIVERS[0][1]}],
        )
    _dump(
        rdir / "driver-standings.yml",
        [
            {"position": p, "driverId": d, "points": pts}
            for p, (d, pts) in enumerate(sorted(cum_d.items(), key=lambda kv: -kv[1]), start=1)
        ],
    )
    _dump(
        rdir / "constructor-standings.yml",
        [
            {"position": p, "constructorId": c, "points": pts}
            for p, (c, pts) in enumerate(sorted(cum_c.items(), key=lambda kv: -kv[1]), start=1)
        ],
    )


def _write_entrants(root: Path, season: int, rounds: int) -> None:
    doc = []
    for team in ("red-bull", "mclaren"):
        drivers: list[dict[str, Any]] = [
            {"driverId": d, "rounds": f"1-{rounds}"} for d, c, _n, _a in DRIVERS if c == team
        ]
        if team == RESERVE[1]:
            drivers.append({"driverId": RESERVE[0], "rounds": None, "testDriver": True})
        doc.append({"entrantId": f"{team}-racing", "constructorId": team, "drivers": drivers})
    _dump(root / "seasons" / str(season) / "entrants.yml", doc)


CONSTRUCTORS: dict[str, list[tuple[str, int]]] = {
    "red-bull": [("stewart", 1997), ("jaguar", 2000), ("red-bull", 2005)],
    "mclaren": [("mclaren", 1966)],
}


def _write_reference(root: Path) -> None:
    for d, _c, n, a in [*DRIVERS, RESERVE]:
        _dump(
            root / "drivers" / f"{d}.yml",
            {"id": d, "name": d.replace("-", " ").title(), "abbreviation": a, "permanentNumber": n},
        )
    for cid, chron in CONSTRUCTORS.items():
        _dump(
            root / "constructors" / f"{cid}.yml",
            {
                "id": cid,
                "name": cid.title(),
                "chronology": [{"constructorId": c, "yearFrom": y} for c, y in chron],
            },
        )
    for cid, (kind, length) in CIRCUITS.items():
        _dump(
            root / "circuits" / f"{cid}.yml",
            {"id": cid, "name": cid.title(), "type": kind, "length": length},
        )


# ------------------------------------------------------------------ tables


def copy_tables(t: Tables) -> Tables:
    """A deep copy of a Tables object, safe to modify."""
    from pipelines.f1db.parse import Tables

    frames = {name: getattr(t, name).copy(deep=True) for name in Tables.table_names()}
    return Tables(**frames, content_hash=t.content_hash)


def slice_tables(t: Tables, min_season: int) -> Tables:
    """Only the seasons >= ``min_season`` (race-keyed tables filtered by race id)."""
    out = copy_tables(t)
    keep = set(out.races.loc[out.races["season"] >= min_season, "race_id"])
    for name in (
        "sessions",
        "practice",
        "qualifying",
        "grid",
        "results",
        "driver_standings",
        "constructor_standings",
    ):
        frame = getattr(out, name)
        setattr(out, name, frame[frame["race_id"].isin(keep)].reset_index(drop=True))
    out.races = out.races[out.races["race_id"].isin(keep)].reset_index(drop=True)
    out.entrants = out.entrants[out.entrants["season"] >= min_season].reset_index(drop=True)
    return out


UNDER_WAY_SEASON = 2026
"""The season ``season_under_way`` adds to the real data: the next one, with new rules."""


def write_season_under_way(root: Path, real: Path, results: int = 2) -> Path:
    """The real F1DB tree (linked, never modified) plus the season after its last, as an
    F1DB release shows a season under way: the whole calendar (2025's, a year on), the
    entry list (Kick Sauber renamed Audi, a new Cadillac team of Perez and Bottas), the
    practice, qualifying, grid, results and standings of the first ``results`` rounds
    (2025's, re-dated, Cadillac's cars at the back) and the practice alone of the round
    after them."""
    last = max(int(p.name) for p in (real / "seasons").iterdir() if p.name.isdigit())
    assert last + 1 == UNDER_WAY_SEASON, f"the data now ends in {last}: update the fixture"
    root.mkdir(parents=True, exist_ok=True)
    for item in real.iterdir():
        if item.name != "seasons":
            (root / item.name).symlink_to(item)
    (root / "seasons").mkdir()
    for item in (real / "seasons").iterdir():
        (root / "seasons" / item.name).symlink_to(item)
    src, dst = real / "seasons" / str(last), root / "seasons" / str(UNDER_WAY_SEASON)
    entrants = yaml.safe_load((src / "entrants.yml").read_text())
    for team in entrants:
        if team["constructorId"] == "kick-sauber":
            team["constructorId"], team["entrantId"] = "audi", "audi-revolut-f1-team"
    entrants.append(
        {
            **{k: v for k, v in entrants[0].items() if k != "drivers"},
            "entrantId": "cadillac-formula-1-team",
            "constructorId": "cadillac",
            "drivers": [
                {"driverId": "sergio-perez", "rounds": "1-24"},
                {"driverId": "valtteri-bottas", "rounds": "1-24"},
            ],
        }
    )
    _dump(dst / "entrants.yml", entrants)
    shift = timedelta(days=357)  # same weekday, a year on
    practice = ("free-practice-1", "free-practice-2", "free-practice-3", "sprint-qualifying")
    for i, race_dir in enumerate(sorted((src / "races").iterdir())):
        race = yaml.safe_load((race_dir / "race.yml").read_text())
        race["id"] = 90_000 + i
        for key, value in list(race.items()):
            if (key == "date" or key.endswith("Date")) and isinstance(value, date):
                race[key] = value + shift
        out = dst / "races" / race_dir.name
        _dump(out / "race.yml", race)
        if i > results:
            continue
        for f in race_dir.glob("*.yml"):
            held = i < results or f.name.startswith(practice)
            if f.name != "race.yml" and held:
                rows = yaml.safe_load(f.read_text().replace("kick-sauber", "audi"))
                _dump(out / f.name, _with_cadillac(f.name, rows))
    return root


CADILLAC = (("sergio-perez", 11), ("valtteri-bottas", 77))


def _with_cadillac(name: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A session's or a race's rows with Cadillac's two cars appended at the back: a copy
    of the last row, re-labelled (a race retirement; no points)."""
    if not rows or name in ("fastest-laps.yml", "pit-stops.yml", "driver-of-the-day-results.yml"):
        return rows
    last = rows[-1]
    ints = [r["position"] for r in rows if isinstance(r.get("position"), int)]
    extra = []
    if "constructorId" in last and "driverId" not in last:  # constructor standings
        extra.append({**last, "constructorId": "cadillac", "position": max(ints) + 1, "points": 0})
    else:
        for k, (driver, number) in enumerate(CADILLAC, start=1):
            row = {**last, "driverId": driver, "position": max(ints, default=0) + k}
            row |= {"driverNumber": number} if "driverNumber" in last else {}
            row |= {"constructorId": "cadillac"} if "constructorId" in last else {}
            row |= {"points": 0} if "points" in last else {}
            if name.endswith("race-results.yml"):
                row |= {"position": "DNF", "reasonRetired": "Hydraulics", "points": None}
            extra.append(row)
    return rows + extra


# ------------------------------------------------------------------ models


def fit_tiny_models(tables: Tables) -> tuple[FeatureSnapshot, Stage1Model, Stage2Model]:
    """A feature snapshot of ``tables`` and two models fitted in a blink on random rows
    (the right columns, meaningless values): for tests of the plumbing, not the forecast."""
    from pipelines.features.snapshot import FeatureSnapshot
    from pipelines.features.spec import STAGE1, STAGE2
    from pipelines.models.stage1 import Stage1Config, Stage1Model
    from pipelines.models.stage2 import Stage2Config, Stage2Model

    rng = np.random.default_rng(0)
    x1 = rng.normal(size=(200, len(STAGE1)))
    y1 = np.abs(x1[:, 0]) + rng.normal(scale=0.1, size=200)
    s1 = Stage1Model.fit(x1, y1, Stage1Config(n_estimators=10, min_child_samples=5))
    x2 = rng.normal(size=(200, len(STAGE2)))
    groups = np.repeat(np.arange(10), 20)
    y2 = np.zeros(200)
    y2[np.arange(10) * 20 + np.argmin(x2[:, 0].reshape(10, 20), axis=1)] = 1.0
    places = x2[:, 0].reshape(10, 20).argsort(axis=1).argsort(axis=1).ravel() + 1.0
    cfg2 = Stage2Config(n_estimators=10, min_child_samples=5)
    s2 = Stage2Model.fit(x2, y2, cfg2, groups, ranks=places)
    return FeatureSnapshot.build(tables), s1, s2
