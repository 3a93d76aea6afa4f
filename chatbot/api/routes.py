"""Routes declare themselves: one decorator, where the route is defined, states its method and path, the role
a caller needs, its request and response models, its documented errors and who admits it.

    @route(bp, "POST", "/v1/chat", role="chat", body=ChatBody, response=ChatAnswer, stream=NATIVE_EVENTS,
           errors=(404, 413, 422), admission="service", summary="Ask: one JSON answer, or server-sent events.")
    async def chat() -> Any: ...

The decorator registers the view on its blueprint and attaches the declaration to it. create_app reads the
declarations back through the app's URL map (route_table): an endpoint without one stops start-up (fail
closed), so auth (api/auth.py) and /openapi.json (api/openapi.py) always find the route's role and models and
there is no second table to forget. At request time an endpoint missing from the table is refused.

Why our own decorator rather than quart-schema: measured in the commit that introduced this module. In short,
quart-schema has no notion of roles (we would still need this declaration, plus 2-4 of its decorators per
route), it reads JSON bodies with request.get_json() before our per-route size limit, and it answered a small
POST about 40% slower (~95 us more per request) than the same route validating with our models.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel
from quart import Blueprint, Quart, current_app

from chatbot.errors import ConfigError

Role = Literal["public", "chat", "ingest", "admin"]
"""public: anyone (no credential read); chat / ingest / admin: a credential holding that role (admin holds
all three; open access, while no API keys are configured, holds all three too)."""
ROLES: frozenset[str] = frozenset(get_args(Role))
Method = Literal["GET", "POST", "DELETE", "WEBSOCKET"]
Admission = Literal["hook", "service", "none"]
"""hook: the app's before_request hook applies the per-caller rate limit; service: the chat service admits the
request (rate limit, concurrency, budget) when it starts an answer; none: no rate limit (public routes)."""
ErrorShape = Literal["native", "openai", "anthropic"]
BodyLimit = Literal["frame", "chat", "upload"]
"""The most a route reads of a request body, named by the setting it comes from: frame (limits.max_frame_bytes,
JSON bodies), chat (limits.max_chat_body_bytes, bodies that carry a history), upload (limits.max_upload_bytes
times max_files_per_upload, plus max_frame_bytes for the multipart framing). api/bodies.py enforces it while the
body arrives, with or without Content-Length."""

ROUTES = "chatbot.routes"  # app.extensions key of the endpoint -> Route table
_ATTRIBUTE = "__chatbot_route__"
View = TypeVar("View", bound=Callable[..., Any])


@dataclass(frozen=True, slots=True)
class Param:
    """A documented query, header or path parameter (path parameters default to a non-empty string)."""

    name: str
    where: Literal["query", "header", "path"]
    schema: Mapping[str, Any]
    description: str = ""


@dataclass(frozen=True, slots=True)
class EventStream:
    """A text/event-stream response; its schema describes one event (as schemathesis and OpenAPI 3.2 read it)."""

    description: str
    events: tuple[str, ...] | None = None  # the `event:` names, when the stream sends them
    with_ids: bool = False  # each event carries `id: <seq>` (resumable with Last-Event-ID)


@dataclass(frozen=True, slots=True)
class Route:
    """What one endpoint is: read by auth, the rate-limit hook and the OpenAPI document."""

    method: Method
    path: str
    role: Role
    summary: str
    body: type[BaseModel] | None = None
    body_media_type: str = "application/json"
    response: type[BaseModel] | str | None = None  # a model (JSON), or the media type of a text body
    status: int = 200
    stream: EventStream | None = None  # the response as server-sent events (alone when response is None)
    other: Mapping[int, type[BaseModel] | None] = field(default_factory=dict)  # 304 (no body), 503 (Ready)
    errors: tuple[int, ...] = ()
    params: tuple[Param, ...] = ()
    admission: Admission = "hook"
    error_shape: ErrorShape = "native"
    max_body: BodyLimit = "frame"
    endpoint: str = ""  # filled in by route_table()

    @property
    def public(self) -> bool:
        return self.role == "public"


def route(
    bp: Blueprint,
    method: Method,
    path: str,
    *,
    role: Role,
    summary: str,
    body: type[BaseModel] | None = None,
    body_media_type: str = "application/json",
    response: type[BaseModel] | str | None = None,
    status: int = 200,
    stream: EventStream | None = None,
    other: Mapping[int, type[BaseModel] | None] | None = None,
    errors: tuple[int, ...] = (),
    params: tuple[Param, ...] = (),
    admission: Admission | None = None,
    error_shape: ErrorShape = "native",
    max_body: BodyLimit | None = None,
) -> Callable[[View], View]:
    """Register the view on `bp` for `method` `path` and declare it (see the module docstring).
    `admission` defaults to "hook" for credentialed routes and "none" for public ones; `max_body` to "upload"
    for multipart bodies and "frame" for the rest."""
    if role not in ROLES:
        raise ConfigError(f"{method} {path}: role {role!r} is not one of {sorted(ROLES)}.")
    declared = Route(
        method=method,
        path=path,
        role=role,
        summary=summary,
        body=body,
        body_media_type=body_media_type,
        response=response,
        status=status,
        stream=stream,
        other=dict(other or {}),
        errors=errors,
        params=params,
        admission=admission or ("none" if role == "public" else "hook"),
        error_shape=error_shape,
        max_body=max_body or ("upload" if body_media_type == "multipart/form-data" else "frame"),
    )

    def register(view: View) -> View:
        setattr(view, _ATTRIBUTE, declared)
        if method == "WEBSOCKET":
            bp.websocket(path)(view)
        else:
            bp.route(path, methods=[method])(view)
        return view

    return register


def route_table(app: Quart) -> dict[str, Route]:
    """Every endpoint of `app` with its declaration. ConfigError, naming them, when an endpoint has none or
    one that does not match how it is mounted: the app does not start with an undeclared route."""
    table: dict[str, Route] = {}
    problems: list[str] = []
    for rule in app.url_map.iter_rules():
        declared = getattr(app.view_functions.get(rule.endpoint), _ATTRIBUTE, None)
        if not isinstance(declared, Route):
            problems.append(f"{rule.endpoint} ({rule.rule}) declares no role")
            continue
        methods = {"WEBSOCKET"} if getattr(rule, "websocket", False) else set(rule.methods or ())
        if rule.rule != declared.path or declared.method not in methods or rule.endpoint in table:
            problems.append(f"{rule.endpoint} ({rule.rule}) is mounted other than declared")
            continue
        table[rule.endpoint] = replace(declared, endpoint=rule.endpoint)
    if problems:
        raise ConfigError(
            "Every route must be declared with chatbot.api.routes.route(...): " + "; ".join(sorted(problems))
        )
    return table


def declared(endpoint: str | None) -> Route | None:
    """The current app's declaration of `endpoint`; None for an unknown endpoint (callers refuse it)."""
    if endpoint is None:
        return None
    table: dict[str, Route] = current_app.extensions.get(ROUTES, {})
    return table.get(endpoint)


def hook_rate_limits(decl: Route) -> bool:
    """Whether the app's before_request hook applies the per-caller rate limit to this route: routes declared
    admission="service" start answers, and the chat service counts them in its one admission order."""
    return decl.admission == "hook"
