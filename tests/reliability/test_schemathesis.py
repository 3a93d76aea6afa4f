"""GET /openapi.json describes every HTTP route, and schemathesis, driving the served app from that document
with valid and invalid requests, finds no server error and no response that breaks the document.

schemathesis.specs.openapi.schemas is imported at the top although nothing names it: schemathesis imports it
lazily inside from_url, pytest rewrites it (schemathesis is a pytest plugin), and CPython 3.11.7's compile()
failed there with "AST constructor recursion depth mismatch" when that first import ran late in a long
session (after the transport ring). Imported at collection, it compiles on a shallow stack.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import schemathesis
import schemathesis.specs.openapi.schemas
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from quart import Quart
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from chatbot.api.openai_requests import MODEL_ID
from chatbot.api.routes import ROUTES, Route
from chatbot.app import create_app
from chatbot.providers.registry import Providers
from chatbot.stores.base import VectorStore
from chatbot.wiring import build_services
from tests.conftest import make_settings
from tests.serving import serve_app

# positive_data_acceptance ("schema-valid means accepted") is left out: some rules are not JSON Schema (a
# message of only spaces, a user message last, the model id, a supported file type); their 4xx are documented.
EXAMPLES = 25  # per operation and mode; ~20 operations x 2 modes -> about 1,000 requests
NOT_DOCUMENTED = {"/v1/ws"}  # the websocket: described under x-websocket, OpenAPI has no way to say it
RUN = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=20),
    derandomize=True,  # the same requests every run: a failure reproduces
    phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time (the failing case is printed whole)
    suppress_health_check=list(HealthCheck),
    database=None,
)


@pytest.fixture
async def documented(
    offline_providers: Providers, small_store: VectorStore
) -> AsyncIterator[tuple[str, Quart]]:
    """The offline app on our own store (schemathesis uploads and deletes documents)."""
    settings = make_settings(limits={"max_upload_bytes": 64 * 1024, "max_files_per_upload": 4})
    async with build_services(settings, providers=offline_providers, store=small_store) as svc:
        app = create_app(settings, services=svc)
        async with serve_app(app) as url:
            yield url, app


def openapi_path(rule: str) -> str:
    return re.sub(r"<(?:[a-z]+:)?([A-Za-z_]+)>", r"{\1}", rule)


async def fetch_document(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


def exercise(base_url: str) -> dict[str, list[str]]:
    """Run every operation through schemathesis (positive and negative data); return failures by operation."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    failures: dict[str, list[str]] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @RUN
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                response = case.call(base_url=base_url, timeout=15)
                case.validate_response(response, excluded_checks=[positive_data_acceptance])

            try:
                call()
            except (
                Unsatisfiable
            ):  # nothing to send in this mode (e.g. no invalid request exists for GET /healthz)
                continue
            except (Exception, BaseExceptionGroup) as exc:  # a failed check: go on, report every operation
                failures.setdefault(f"{operation.label} [{mode.value}]", []).append(str(exc)[:3000])
    return failures


class TestOpenAPI:
    async def test_every_http_route_is_documented(self, documented: tuple[str, Quart]) -> None:
        """Each route and method the app serves is in /openapi.json, and nothing else is."""
        url, app = documented
        async with httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/openapi.json")
        assert response.status_code == 200
        document = response.json()
        assert document["openapi"].startswith("3.1")
        served: set[tuple[str, str, str]] = set()
        for rule in app.url_map.iter_rules():
            path = openapi_path(rule.rule)
            if path in NOT_DOCUMENTED or getattr(rule, "websocket", False):
                continue
            methods = {m.lower() for m in rule.methods or () if m not in ("HEAD", "OPTIONS")}
            served |= {(path, m, rule.endpoint) for m in methods}
        listed = {
            (path, method, op["operationId"])
            for path, item in document["paths"].items()
            for method, op in item.items()
        }
        assert served == listed

    async def test_operations_carry_their_declared_role_and_errors(
        self, documented: tuple[str, Quart]
    ) -> None:
        """Each operation states the role its route declares (x-role); credentialed ones document 400, 401, 403
        and 429 and take a credential, public ones take none; every operation documents 400 (bad Host)."""
        url, app = documented
        document = await fetch_document(url)
        table: dict[str, Route] = app.extensions[ROUTES]
        for item in document["paths"].values():
            for op in item.values():
                decl = table[op["operationId"]]
                assert op["x-role"] == decl.role
                statuses = set(op["responses"])
                assert "400" in statuses, decl.endpoint
                if decl.public:
                    assert "security" not in op, decl.endpoint
                else:
                    assert {"400", "401", "403", "429"} <= statuses, decl.endpoint
                    assert {"bearer": []} in op["security"]
                for status in {str(s) for s in decl.errors}:
                    assert status in statuses, (decl.endpoint, status)
        assert document["x-websocket"]["x-role"] == "chat"

    async def test_responses_carry_their_real_constraints(self, documented: tuple[str, Quart]) -> None:
        """Response schemas say what the server guarantees: lengths, counts, the served model id, no extra
        fields; the completions request advertises the one model id."""
        schemas = (await fetch_document(documented[0]))["components"]["schemas"]
        assert schemas["ModelListDoc"]["properties"]["data"]["minItems"] == 1
        assert schemas["ModelListDoc"]["properties"]["data"]["maxItems"] == 1
        assert schemas["ModelDoc"]["properties"]["id"]["const"] == MODEL_ID
        assert schemas["ChatCompletion"]["properties"]["choices"]["minItems"] == 1
        assert schemas["ChatCompletionBody"]["properties"]["model"]["enum"] == [MODEL_ID]
        assert schemas["ChatAnswer"]["properties"]["message_id"]["minLength"] == 1
        assert schemas["ErrorDetail"]["properties"]["request_id"]["minLength"] == 1
        assert schemas["ErrorDetail"]["properties"]["code"]["pattern"] == "^[a-z0-9_]+$"
        assert schemas["IngestResults"]["properties"]["documents"]["minItems"] == 1
        assert schemas["DeleteResult"]["properties"]["deleted_chunks"]["minimum"] == 1
        assert schemas["SourceDoc"]["properties"]["n"]["minimum"] == 1
        for name in ("ChatAnswer", "ErrorBody", "ModelDoc", "LoopLag", "WidgetToken", "Ready"):
            assert schemas[name]["additionalProperties"] is False, name

    async def test_error_body_is_the_documented_one(self, documented: tuple[str, Quart]) -> None:
        """The native error body in the document names code, message and request_id."""
        async with httpx.AsyncClient(base_url=documented[0]) as client:
            document = (await client.get("/openapi.json")).json()
        error = document["components"]["schemas"]["ErrorDetail"]
        assert {"code", "message", "request_id"} <= set(error["required"])

    @pytest.mark.timeout(400)
    async def test_schemathesis_finds_no_server_error_and_no_schema_violation(
        self, documented: tuple[str, Quart]
    ) -> None:
        """Valid and invalid requests on every operation: no 5xx; statuses, headers, bodies as documented."""
        failures = await asyncio.to_thread(exercise, documented[0])
        assert not failures, "\n\n".join(f"{op}:\n{msgs[0]}" for op, msgs in failures.items())
