"""The event backbone: event store, schema registry with upcasters, outbox relay, idempotent consumers,
projections. See docs/architecture.md for how the pieces fit together."""
