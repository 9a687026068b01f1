"""merchant webhooks: endpoints, events (the outbox), delivery attempts

Revision ID: 0004_webhooks
Revises: 0001
"""
from __future__ import annotations

from typing import Sequence, Union

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_webhooks"
down_revision: Union[str, None] = "0001"
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# Wakes the webhook dispatcher (LISTEN payops_webhook_events) when events commit; the NOTIFY is
# delivered at commit, so the dispatcher never sees an event before its row is visible.
NOTIFY_FUNCTION = """
CREATE FUNCTION notify_webhook_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('payops_webhook_events', '');
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("event_types", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("secrets_encrypted", sa.LargeBinary(), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["merchant_id"], ["merchants.id"], name=op.f("fk_webhook_endpoints_merchant_id_merchants")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_endpoints")),
    )
    op.create_index("ix_webhook_endpoints_merchant_id", "webhook_endpoints", ["merchant_id"], unique=False)
    op.create_table(
        "events",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("payout_id", sa.String(length=64), nullable=True),
        sa.Column("payout_version", sa.Integer(), nullable=True),
        sa.Column("data", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["merchant_id"], ["merchants.id"], name=op.f("fk_events_merchant_id_merchants")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index("ix_events_merchant_created", "events", ["merchant_id", "created_at", "id"], unique=False)
    op.create_index("ix_events_payout_id", "events", ["payout_id"], unique=False)
    op.create_index(
        "ix_events_undispatched", "events", ["created_at"], unique=False,
        postgresql_where=sa.text("dispatched_at IS NULL"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("endpoint_id", sa.String(length=64), nullable=False),
        sa.Column("merchant_id", sa.String(length=64), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("response_excerpt", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("outcome in ('succeeded','failed','refused')", name=op.f("ck_webhook_attempts_outcome")),
        sa.ForeignKeyConstraint(["event_id"], ["events.id"], name=op.f("fk_webhook_attempts_event_id_events")),
        sa.ForeignKeyConstraint(
            ["endpoint_id"], ["webhook_endpoints.id"], name=op.f("fk_webhook_attempts_endpoint_id_webhook_endpoints")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_attempts")),
        sa.UniqueConstraint("workflow_id", "attempt", name="uq_webhook_attempts_workflow_attempt"),
    )
    op.create_index("ix_webhook_attempts_event_id", "webhook_attempts", ["event_id"], unique=False)
    op.create_index(
        "ix_webhook_attempts_endpoint_created", "webhook_attempts", ["endpoint_id", "created_at"], unique=False
    )
    op.execute(NOTIFY_FUNCTION)
    op.execute(
        "CREATE TRIGGER events_notify_webhooks AFTER INSERT ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION notify_webhook_events()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS events_notify_webhooks ON events")
    op.execute("DROP FUNCTION IF EXISTS notify_webhook_events()")
    op.drop_index("ix_webhook_attempts_endpoint_created", table_name="webhook_attempts")
    op.drop_index("ix_webhook_attempts_event_id", table_name="webhook_attempts")
    op.drop_table("webhook_attempts")
    op.drop_index("ix_events_undispatched", table_name="events", postgresql_where=sa.text("dispatched_at IS NULL"))
    op.drop_index("ix_events_payout_id", table_name="events")
    op.drop_index("ix_events_merchant_created", table_name="events")
    op.drop_table("events")
    op.drop_index("ix_webhook_endpoints_merchant_id", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
