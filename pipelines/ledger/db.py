"""The prediction log's table and the SQL that writes and reads it (SQLAlchemy Core):
one row per distinct answer, SQLite or PostgreSQL, migrated by Alembic on start."""

from __future__ import annotations

import contextlib
import fcntl
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pydantic_core
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = sa.MetaData()

forecasts = sa.Table(
    "forecasts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("key", sa.String(64), nullable=False, unique=True),
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False, index=True),
    sa.Column("count", sa.Integer(), nullable=False),
    sa.Column("request_id", sa.String(64)),
    sa.Column("stages", sa.String(8), nullable=False),
    sa.Column("season", sa.Integer(), nullable=False),
    sa.Column("round", sa.Integer()),
    sa.Column("race_id", sa.Integer()),
    sa.Column("circuit_id", sa.String(64)),
    sa.Column("event_date", sa.Date()),
    sa.Column("has_inputs", sa.Boolean(), nullable=False),
    sa.Column("inputs", sa.JSON()),
    sa.Column("kind", sa.String(24), nullable=False),
    sa.Column("data_saw_qualifying", sa.Boolean(), nullable=False),
    sa.Column("fitted_on_event", sa.Boolean(), nullable=False),
    sa.Column("data_hash", sa.String(64)),
    sa.Column("models", sa.JSON(), nullable=False),
    sa.Column("pole_s", sa.Float()),
    sa.Column("field", sa.JSON(), nullable=False),
    sa.Index("ix_forecasts_event", "season", "round"),
)
"""``stages``: "quali" or "race" (win, podium and points odds too). ``kind``:
"weekend_ahead" (no practice lap of the event in the data) or "before_qualifying".
``field``: one object per car of the event (gap, grid, pole and race odds)."""

RETENTION_BATCH = 500
"""Rows deleted per statement by ``delete_older``: short statements never hold up writes."""


def engine_url(url: str) -> sa.URL:
    """A SQLAlchemy URL: ``postgresql://`` (libpq's form, as hosts give it) runs on psycopg 3."""
    u = make_url(url)
    if u.drivername in ("postgres", "postgresql"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def redacted(url: str) -> str:
    """The URL without its password, for /health and the logs."""
    return engine_url(url).render_as_string(hide_password=True)


def _to_json(obj: Any) -> str:
    """JSON text; bytes are JSON already (the log encodes a field once, when it answers)."""
    return (obj if isinstance(obj, bytes) else pydantic_core.to_json(obj)).decode()


JSON_CODEC: dict[str, Any] = {
    "json_serializer": _to_json,
    "json_deserializer": pydantic_core.from_json,
}
"""pydantic-core's JSON: cheap enough to log every unique answer, and every float reads
back exactly as written."""


def make_engine(url: str, timeout_s: float) -> Engine:
    """An engine whose every wait is bounded by ``timeout_s`` (connect, lock, statement)."""
    u = engine_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database:
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        # timeout: SQLite's busy wait; WAL: readers never block the writer; synchronous=NORMAL:
        # no sync per commit, safe from a crashed process (a power cut may lose the last ones);
        # a checkpoint every 40 MB of log, not 4: a page changed often is copied once
        pragmas = (
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=10000"
        )
        engine = sa.create_engine(u, connect_args={"timeout": timeout_s}, **JSON_CODEC)
        sa.event.listen(engine, "connect", lambda conn, _: conn.executescript(pragmas))
        return engine
    ms = int(timeout_s * 1000)
    args: dict[str, Any] = {}
    if u.get_backend_name() == "postgresql":
        args = {
            "connect_timeout": max(1, int(timeout_s)),
            "options": f"-c statement_timeout={ms} -c lock_timeout={ms}",
        }
    return sa.create_engine(u, connect_args=args, pool_pre_ping=True, pool_size=2, **JSON_CODEC)


_MIGRATED: weakref.WeakSet[Engine] = weakref.WeakSet()


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest version (Alembic), one process or replica at a time."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    url = engine.url
    with engine.begin() as conn, contextlib.ExitStack() as lock:
        if url.get_backend_name() == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(7201034)"))
        elif url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
            fcntl.flock(lock.enter_context(open(f"{url.database}.lock", "a")), fcntl.LOCK_EX)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def migrated(engine: Engine) -> Engine:
    """``engine``, migrated once in this process (every read and write goes through it)."""
    if engine not in _MIGRATED:
        migrate(engine)
        _MIGRATED.add(engine)
    return engine


def upsert(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new answers; an answer already stored adds its count and moves ``last_at``."""
    if not rows:
        return
    pg = conn.engine.url.get_backend_name() == "postgresql"
    ins = (postgresql if pg else sqlite).insert(forecasts)
    latest = sa.func.greatest if pg else sa.func.max
    stmt = ins.on_conflict_do_update(
        index_elements=["key"],
        set_={
            "count": forecasts.c.count + ins.excluded.count,
            "last_at": latest(forecasts.c.last_at, ins.excluded.last_at),
            "request_id": ins.excluded.request_id,
        },
    )
    conn.execute(stmt, sorted(rows, key=lambda r: r["key"]))  # one lock order for all


def delete_older(conn: Connection, days: float, now: datetime) -> int:
    """Delete one batch of rows last seen more than ``days`` ago; the number deleted."""
    cut = now - timedelta(days=days)
    ids = sa.select(forecasts.c.id).where(forecasts.c.last_at < cut).limit(RETENTION_BATCH)
    res = conn.execute(sa.delete(forecasts).where(forecasts.c.id.in_(ids.scalar_subquery())))
    return int(res.rowcount or 0)


def cars(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """A stored field (``record.field_columns``), one dict a car."""
    rows = zip(*columns.values(), strict=True)
    return [dict(zip(columns, values, strict=True)) for values in rows]


def scoreable(engine: Engine, season: int) -> list[dict[str, Any]]:
    """A season's scoreable forecasts, oldest first (the data's field, before qualifying)."""
    f = forecasts.c
    q = (
        sa.select(forecasts)
        .where(
            f.season == season,
            f.round.is_not(None),
            f.stages == "race",
            f.has_inputs.is_(False),
            f.fitted_on_event.is_(False),
            f.data_saw_qualifying.is_(False),
        )
        .order_by(f.last_at, f.id)
    )
    with migrated(engine).connect() as conn:
        return [r._asdict() | {"field": cars(r.field)} for r in conn.execute(q)]


def totals(conn: Connection) -> tuple[int, int]:
    """(rows, answers) stored."""
    row = conn.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(forecasts.c.count), 0))
    ).one()
    return int(row[0]), int(row[1])


def default_url(store_home: str) -> str:
    """The embedded default: a SQLite file beside the model store."""
    return f"sqlite:///{Path(store_home) / 'f1-ledger.sqlite3'}"
