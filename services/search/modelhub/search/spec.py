"""How `make up` runs the search service (entry point group "modelhub.services"); imports nothing of the service."""

from modelhub.core.service_spec import ServiceSpec

SPEC = ServiceSpec(
    name="search",
    database="search",
    default_grpc_port=50054,
    migrate="modelhub.search.adapters.migrations:upgrade",
    serve_module="modelhub.search",
)
