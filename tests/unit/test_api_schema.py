"""The OpenAPI document tells the truth: schemathesis runs every check against the API
application (in process, no lab) and finds nothing.

The controller behind it has the default topology, the default analyzer in its store, and a lab
process that does not answer, so launching and removing analyzers is 503, as documented. The
API has a bearer token, so schemathesis also checks that requests without it are refused.
"""
from __future__ import annotations

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config import SchemathesisConfig

from mirrorlab.controller.mirroring import DEFAULT_ANALYZER, plan_analyzer
from mirrorlab.controller.rest import ApiAccess, create_app
from mirrorlab.controller.service import ControllerService
from mirrorlab.controller.store import Store
from mirrorlab.control import LabControl
from mirrorlab.topofile import load

TOKEN = "schema-test-token"
# schemathesis' in-process client sends this Host header.
TEST_HOST = "testserver"
CONFIG = SchemathesisConfig.from_str("""
[checks.not_a_server_error]
# 503 is the documented answer when the lab process cannot launch or remove an analyzer VM.
expected-statuses = ["2xx", "3xx", "4xx", "503"]

# A display filter is any string to the schema; one its grammar refuses is a documented 400.
[[operations]]
include-path = "/api/captures/{capture_id}/packets"
checks.positive_data_acceptance.enabled = false
""")
EXAMPLES_PER_OPERATION = 100


def _api_app():
    """The API application on a store in memory, with capture 1 active, and a lab process
    that is not there."""
    topology = load("topologies/default.yaml")
    store = Store(":memory:")
    store.add_analyzer(plan_analyzer(topology, DEFAULT_ANALYZER, None, "compute1"))
    nowhere = Path("/nonexistent/mirrorlab-schema-test")
    service = ControllerService(topology, store, LabControl(nowhere / "lab.sock"), nowhere)
    service.start_capture("compute1", "tap-vm1-0", lease_seconds=3600)  # capture 1 exists
    return create_app(service, 5.0, ApiAccess.of([TEST_HOST], TOKEN))


schema = schemathesis.openapi.from_asgi("/openapi.json", _api_app(), config=CONFIG)


@schema.parametrize()
@settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_every_response_is_the_documented_one(case):
    """Every check schemathesis has (server errors, statuses, content types, headers, response
    schemas, negative and positive data, methods, authentication) passes on every operation."""
    case.call_and_validate(headers={"Authorization": f"Bearer {TOKEN}"})
