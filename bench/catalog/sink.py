"""A gRPC server that takes FileService.UploadFile streams and drops their bytes unparsed: the floor of an upload
through gRPC on this machine, for bench/catalog/run.py. Prints its port, then serves until it is killed.

    python bench/catalog/sink.py MAX_MESSAGE_BYTES
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from modelhub.catalog.v1 import files_pb2 as pb


async def drop(requests: AsyncIterator[bytes], context: Any) -> pb.UploadFileResponse:
    async for _ in requests:
        pass
    return pb.UploadFileResponse()


async def serve(max_message_bytes: int) -> None:
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", max_message_bytes)])
    handler = grpc.stream_unary_rpc_method_handler(
        drop, request_deserializer=lambda data: data, response_serializer=pb.UploadFileResponse.SerializeToString
    )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("modelhub.catalog.v1.FileService", {"UploadFile": handler}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
