"""The log's table on SQLite and PostgreSQL: migrations, upserts, retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from pipelines.ledger import db
from pipelines.ledger.record import answer, row
from tests.pipelines.ledger.forecasts import forecast
from tests.postgres import Cluster

MODELS = {"features": "f1_features:a", "stage1": "f1_stage1:b", "stage2": "f1_stage2:c"}


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[sa.Engine]:
    """A migrated, empty log on each backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    else:
        cluster: Cluster = request.getfixturevalue("postgres")
        url = cluster.url
    eng = db.make_engine(url, timeout_s=5.0)
    db.migrate(eng)
    yield eng
    with eng.begin() as conn:
        conn.execute(sa.text("DROP TABLE IF EXISTS forecasts"))
        conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))
    eng.dispose()


def _row(round_: int = 3, count: int = 1, at: datetime | None = None) -> dict:
    at = at or datetime.now(UTC)
    a = answer(forecast(round_), None, "rid", False, at)
    a.count = count
    return row(a, MODELS, "h", False)


def test_the_migrations_build_exactly_the_declared_table(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
    assert diff == []


def test_migrating_twice_changes_nothing(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        db.upsert(conn, [_row()])
    db.migrate(engine)
    with engine.connect() as conn:
        assert db.totals(conn) == (1, 1)


def test_an_answer_given_again_adds_to_its_count_and_moves_last_at(engine: sa.Engine) -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    with engine.begin() as conn:
        db.upsert(conn, [_row(3, 2, t0), _row(4, 1, t0)])
    with engine.begin() as conn:
        db.upsert(conn, [_row(3, 5, t0 + timedelta(hours=1))])
    with engine.connect() as conn:
        assert db.totals(conn) == (2, 8)
    rows = {r["round"]: r for r in db.scoreable(engine, 2030)}
    assert rows[3]["count"] == 7
    assert rows[3]["last_at"].replace(tzinfo=UTC) == t0 + timedelta(hours=1)
    assert rows[3]["first_at"].replace(tzinfo=UTC) == t0


def test_the_field_is_stored_whole_with_the_race_odds(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        db.upsert(conn, [_row()])
    (rec,) = db.scoreable(engine, 2030)
    field = rec["field"]
    assert [c["driver_id"] for c in field] == ["alice", "bob", "carol", "dave"]
    assert sum(c["win"] for c in field) == pytest.approx(1.0, abs=1e-5)
    assert rec["kind"] == "weekend_ahead"  # no practice lap in the field
    assert rec["models"] == MODELS


def test_a_number_that_is_not_finite_is_stored_as_null(engine: sa.Engine) -> None:
    fc = forecast(3)
    fc.quali.gap_pct[1] = float("nan")
    fc.quali.pole_s = float("inf")
    with engine.begin() as conn:
        db.upsert(conn, [row(answer(fc, None, "r", False, datetime.now(UTC)), MODELS, "h", False)])
    (rec,) = db.scoreable(engine, 2030)
    assert [c["gap_pct"] for c in rec["field"]][:2] == [fc.quali.gap_pct[0], None]
    assert rec["pole_s"] is None


def test_the_key_names_the_answer_its_data_and_its_models() -> None:
    at = datetime.now(UTC)
    keys = {
        row(answer(forecast(3), inputs, "r", False, at), models, data, False)["key"]
        for inputs, models, data in [
            (None, MODELS, "h"),
            ('{"drivers": []}', MODELS, "h"),
            (None, MODELS | {"stage2": "f1_stage2:d"}, "h"),
            (None, MODELS, "h2"),
        ]
    }
    assert len(keys) == 4
    again = row(
        answer(forecast(3), None, "other", True, at), dict(reversed(MODELS.items())), "h", True
    )
    assert again["key"] == _row()["key"]


def test_retention_deletes_only_rows_older_than_the_cut(engine: sa.Engine) -> None:
    now = datetime(2030, 6, 1, tzinfo=UTC)
    with engine.begin() as conn:
        db.upsert(conn, [_row(r, 1, now - timedelta(days=r)) for r in range(1, 11)])
    with engine.begin() as conn:
        assert db.delete_older(conn, 5.5, now) == 5
    assert sorted(r["round"] for r in db.scoreable(engine, 2030)) == [1, 2, 3, 4, 5]


def test_only_data_alone_unseen_race_forecasts_are_scoreable(engine: sa.Engine) -> None:
    at = datetime.now(UTC)
    rows = [_row(1), _row(2), _row(3), _row(4)]
    rows[1]["has_inputs"] = True
    rows[2]["fitted_on_event"] = True
    rows[3]["data_saw_qualifying"] = True
    quali_only = row(answer(forecast(5, race=False), None, "q", False, at), MODELS, "h", False)
    with engine.begin() as conn:
        db.upsert(conn, [*rows, quali_only])
    assert [r["round"] for r in db.scoreable(engine, 2030)] == [1]


def test_postgres_urls_as_libpq_gives_them_run_on_psycopg() -> None:
    url = db.engine_url("postgresql://u:secret@db.example:5432/f1")
    assert url.drivername == "postgresql+psycopg"
    assert "secret" not in db.redacted("postgresql://u:secret@db.example:5432/f1")
