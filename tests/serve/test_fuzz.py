"""schemathesis against the server's own OpenAPI document: generated requests never get a 5xx, and every
answer is one the document names (status, content type, error shape). Driven through hypothesis directly,
so it runs on the real server of the other API tests."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from .conftest import API_KEY


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_request_gets_a_server_error(server, mode):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/chat/completions", "/v1/models", "/health"}
    checked = []
    if mode == GenerationMode.NEGATIVE:  # only the chat route takes a body to get wrong
        operations = [op for op in operations if op.path == "/v1/chat/completions"]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=30 if operation.path == "/v1/chat/completions" else 5, deadline=None,
                  derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
        def run(case):
            response = case.call(headers={"Authorization": f"Bearer {API_KEY}"}, timeout=60)
            assert response.status_code < 500, (case.body, response.text)
            if mode == GenerationMode.POSITIVE:  # a negative case may be refused by any documented 4xx
                case.validate_response(response)
            else:
                assert 400 <= response.status_code < 500, (case.body, response.text)
            checked.append(response.status_code)

        run()
    assert any(400 <= code < 500 for code in checked)
    if mode == GenerationMode.POSITIVE:
        assert any(code == 200 for code in checked)
