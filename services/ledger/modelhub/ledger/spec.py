"""How `make up` runs the ledger (entry point group "modelhub.services"); imports nothing of the service."""

from modelhub.core.service_spec import ServiceSpec

SPEC = ServiceSpec(
    name="ledger",
    database="ledger",
    default_grpc_port=50052,
    migrate="modelhub.ledger.adapters.migrations:upgrade",
    serve_module="modelhub.ledger",
)
