"""The feature snapshot: every driver's and team's form *after* each event, the calendar
and each event's pre-qualifying practice, saved with the models (serving never reads the
YAML). Here its data and persistence; its look-ups and rows are in ``lookups`` and ``rows``."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from pipelines.f1db.parse import Tables, team_lineage
from pipelines.features.history import (
    build_driver_state,
    build_event_frame,
    build_standings_state,
    build_team_state,
    driver_events,
    pre_quali_practice,
)
from pipelines.features.rows import SnapshotRows

SNAPSHOT_FORMAT = 3
"""Raised when the saved frames change (3: the ``names`` frame)."""


class FeatureSnapshot(SnapshotRows):
    """History and calendar for feature building, saved beside the models."""

    @classmethod
    def build(cls, t: Tables) -> FeatureSnapshot:
        """Everything serving needs, computed once from the parsed tables."""
        lineage = team_lineage(t.constructors)
        races = t.races
        ev = driver_events(t, races, lineage)
        events = build_event_frame(t)
        cols = ["race_id", "driver_id", "driver_number"]
        nums = (
            pd.concat([t.qualifying[cols], t.results[cols]])
            .dropna(subset=["driver_number"])
            .merge(races[["race_id", "season"]], on="race_id")
            .rename(columns={"driver_number": "number"})
            .drop_duplicates(["season", "number"], keep="last")
        )
        lin = pd.DataFrame({"constructor_id": list(lineage), "lineage": list(lineage.values())})
        frames = {
            "events": events,
            "driver_state": build_driver_state(ev),
            "team_state": build_team_state(ev),
            "dstand": build_standings_state(t.driver_standings, races),
            "cstand": build_standings_state(t.constructor_standings, races),
            "practice": pre_quali_practice(t),
            "entrants": t.entrants.sort_values("season"),
            "numbers": nums[["season", "number", "driver_id"]].astype(
                {"season": int, "number": int}
            ),
            "lineage": lin,
            "outcomes": outcomes_frame(t),
            "names": _names_frame(t),
        }
        with_results = events[events["has_results"]]
        last = with_results.iloc[-1] if len(with_results) else None
        meta = {
            "format": SNAPSHOT_FORMAT,
            "data_hash": t.content_hash,
            "seasons": [int(races["season"].min()), int(races["season"].max())],
            "latest_event": None
            if last is None
            else {
                "season": int(last["season"]),
                "round": int(last["round"]),
                "grand_prix_id": str(last["grand_prix_id"]),
                "date": pd.Timestamp(last["date"]).date().isoformat(),
            },
        }
        return cls(frames, meta)

    def save(self, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        for name, frame in self.frames.items():
            frame.to_parquet(path / f"{name}.parquet", index=False)
        (path / "snapshot.json").write_text(json.dumps(self.meta, indent=2))

    @staticmethod
    def format_of(path: Path) -> int | None:
        """The format a saved snapshot was written in (None if unreadable)."""
        try:
            fmt = json.loads((path / "snapshot.json").read_text()).get("format")
        except (OSError, ValueError):
            return None
        return fmt if isinstance(fmt, int) else None

    @classmethod
    def load(cls, path: Path) -> FeatureSnapshot:
        meta = json.loads((path / "snapshot.json").read_text())
        if meta.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(
                f"{path}: feature snapshot format {meta.get('format')} is not "
                f"{SNAPSHOT_FORMAT}; run `f1 refresh`"
            )
        frames = {f.stem: pd.read_parquet(f) for f in sorted(path.glob("*.parquet"))}
        return cls(frames, meta)


def outcomes_frame(t: Tables) -> pd.DataFrame:
    """Qualifying and race results of each event (never a feature: shown beside a forecast)."""
    q = t.qualifying[["race_id", "driver_id", "position", "best_s"]].rename(
        columns={"position": "q_pos", "best_s": "q_time_s"}
    )
    r = t.results[["race_id", "driver_id", "position", "position_text"]].rename(
        columns={"position": "r_pos", "position_text": "r_text"}
    )
    out = q.merge(r, on=["race_id", "driver_id"], how="outer")
    out["r_text"] = out["r_text"].fillna("").astype(str)
    return out.astype({"q_pos": float, "q_time_s": float, "r_pos": float})


def _names_frame(t: Tables) -> pd.DataFrame:
    """Every F1DB driver and constructor with a name: (kind, id, name)."""
    parts = []
    for kind, frame, col in (
        ("driver", t.drivers, "driver_id"),
        ("constructor", t.constructors, "constructor_id"),
    ):
        f = frame[[col, "name"]].dropna()
        parts.append(
            pd.DataFrame({"kind": kind, "id": f[col].astype(str), "name": f["name"].astype(str)})
        )
    return pd.concat(parts, ignore_index=True)
