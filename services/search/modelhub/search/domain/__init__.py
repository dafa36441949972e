"""The search domain: documents, queries and the engine port. No I/O."""
