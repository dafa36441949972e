"""Local infrastructure for development and tests: real PostgreSQL and NATS JetStream as child processes.

Used by `make up` (the local platform) and by the pytest harness, so both start the servers the same way.
"""
