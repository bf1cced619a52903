"""F1DB YAML source tree -> tidy pandas tables, cached as parquet in a folder named by a
hash of every source file's path and bytes (written aside and renamed into place)."""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import date, datetime, time
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from pipelines.f1db.laptime import parse_time

PARSER_VERSION = "5"  # 5: races.turns

SESSION_FILES: dict[str, str] = {f"fp{i}": f"free-practice-{i}-results.yml" for i in range(1, 5)}
SESSION_FILES["sq"] = "sprint-qualifying-results.yml"
"""Timed sessions that may precede qualifying ("sq" = sprint qualifying / shootout)."""


class DataError(RuntimeError):
    """A problem with the F1DB source tree; the message names the file and the problem."""


@dataclass
class Tables:
    """The tidy tables every later step reads (one row per entity / result)."""

    races: pd.DataFrame
    sessions: pd.DataFrame
    practice: pd.DataFrame
    qualifying: pd.DataFrame
    grid: pd.DataFrame
    results: pd.DataFrame
    driver_standings: pd.DataFrame
    constructor_standings: pd.DataFrame
    entrants: pd.DataFrame
    drivers: pd.DataFrame
    constructors: pd.DataFrame
    circuits: pd.DataFrame
    content_hash: str = ""

    @classmethod
    def table_names(cls) -> list[str]:
        return [f.name for f in fields(cls) if f.name != "content_hash"]


def _load_yaml(path: Path) -> Any:
    try:
        with path.open("rb") as fh:
            return yaml.load(fh, Loader=yaml.CSafeLoader)
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise DataError(f"{path}: malformed YAML at line {line}: {exc.problem}") from exc
    except yaml.YAMLError as exc:
        raise DataError(f"{path}: malformed YAML: {exc}") from exc
    except OSError as exc:
        raise DataError(f"{path}: cannot read: {exc.strerror}") from exc


def _load_list(path: Path) -> list[dict[str, Any]]:
    """A results file: a YAML list of mappings (an empty file means no results)."""
    doc = _load_yaml(path)
    if doc is None:
        return []
    if not isinstance(doc, list) or not all(isinstance(r, dict) for r in doc):
        raise DataError(f"{path}: expected a list of mappings, got {type(doc).__name__}")
    return doc


def _load_mapping(path: Path) -> dict[str, Any]:
    doc = _load_yaml(path)
    if not isinstance(doc, dict):
        raise DataError(f"{path}: expected a mapping, got {type(doc).__name__}")
    return doc


def _require(doc: dict[str, Any], key: str, path: Path) -> Any:
    if doc.get(key) is None:
        raise DataError(f"{path}: required field '{key}' is missing")
    return doc[key]


def _time(value: Any, path: Path, field: str) -> float:
    try:
        return parse_time(value)
    except ValueError as exc:
        raise DataError(f"{path}: field '{field}': {exc}") from exc


def _int_or_nan(value: Any) -> float:
    """A whole number (an int or digits) as a float; NaN for anything else ("DNF", True)."""
    whole = isinstance(value, int) and not isinstance(value, bool)
    return float(value) if whole or (isinstance(value, str) and value.isdigit()) else math.nan


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    return value if value is None or isinstance(value, date) else date.fromisoformat(str(value))


def _as_datetime(d: Any, t: Any) -> datetime | None:
    dd = _as_date(d)
    if dd is None:
        return None
    if t is None:
        tt = time(0, 0)
    elif isinstance(t, int):  # YAML 1.1 reads 15:00 as sexagesimal 900
        tt = time(t // 60 % 24, t % 60)
    else:
        hh, mm = str(t).split(":")[:2]
        tt = time(int(hh), int(mm))
    return datetime.combine(dd, tt)


def sessions_before_qualifying(
    season: int,
    is_sprint: bool,
    available: Iterable[str],
    starts: dict[str, datetime | None] | None = None,
) -> list[str]:
    """Which timed sessions ran before qualifying (so may feed Stage-1 features): by
    their start times where F1DB has them (2024 on), else by the era's format (2021-2023
    sprint weekends: FP1 alone; 2024 on: FP1 and sprint qualifying; others: practice)."""
    avail = [s for s in SESSION_FILES if s in set(available)]
    starts = starts or {}
    q_start = starts.get("quali")
    if q_start is not None and all(starts.get(s) is not None for s in avail):
        return [s for s in avail if starts[s] < q_start]  # type: ignore[operator]
    if is_sprint:
        allowed = {"fp1", "sq"} if season >= 2024 else {"fp1"}
        return [s for s in avail if s in allowed]
    return [s for s in avail if s.startswith("fp")]


def _source_files(data_dir: Path, seasons: list[int]) -> list[Path]:
    files: list[Path] = []
    for sub in ("drivers", "constructors", "circuits"):
        folder = data_dir / sub
        if folder.is_dir():
            files.extend(sorted(folder.glob("*.yml")))
    for season in seasons:
        sdir = data_dir / "seasons" / str(season)
        files.extend(sorted(sdir.glob("*.yml")))
        files.extend(sorted(sdir.glob("races/*/*.yml")))
    return files


def content_hash(data_dir: Path, seasons: list[int]) -> str:
    """Hash of the relative path and bytes of every source file read (and parser version)."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"parser={PARSER_VERSION};seasons={seasons}".encode())
    for path in _source_files(data_dir, seasons):
        h.update(str(path.relative_to(data_dir)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _seasons_from(data_dir: Path, min_season: int) -> list[int]:
    """The seasons >= ``min_season`` in the tree (folders named by year)."""
    sdir = data_dir / "seasons"
    if not sdir.is_dir():
        raise DataError(
            f"{data_dir}: no F1DB data here (no 'seasons' folder). Set F1_DATA_DIR, or run "
            "`f1 data download` (the latest release)."
        )
    years = sorted(int(p.name) for p in sdir.iterdir() if p.is_dir() and p.name.isdigit())
    if not years:
        raise DataError(f"{sdir}: no season folders found")
    seasons = [s for s in years if s >= min_season]
    if not seasons:
        raise DataError(f"{sdir}: no season >= {min_season}")
    return seasons


def _race_dirs(data_dir: Path, season: int) -> list[Path]:
    return sorted(p for p in (data_dir / "seasons" / str(season) / "races").glob("*") if p.is_dir())


def _parse_rounds(text: Any, n_rounds: int) -> list[int]:
    """F1DB entrant rounds: "1-24", "1-5,7,9-10", or empty (not a race driver)."""
    out: list[int] = []
    for part in str(text or "").split(","):
        part = part.strip()
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(range(int(lo), int(hi) + 1))
        elif part:
            out.append(int(part))
    return [r for r in out if 1 <= r <= max(n_rounds, 1)]


def _parse_tree(data_dir: Path, seasons: list[int], progress: bool) -> Tables:
    from rich.progress import Progress

    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in Tables.table_names()}
    race_dirs = {season: _race_dirs(data_dir, season) for season in seasons}
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("Parsing F1DB", total=sum(map(len, race_dirs.values())))
        for season, dirs in race_dirs.items():
            for rdir in dirs:
                rnd = _parse_race(rdir, season, rows)
                bar.update(task, advance=1, description=f"{season} round {rnd}")
            ent_path = data_dir / "seasons" / str(season) / "entrants.yml"
            if ent_path.exists():
                rows["entrants"] += _entrant_rows(ent_path, season, len(dirs))
    _add_references(data_dir, rows)
    return _frames(rows)


def _parse_race(rdir: Path, season: int, rows: dict[str, list[dict[str, Any]]]) -> int:
    """Append one race folder's rows to ``rows``; return its round."""
    race_path = rdir / "race.yml"
    if not race_path.exists():
        raise DataError(f"{race_path}: missing (every race folder needs race.yml)")
    race = _load_mapping(race_path)
    race_id = int(_require(race, "id", race_path))
    rnd = int(_require(race, "round", race_path))
    try:
        race_date = _as_date(_require(race, "date", race_path))
    except ValueError as exc:
        raise DataError(f"{race_path}: field 'date': {exc}") from exc
    present = [s for s, f in SESSION_FILES.items() if (rdir / f).exists()]
    is_sprint = (rdir / "sprint-race-results.yml").exists() or bool(race.get("sprintRaceDate"))
    before = sessions_before_qualifying(season, is_sprint, present, _session_starts(race))
    for s in sorted(present):
        rows["sessions"].append({"race_id": race_id, "session": s, "before_quali": s in before})
    rows["races"].append(
        {
            "race_id": race_id,
            "season": season,
            "round": rnd,
            "date": pd.Timestamp(race_date),
            "grand_prix_id": str(race.get("grandPrixId") or ""),
            "circuit_id": str(_require(race, "circuitId", race_path)),
            "layout_id": str(race.get("circuitLayoutId") or race["circuitId"]),
            "circuit_type": str(race.get("circuitType") or "UNKNOWN"),
            "course_length": float(race.get("courseLength") or math.nan),
            "laps": float(race.get("laps") or math.nan),
            "turns": float(race.get("turns") or math.nan),
            "is_sprint": is_sprint,
            "has_quali": (rdir / "qualifying-results.yml").exists(),
            "has_results": (rdir / "race-results.yml").exists(),
        }
    )
    files = [(SESSION_FILES[s], "practice", _practice_row(s)) for s in present]
    files += [
        ("qualifying-results.yml", "qualifying", _qualifying_row),
        ("starting-grid-positions.yml", "grid", _grid_row),
        ("race-results.yml", "results", _result_row),
        ("driver-standings.yml", "driver_standings", _standing_row("driverId")),
        ("constructor-standings.yml", "constructor_standings", _standing_row("constructorId")),
    ]
    for name, table, row in files:
        path = rdir / name
        if path.exists():
            rows[table] += [{"race_id": race_id, **row(r, path)} for r in _load_list(path)]
    return rnd


def _session_starts(race: dict[str, Any]) -> dict[str, datetime | None]:
    """When each timed session and qualifying started (F1DB has the times from 2024)."""
    keys = {f"fp{i}": f"freePractice{i}" for i in range(1, 5)}
    keys |= {"sq": "sprintQualifying", "quali": "qualifying"}
    return {s: _as_datetime(race.get(f"{k}Date"), race.get(f"{k}Time")) for s, k in keys.items()}


Row = Callable[[dict[str, Any], Path], dict[str, Any]]


def _practice_row(session: str) -> Row:
    def row(r: dict[str, Any], path: Path) -> dict[str, Any]:
        laps = (_time(r.get(k), path, k) for k in ("time", "q1", "q2", "q3"))
        return {
            "session": session,
            "driver_id": str(_require(r, "driverId", path)),
            "constructor_id": str(r.get("constructorId") or ""),
            "time_s": min((t for t in laps if not math.isnan(t)), default=math.nan),
            "laps": _int_or_nan(r.get("laps")),
        }

    return row


def _qualifying_row(r: dict[str, Any], path: Path) -> dict[str, Any]:
    qs = [_time(r.get(k), path, k) for k in ("q1", "q2", "q3", "time")]
    valid = [t for t in qs if not math.isnan(t)]
    return {
        "driver_id": str(_require(r, "driverId", path)),
        "constructor_id": str(r.get("constructorId") or ""),
        "driver_number": _int_or_nan(r.get("driverNumber")),
        "position": _int_or_nan(r.get("position")),
        "best_s": min(valid) if valid else math.nan,
        "q3_s": qs[2],
    }


def _grid_row(r: dict[str, Any], path: Path) -> dict[str, Any]:
    pos = r.get("position")
    return {
        "driver_id": str(_require(r, "driverId", path)),
        "grid": _int_or_nan(pos),
        "pit_lane": str(pos) == "PL",
        "penalty": _int_or_nan(r.get("gridPenalty")),
    }


def _result_row(r: dict[str, Any], path: Path) -> dict[str, Any]:
    return {
        "driver_id": str(_require(r, "driverId", path)),
        "constructor_id": str(r.get("constructorId") or ""),
        "driver_number": _int_or_nan(r.get("driverNumber")),
        "position": _int_or_nan(r.get("position")),
        "position_text": str(r.get("position") or ""),
        "points": float(r.get("points") or 0.0),
        "grid_text": str(r.get("gridPosition") or ""),
    }


def _standing_row(key: str) -> Row:
    def row(r: dict[str, Any], path: Path) -> dict[str, Any]:
        return {
            "id": str(_require(r, key, path)),
            "position": _int_or_nan(r.get("position")),
            "points": float(r.get("points") or 0.0),
        }

    return row


def _entrant_rows(path: Path, season: int, n_rounds: int) -> list[dict[str, Any]]:
    """One row per driver entered by a team (the rounds they were entered for)."""
    out = []
    for ent in _load_list(path):
        for d in ent.get("drivers") or []:
            rounds = _parse_rounds(d.get("rounds"), n_rounds)
            out.append(
                {
                    "season": season,
                    "constructor_id": str(ent.get("constructorId") or ""),
                    "driver_id": str(_require(d, "driverId", path)),
                    "rounds": ",".join(map(str, rounds)),
                    "test_driver": bool(d.get("testDriver")),
                }
            )
    return out


def _add_references(data_dir: Path, rows: dict[str, list[dict[str, Any]]]) -> None:
    """The drivers, constructors and circuits the parsed rows name (every constructor)."""
    rows["drivers"] = _reference(
        data_dir / "drivers",
        lambda d: {
            "driver_id": d["id"],
            "name": d.get("name"),
            "abbreviation": d.get("abbreviation"),
            "permanent_number": _int_or_nan(d.get("permanentNumber")),
        },
        referenced={r["driver_id"] for t in ("qualifying", "results", "practice") for r in rows[t]},
    )
    rows["constructors"] = _reference(
        data_dir / "constructors",
        lambda d: {
            "constructor_id": d["id"],
            "name": d.get("name"),
            "chronology": ",".join(
                f"{c['constructorId']}:{c.get('yearFrom') or 0}"
                for c in d.get("chronology") or []
                if isinstance(c, dict) and c.get("constructorId")
            ),
        },
        referenced=None,
    )
    rows["circuits"] = _reference(
        data_dir / "circuits",
        lambda d: {"circuit_id": d["id"], "name": d.get("name"), "type": d.get("type")},
        referenced={r["circuit_id"] for r in rows["races"]},
    )


def _reference(
    folder: Path, pick: Callable[[dict[str, Any]], dict[str, Any]], referenced: set[str] | None
) -> list[dict[str, Any]]:
    out = []
    if not folder.is_dir():
        raise DataError(f"{folder}: missing reference folder")
    for path in sorted(folder.glob("*.yml")):
        if referenced is not None and path.stem not in referenced:
            continue
        doc = _load_mapping(path)
        _require(doc, "id", path)
        out.append(pick(doc))
    return out


_COLUMNS: dict[str, list[str]] = {
    "races": [
        "race_id",
        "season",
        "round",
        "date",
        "grand_prix_id",
        "circuit_id",
        "layout_id",
        "circuit_type",
        "course_length",
        "laps",
        "turns",
        "is_sprint",
        "has_quali",
        "has_results",
    ],
    "sessions": ["race_id", "session", "before_quali"],
    "practice": ["race_id", "session", "driver_id", "constructor_id", "time_s", "laps"],
    "qualifying": [
        "race_id",
        "driver_id",
        "constructor_id",
        "driver_number",
        "position",
        "best_s",
        "q3_s",
    ],
    "grid": ["race_id", "driver_id", "grid", "pit_lane", "penalty"],
    "results": [
        "race_id",
        "driver_id",
        "constructor_id",
        "driver_number",
        "position",
        "position_text",
        "points",
        "grid_text",
    ],
    "driver_standings": ["race_id", "id", "position", "points"],
    "constructor_standings": ["race_id", "id", "position", "points"],
    "entrants": ["season", "constructor_id", "driver_id", "rounds", "test_driver"],
    "drivers": ["driver_id", "name", "abbreviation", "permanent_number"],
    "constructors": ["constructor_id", "name", "chronology"],
    "circuits": ["circuit_id", "name", "type"],
}


def _frames(rows: dict[str, list[dict[str, Any]]]) -> Tables:
    frames = {name: pd.DataFrame(rows[name], columns=_COLUMNS[name]) for name in _COLUMNS}
    races = frames["races"].astype({"date": "datetime64[ns]"})  # same unit as from parquet
    frames["races"] = races.sort_values(["date", "round"]).reset_index(drop=True)
    return Tables(**frames)


def _write_cache(path: Path, tables: Tables) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
    try:
        for name in Tables.table_names():
            getattr(tables, name).to_parquet(tmp / f"{name}.parquet", index=False)
        os.replace(tmp, path)
    except BaseException as exc:  # never leave the temp folder behind
        shutil.rmtree(tmp, ignore_errors=True)
        if not (isinstance(exc, OSError) and path.exists()):  # not cached by another process
            raise


def load_tables(
    data_dir: Path,
    cache_dir: Path | None = None,
    *,
    min_season: int = 2012,
    progress: bool = False,
) -> Tables:
    """Parse (or load from cache) every season >= ``min_season`` of the F1DB tree."""
    seasons = _seasons_from(data_dir, min_season)
    key = content_hash(data_dir, seasons)
    path = None if cache_dir is None else cache_dir / f"tables-{key}"
    if path is not None and path.is_dir():
        frames = {n: pd.read_parquet(path / f"{n}.parquet") for n in Tables.table_names()}
        return Tables(**frames, content_hash=key)
    tables = _parse_tree(data_dir, seasons, progress)
    tables.content_hash = key
    if path is not None:
        _write_cache(path, tables)
    return tables


def data_hash(data_dir: Path, min_season: int = 2012) -> str:
    """The content hash ``load_tables`` gives the tables of this tree (~0.5 s)."""
    return content_hash(data_dir, _seasons_from(data_dir, min_season))


def team_lineage(constructors: pd.DataFrame) -> dict[str, str]:
    """Constructor id -> id of the newest team in its F1DB ``chronology`` (Toro Rosso ->
    RB): form carries over a rename."""
    best: dict[str, tuple[int, str]] = {}
    for chron in constructors["chronology"].fillna(""):
        members = []
        for item in str(chron).split(","):
            if ":" in item:
                cid, year = item.rsplit(":", 1)
                members.append((int(year or 0), cid))
        if not members:
            continue
        head_year, head = max(members)
        for _, cid in members:
            if cid not in best or best[cid][0] < head_year:
                best[cid] = (head_year, head)
    return {cid: head for cid, (_, head) in best.items()}


def iter_race_rounds(entrant_rounds: str) -> Iterator[int]:
    """Rounds a driver was entered for (stored comma-separated)."""
    for part in str(entrant_rounds or "").split(","):
        if part:
            yield int(part)
