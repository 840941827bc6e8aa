"""Property-based fuzzing of every operation in the served OpenAPI document (schemathesis, with an admin key), with
valid and invalid data: whatever it sends, the API answers without a 5xx. Bounded to a few examples per operation
and mode to stay fast."""

from __future__ import annotations

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from tests.services import ApiServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = 5


def test_no_generated_request_gets_a_server_error(api_server: ApiServer) -> None:
    schema = schemathesis.openapi.from_url(f"{api_server.url}/openapi.json", timeout=30)
    failures: list[str] = []
    operations = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations += 1
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
                          suppress_health_check=list(HealthCheck), database=None)
                def fuzz(case: schemathesis.Case) -> None:
                    response = case.call(base_url=api_server.url, session=session,
                                         headers=api_server.headers("admin"), timeout=60)
                    if response.status_code >= 500:
                        failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                        f"{response.text[:300]}")

                try:
                    fuzz()
                except Unsatisfiable:  # nothing to make invalid (e.g. no parameters, no body)
                    assert mode is GenerationMode.NEGATIVE

    assert operations >= 16
    assert not failures, "\n".join(failures[:20]) + "\n" + api_server.log_tail()
