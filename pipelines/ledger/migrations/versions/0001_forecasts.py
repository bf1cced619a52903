"""The forecasts table (revision 0001, the first)."""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "forecasts",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("key", sa.String(64), nullable=False, unique=True),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
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
    )
    op.create_index("ix_forecasts_last_at", "forecasts", ["last_at"])
    op.create_index("ix_forecasts_event", "forecasts", ["season", "round"])


def downgrade() -> None:
    op.drop_table("forecasts")
