"""How `make up` runs the catalog (entry point group "modelhub.services"); imports nothing of the service."""

from modelhub.core.service_spec import ServiceSpec

SPEC = ServiceSpec(
    name="catalog",
    database="catalog",
    default_grpc_port=50053,
    migrate="modelhub.catalog.adapters.migrations:upgrade",
    serve_module="modelhub.catalog",
)
