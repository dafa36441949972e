"""`python -m modelhub.catalog` end to end: migrations at start, gRPC, the publication scheduler and the
outbox relay inside the process, graceful stop on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import UTC, datetime, timedelta

import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp
from nats.errors import TimeoutError as NatsTimeout

from modelhub.catalog.bootstrap import build_catalog
from modelhub.catalog.domain.vocabulary import ScanResult
from modelhub.catalog.v1 import models_pb2 as pb
from modelhub.catalog.v1.models_pb2_grpc import ModelServiceStub
from modelhub.core.db import create_engine
from modelhub.core.nats import connect, events_stream_name, events_subject
from modelhub.devstack.nats import NatsServer
from modelhub.devstack.ports import free_port
from modelhub.devstack.waiting import wait_until
from modelhub.events.v1 import envelope_pb2

from .conftest import SECRET, auth
from .model_helpers import ALICE, a_file


async def test_the_service_process_serves_schedules_and_publishes(database_url: str, nats_server: NatsServer) -> None:
    port = free_port()
    env = os.environ | {
        "MODELHUB_CATALOG_DATABASE_URL": database_url,  # not migrated: the service does it at start
        "MODELHUB_CATALOG_NATS_URL": nats_server.url,
        "MODELHUB_CATALOG_GRPC_PORT": str(port),
        "MODELHUB_CATALOG_JWT_SECRET": SECRET,
        "MODELHUB_CATALOG_SCHEDULE_INTERVAL_SECONDS": "0.2",
    }
    process = await asyncio.create_subprocess_exec(sys.executable, "-m", "modelhub.catalog", env=env)
    engine = create_engine(database_url)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await asyncio.wait_for(channel.channel_ready(), 60)
            stub = ModelServiceStub(channel)
            md = auth("alice")
            model = (await stub.CreateModel(pb.CreateModelRequest(name="m", type="LORA"), metadata=md)).model
            created = await stub.CreateVersion(
                pb.CreateVersionRequest(
                    model_id=model.model_id, expected_version=model.version, name="v1", base_model="SD 1.5"
                ),
                metadata=md,
            )
            # Files arrive through the upload pipeline; here straight through the use cases.
            models = build_catalog(engine).models
            await models.add_file(ALICE, created.model_version_id, a_file("f1"))
            current = await models.record_scan(created.model_version_id, "f1", ScanResult.SUCCESS)
            at = Timestamp()
            at.FromDatetime(datetime.now(UTC) + timedelta(seconds=1))
            await stub.PublishModel(
                pb.PublishModelRequest(model_id=model.model_id, expected_version=current.version, publish_at=at),
                metadata=md,
            )

            async def public() -> bool:
                try:  # anonymous: NOT_FOUND until published
                    await stub.GetModel(pb.GetModelRequest(model_id=model.model_id))
                except grpc.RpcError:
                    return False
                return True

            await wait_until(public, 30, "the scheduler to publish the model")
        nc = await connect(nats_server.url, "catalog-test")
        try:
            sub = await nc.jetstream().pull_subscribe(events_subject("catalog"), stream=events_stream_name("catalog"))
            types: list[str] = []

            async def relayed() -> bool:
                try:
                    for message in await sub.fetch(50, timeout=0.5):
                        types.append(envelope_pb2.EventEnvelope.FromString(message.data).event_type)
                        await message.ack()
                except NatsTimeout:
                    pass
                return "catalog.ModelVersionPublished" in types

            await wait_until(relayed, 30, "the relay to publish catalog.ModelVersionPublished")
            assert types[0] == "catalog.ModelCreated"
        finally:
            await nc.close()
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0
    finally:
        await engine.dispose()
        if process.returncode is None:
            process.kill()
            await process.wait()
