"""modelhub's shared library: events, outbox relay, idempotent consumers, gRPC bootstrap, config, telemetry.

A library only: nothing here runs on its own and nothing is built at import time.
"""
