"""`python -m modelhub.search.reindex` (`make reindex`): rebuild the search index into a fresh generation and swap
it in, with zero failed queries (see modelhub.search.rebuild and docs/search.md).

By default this asks the running service to do it (the Reindex RPC, as an admin): the service owns the index
and its live consumer, so the rebuild can catch up with live writes and swap under its feet. The admin token is
--token, or MODELHUB_SEARCH_ADMIN_TOKEN, or, for a service verifying HMAC tokens (the local default), one minted
with the service's own secret. With --offline it rebuilds in this process instead, for a service that is not
running (the tantivy index directory cannot be written by two processes).

Prints the report as one JSON object; exits 1 with the error on failure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

import grpc
import grpc.aio

from modelhub.core.grpc.auth import issue_token
from modelhub.core.grpc.errors import error_details
from modelhub.search.config import SearchSettings
from modelhub.search.v1 import search_pb2, search_pb2_grpc

TOKEN_VARIABLE = "MODELHUB_SEARCH_ADMIN_TOKEN"


def admin_token(settings: SearchSettings, token: str | None) -> str:
    token = token or os.environ.get(TOKEN_VARIABLE, "")
    if token:
        return token
    if not settings.jwt_algorithm.startswith("HS"):
        raise SystemExit(
            f"the service verifies {settings.jwt_algorithm} tokens: pass an admin token (--token or {TOKEN_VARIABLE})"
        )
    return issue_token("search-reindex", ("admin",), key=settings.jwt_verification_key, expires_in=3600)


async def reindex_remote(address: str, token: str, replay_stream: bool) -> dict[str, Any]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        response = await stub.Reindex(
            search_pb2.ReindexRequest(replay_stream=replay_stream),
            metadata=(("authorization", f"Bearer {token}"),),
        )
    return {
        "generation": response.generation,
        "models": response.models,
        "images": response.images,
        "replayed_events": response.replayed_events,
        "took_s": round(response.took.ToNanoseconds() / 1e9, 3),
        "paused_s": round(response.paused.ToNanoseconds() / 1e9, 3),
    }


async def reindex_offline(settings: SearchSettings, replay_stream: bool) -> dict[str, Any]:
    from modelhub.search.bootstrap import open_search

    search = await open_search(settings)
    try:
        report = await search.rebuilder.rebuild(replay_stream=replay_stream)
    finally:
        await search.close()
    return {
        "generation": report.generation,
        "models": report.models,
        "images": report.images,
        "replayed_events": report.replayed_events,
        "took_s": round(report.took_seconds, 3),
        "paused_s": round(report.paused_seconds, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m modelhub.search.reindex", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--replay-stream", action="store_true", help="first replay the catalog's stream into the mirror"
    )
    parser.add_argument("--offline", action="store_true", help="rebuild in this process (the service is stopped)")
    parser.add_argument("--address", help="the service's gRPC address (default: from MODELHUB_SEARCH_GRPC_*)")
    parser.add_argument("--token", help=f"admin bearer token (default: {TOKEN_VARIABLE}, or minted locally)")
    args = parser.parse_args(argv)
    settings = SearchSettings()
    try:
        if args.offline:
            result = asyncio.run(reindex_offline(settings, args.replay_stream))
        else:
            address = args.address or settings.grpc_address
            result = asyncio.run(reindex_remote(address, admin_token(settings, args.token), args.replay_stream))
    except grpc.aio.AioRpcError as error:
        details = error_details(error)
        hint = ""
        if details.code is grpc.StatusCode.UNAVAILABLE:
            hint = " (is the search service running there? `make up` starts it; --offline rebuilds without it)"
        print(f"reindex failed: {details.code.name}: {details.message}{hint}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
