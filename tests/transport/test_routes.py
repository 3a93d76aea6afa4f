"""Route declarations are the single source of truth: every endpoint has one, start-up refuses a route without
one, the role/model facts reach auth and /openapi.json, 405s say what is allowed, and real responses match the
declared response models."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from quart import Blueprint, Quart

from chatbot.api import responses
from chatbot.api.openai_requests import MODEL_ID, ChatCompletionBody
from chatbot.api.routes import ROUTES, Route, hook_rate_limits, route, route_table
from chatbot.app import create_app
from chatbot.errors import ConfigError
from tests.conftest import make_settings


def declared_app() -> Quart:
    return create_app(make_settings())


class TestDeclarations:
    def test_every_endpoint_of_the_url_map_is_declared(self) -> None:
        """Each rule of the app's URL map (HTTP and websocket) has a declaration with a known role."""
        app = declared_app()
        table: dict[str, Route] = app.extensions[ROUTES]
        rules = list(app.url_map.iter_rules())
        assert {r.endpoint for r in rules} == set(table)
        for rule in rules:
            decl = table[rule.endpoint]
            assert decl.role in ("public", "chat", "ingest", "admin"), rule.endpoint
            assert decl.path == rule.rule
            assert decl.summary
        assert "static" not in table  # the app's static route is off: the widget serves its own files

    def test_roles_of_sensitive_routes(self) -> None:
        """Operations are admin, documents are ingest, answers are chat, health and the widget files public."""
        table: dict[str, Route] = declared_app().extensions[ROUTES]
        roles = {endpoint: decl.role for endpoint, decl in table.items()}
        assert roles["debug.looplag_reset"] == roles["debug.looplag"] == roles["metrics.metrics"] == "admin"
        assert {
            roles[e]
            for e in (
                "ingest.upload_documents",
                "documents.delete_document",
                "documents.list_documents",
                "ingest.sync",
                "ingest.job_status",
                "ingest.job_events",
                "ingest.job_cancel",
            )
        } == {"ingest"}
        assert roles["ws.ws_endpoint"] == roles["http.chat"] == "chat"
        assert {e for e, r in roles.items() if r == "public"} == {
            "http.healthz",
            "http.readyz",
            "widget.widget_js",
            "widget.demo_page",
            "openapi.openapi",
        }

    def test_routes_that_start_answers_are_admitted_by_the_service(self) -> None:
        """POST /v1/chat, /v1/chat/completions, /v1/messages, /v1/ui/chat and the websocket declare
        admission="service"."""
        table: dict[str, Route] = declared_app().extensions[ROUTES]
        service = {(d.method, d.path) for d in table.values() if d.admission == "service"}
        assert service == {
            ("POST", "/v1/chat"),
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/messages"),
            ("POST", "/v1/ui/chat"),
            ("WEBSOCKET", "/v1/ws"),
        }

    def test_the_hook_rate_limits_exactly_the_hook_routes(self) -> None:
        """The hook counts credentialed routes that start no answer; the chat service counts the others."""
        table: dict[str, Route] = declared_app().extensions[ROUTES]
        for decl in table.values():
            expected = not decl.public and decl.admission != "service"
            assert hook_rate_limits(decl) is expected, decl.endpoint


class TestFailClosed:
    def test_an_undeclared_route_stops_start_up(self) -> None:
        """route_table (what create_app runs) raises ConfigError naming an endpoint mounted without route()."""
        app = declared_app()

        async def sneaky() -> Any:
            return {}

        app.add_url_rule("/v1/sneaky", "sneaky", sneaky)
        with pytest.raises(ConfigError, match="sneaky"):
            route_table(app)

    def test_a_route_mounted_other_than_declared_stops_start_up(self) -> None:
        """A declared view also mounted at another path (a second, plain decorator) is refused."""
        bp = Blueprint("extra", __name__)

        @bp.get("/v1/elsewhere")
        @route(bp, "GET", "/v1/declared", role="admin", summary="Declared here.")
        async def twice() -> Any:
            return {}

        app = Quart(__name__, static_folder=None)
        app.register_blueprint(bp)
        with pytest.raises(ConfigError, match="mounted other than declared"):
            route_table(app)

    def test_an_unknown_role_is_refused_at_declaration(self) -> None:
        """role must be public, chat, ingest or admin (a typo is not a new role)."""
        with pytest.raises(ConfigError, match="role"):
            route(Blueprint("typo", __name__), "GET", "/x", role="admn", summary="x")  # type: ignore[arg-type]

    def test_the_default_app_has_no_static_route(self) -> None:
        """No /static/<path> rule: it would serve the package's static directory as a second endpoint."""
        assert all(not r.rule.startswith("/static") for r in declared_app().url_map.iter_rules())


class TestMethodNotAllowed:
    @pytest.mark.parametrize(
        ("method", "path", "allow"),
        [
            ("GET", "/v1/chat", "OPTIONS, POST"),
            ("PUT", "/v1/chat", "OPTIONS, POST"),
            ("DELETE", "/healthz", "GET, HEAD, OPTIONS"),
            ("POST", "/v1/models", "GET, HEAD, OPTIONS"),
            ("GET", "/v1/chat/completions", "OPTIONS, POST"),
            ("PATCH", "/v1/documents", "GET, HEAD, OPTIONS, POST"),
            ("GET", "/debug/looplag/reset", "OPTIONS, POST"),
        ],
    )
    async def test_405_carries_allow_and_the_json_error(
        self, served: str, method: str, path: str, allow: str
    ) -> None:
        """A wrong method: 405 method_not_allowed in our error body, with the route's methods in Allow."""
        async with httpx.AsyncClient(base_url=served) as client:
            r = await client.request(method, path)
        assert r.status_code == 405
        assert r.headers["allow"] == allow
        error = r.json()["error"]
        assert error["code"] == "method_not_allowed"
        assert error["request_id"]


class TestResponsesMatchTheirModels:
    async def test_sample_responses_validate_against_the_declared_models(self, served: str) -> None:
        """Real responses of several routes validate against the response model their route declares."""
        table: dict[str, Route] = declared_app().extensions[ROUTES]
        models = {d.endpoint: d.response for d in table.values()}
        async with httpx.AsyncClient(base_url=served, timeout=30) as client:
            samples = {
                "http.healthz": await client.get("/healthz"),
                "http.readyz": await client.get("/readyz"),
                "http.chat": await client.post("/v1/chat", json={"message": "How do I stop an answer?"}),
                "openai_compat.list_models": await client.get("/v1/models"),
                "openai_compat.get_model": await client.get(f"/v1/models/{MODEL_ID}"),
                "openai_compat.chat_completions": await client.post(
                    "/v1/chat/completions",
                    json={"model": MODEL_ID, "messages": [{"role": "user", "content": "How do I stop?"}]},
                ),
                "anthropic_compat.create_message": await client.post(
                    "/v1/messages",
                    json={
                        "model": MODEL_ID,
                        "max_tokens": 100,
                        "messages": [{"role": "user", "content": "How do I stop?"}],
                    },
                ),
                "debug.looplag": await client.get("/debug/looplag"),
                "widget.create_widget_token": await client.post(
                    "/v1/widget/tokens", json={"origin": "https://site.example"}
                ),
                "documents.list_documents": await client.get("/v1/documents"),
            }
            answer = samples["http.chat"].json()
            samples["http.chat_stop"] = await client.post(f"/v1/chat/{answer['message_id']}/stop")
            samples["http.conversation"] = await client.get(f"/v1/conversations/{answer['conversation_id']}")
        for endpoint, response in samples.items():
            model = models[endpoint]
            assert isinstance(model, type), endpoint
            assert issubclass(model, BaseModel), endpoint
            assert response.status_code == 200, (endpoint, response.text)
            model.model_validate(response.json())

    def test_the_model_id_is_the_one_served(self) -> None:
        """The documented model id enums are the served model id (requests, model objects, completions)."""
        assert responses.ModelDoc.model_json_schema()["properties"]["id"]["const"] == MODEL_ID
        assert responses.ChatCompletion.model_json_schema()["properties"]["model"]["const"] == MODEL_ID
        assert ChatCompletionBody.model_json_schema()["properties"]["model"]["enum"] == [MODEL_ID]
