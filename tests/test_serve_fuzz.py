"""Property-based fuzzing of the service from its own OpenAPI document: never a 5xx.

Hypothesis strategies come straight from schemathesis (``operation.as_strategy()``): the
``from_fixture`` pytest integration of schemathesis 4.32 breaks on pytest 9 (``_nodeid``).
"""

from __future__ import annotations

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402

from iipa.serve import ServeSettings, create_app  # noqa: E402

OPERATIONS = [("POST", "/v1/score"), ("POST", "/v1/compare"), ("POST", "/v1/explain"), ("GET", "/v1/model"),
              ("GET", "/healthz"), ("GET", "/metrics")]


@pytest.fixture(scope="module")
def api_schema(tiny_checkpoint):
    app = create_app(tiny_checkpoint, ServeSettings(max_wait_ms=0))
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def test_openapi_document_covers_the_api(api_schema):
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert set(OPERATIONS) <= found


@pytest.mark.slow
@pytest.mark.parametrize(("method", "path"), OPERATIONS)
def test_no_server_errors(api_schema, method, path):
    operation = api_schema[path][method]
    seen: list[int] = []

    @given(case=operation.as_strategy())
    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        response = case.call()
        seen.append(response.status_code)
        assert response.status_code < 500, (method, path, response.status_code, response.text[:300])
        case.validate_response(response, checks=[not_a_server_error])

    check()
    assert seen, "no request was generated"
