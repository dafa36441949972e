"""The harness gives real servers: a query on Postgres and a JetStream round trip on NATS."""

import nats
import psycopg


def test_postgres_database_is_real_and_empty(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        version = conn.execute("SHOW server_version").fetchone()
        tables = conn.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").fetchone()
    assert version is not None
    assert int(version[0].split(".")[0]) >= 15
    assert tables == (0,)


async def test_nats_has_jetstream(nats_url: str, unique_name: str) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await js.add_stream(name=unique_name, subjects=[f"{unique_name}.>"])
        ack = await js.publish(f"{unique_name}.x", b"hello")
        assert ack.stream == unique_name
        assert ack.seq == 1
        await js.delete_stream(unique_name)
    finally:
        await nc.close()
