"""SQLAlchemy descriptions of the library's tables (created by the "core" Alembic branch)."""

from sqlalchemy import BigInteger, Column, Integer, LargeBinary, MetaData, Table, Text, Uuid
from sqlalchemy.dialects.postgresql import TIMESTAMP

metadata = MetaData()

events = Table(
    "events",
    metadata,
    Column("position", BigInteger, primary_key=True),
    # xid8, defaulted by the server to pg_current_xact_id(); read as text to stay driver-neutral.
    Column("transaction_id", Text, nullable=False),
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("stream_id", Text, nullable=False),
    Column("stream_version", BigInteger, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("schema_version", Integer, nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("occurred_at", TIMESTAMP(timezone=True), nullable=False),
    Column("correlation_id", Text, nullable=False),
    Column("causation_id", Text, nullable=False),
    Column("traceparent", Text, nullable=False),
    Column("tracestate", Text, nullable=False),
)

STREAM_VERSION_CONSTRAINT = "events_stream_id_stream_version_key"
