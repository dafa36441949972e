"""Search engines behind the port (modelhub.search.domain.ports): tantivy (embedded) and Elasticsearch."""
