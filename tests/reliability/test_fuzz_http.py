"""Property-based: hostile request bodies and uploads never get a 5xx and never leave a half-written document;
hostile settings values either load or raise one readable ConfigError."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import zipfile
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any, Literal, get_args, get_origin

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from chatbot.errors import ConfigError
from chatbot.providers.registry import Providers
from chatbot.settings import Settings, load_settings
from chatbot.stores.base import VectorStore
from chatbot.wiring import Services
from tests.conftest import make_settings
from tests.reliability.conftest import serve_services

HTTP_FUZZ = settings(
    max_examples=60,
    deadline=timedelta(seconds=10),
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
UPLOAD_FUZZ = settings(
    max_examples=40,
    deadline=timedelta(seconds=20),
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
SETTINGS_FUZZ = settings(
    max_examples=300, deadline=timedelta(seconds=2), suppress_health_check=[HealthCheck.too_slow]
)
TENANT = "fuzz-http"
MAX_FRAME = 8192
MAX_UPLOAD = 256 * 1024

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
texts = st.text(max_size=60) | st.sampled_from(["", " ", "\x00", "How do I stop an answer?", "x" * 5000])
roles = st.sampled_from(["user", "assistant", "system", "developer", "tool"]) | st.text(max_size=8)
openai_messages = st.lists(
    st.fixed_dictionaries(
        {"role": roles},
        optional={
            "content": texts
            | json_values
            | st.lists(
                st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": texts}),
                max_size=3,
            ),
            "name": json_values,
        },
    ),
    max_size=5,
)
ui_messages = st.lists(
    st.fixed_dictionaries(
        {"role": roles},
        optional={
            "parts": st.lists(
                st.fixed_dictionaries(
                    {"type": st.sampled_from(["text", "file", "reasoning"]) | texts},
                    optional={"text": texts | json_values},
                ),
                max_size=3,
            )
            | json_values,
            "content": texts | json_values,
            "id": json_values,
        },
    ),
    max_size=5,
)
ROUTES: dict[str, Any] = {
    "/v1/chat": st.fixed_dictionaries(
        {},
        optional={
            "message": texts | json_values,
            "conversation_id": texts | json_values,
            "stream": json_values,
        },
    ),
    "/v1/chat/completions": st.fixed_dictionaries(
        {},
        optional={
            "model": st.sampled_from(["chatbot", "gpt-4o"]) | json_values,
            "messages": openai_messages | json_values,
            "stream": st.booleans() | json_values,
            "max_tokens": st.integers(-5, 10**12) | json_values,
            "temperature": st.floats(allow_nan=False) | json_values,
            "n": st.integers(-2, 3),
            "stream_options": st.fixed_dictionaries({}, optional={"include_usage": json_values})
            | json_values,
        },
    ),
    "/v1/ui/chat": st.fixed_dictionaries(
        {}, optional={"messages": ui_messages | json_values, "id": json_values}
    ),
    "/v1/widget/tokens": st.fixed_dictionaries(
        {},
        optional={
            "origin": texts | st.sampled_from(["https://a.example", "http://x:99999"]),
            "ttl_seconds": st.integers(-5, 10**9) | json_values,
        },
    ),
}
bodies = st.one_of(
    st.sampled_from(list(ROUTES)).flatmap(
        lambda route: st.tuples(st.just(route), ROUTES[route].map(json.dumps))
    ),
    st.tuples(st.sampled_from(list(ROUTES)), json_values.map(json.dumps)),
    st.tuples(st.sampled_from(list(ROUTES)), st.binary(max_size=200)),
    st.tuples(st.sampled_from(list(ROUTES)), st.integers(100, 3000).map(lambda n: "[" * n + "]" * n)),
)
path_ids = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40).filter(
    lambda s: "/" not in s and s not in (".", "..")
)


def error_code(route: str, body: Any) -> str:
    """Native errors are {"error": {"code", "message", "request_id"}}; OpenAI routes use OpenAI's shape."""
    assert isinstance(body, dict), body
    assert isinstance(body.get("error"), dict), body
    error = body["error"]
    keys = (
        {"message", "type", "code", "param"}
        if route.startswith(("/v1/chat/completions", "/v1/models"))
        else {"code", "message", "request_id"}
    )
    assert keys <= set(error), error
    return str(error["code"])


@pytest.fixture
async def fuzz_http(
    offline_providers: Providers, small_store: VectorStore
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    """An httpx client against the offline app (small body and upload limits), tenant fuzz-http."""
    limits = {"max_frame_bytes": MAX_FRAME, "max_upload_bytes": MAX_UPLOAD, "max_files_per_upload": 4}
    headers = {"X-Chatbot-Tenant": TENANT}
    async with (
        serve_services(make_settings(limits=limits), offline_providers, small_store) as (url, svc),
        httpx.AsyncClient(base_url=url, headers=headers, timeout=20) as client,
    ):
        yield client, svc


class TestHostileBodies:
    @HTTP_FUZZ
    @given(
        case=bodies,
        content_type=st.sampled_from(["application/json", "text/plain", "", "multipart/form-data"]),
    )
    async def test_no_body_gets_a_5xx(
        self, fuzz_http: tuple[httpx.AsyncClient, Services], case: tuple[str, Any], content_type: str
    ) -> None:
        """Any body on any JSON route: a 2xx, or a 4xx with the route's error shape; never a 5xx."""
        client, _ = fuzz_http
        route, body = case
        headers = {"Content-Type": content_type} if content_type else {}
        response = await client.post(route, content=body, headers=headers)
        assert response.status_code < 500, (route, body, response.text[:300])
        if response.status_code >= 400:
            error_code(route, response.json())

    @HTTP_FUZZ
    @given(
        ident=path_ids,
        method_path=st.sampled_from(
            [
                ("POST", "/v1/chat/{}/stop"),
                ("GET", "/v1/chat/{}/events"),
                ("GET", "/v1/conversations/{}"),
                ("DELETE", "/v1/documents/{}"),
                ("GET", "/v1/models/{}"),
            ]
        ),
        after=st.none() | st.text(max_size=12),
    )
    async def test_no_path_id_gets_a_5xx(
        self,
        fuzz_http: tuple[httpx.AsyncClient, Services],
        ident: str,
        method_path: tuple[str, str],
        after: str | None,
    ) -> None:
        """Any id in a path (and any Last-Event-ID): a 4xx with the error shape; never a 5xx."""
        client, _ = fuzz_http
        method, template = method_path
        headers = (
            {"Last-Event-ID": after} if after is not None and after.isprintable() and after.isascii() else {}
        )
        response = await client.request(
            method, template.format(httpx.URL("/" + ident).raw_path.decode()[1:]), headers=headers
        )
        assert 400 <= response.status_code < 500, (
            method,
            template,
            ident,
            response.status_code,
            response.text[:200],
        )
        error_code(template, response.json())

    @pytest.mark.parametrize("route", list(ROUTES))
    async def test_deep_nesting_is_a_400(
        self, fuzz_http: tuple[httpx.AsyncClient, Services], route: str
    ) -> None:
        """A body of 4,000 nested arrays is invalid_json (400), not a 500."""
        client, _ = fuzz_http
        response = await client.post(route, content="[" * 4000 + "]" * 4000)
        assert response.status_code == 400
        assert error_code(route, response.json()) == "invalid_json"


def gzip_of_zeros(size: int) -> bytes:
    return gzip.compress(b"\0" * size, compresslevel=9)


def zip_of_zeros(size: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.txt", b"\0" * size)
    return out.getvalue()


def minimal_pdf() -> bytes:
    from tests.unit.test_loaders_hypothesis import tiny_pdf

    return tiny_pdf()


NAMED_FILES = {
    "truncated PDF": ("report.pdf", lambda: minimal_pdf()[: len(minimal_pdf()) // 2]),
    "PDF header only": ("empty.pdf", lambda: b"%PDF-1.7\n"),
    "wrong extension": ("notes.docx", lambda: b"plain words"),
    "no extension": ("README", lambda: b"plain words"),
    "gzip bomb renamed .txt": ("bomb.txt", lambda: gzip_of_zeros(50 * 1024 * 1024)),
    "zip bomb renamed .md": ("bomb.md", lambda: zip_of_zeros(50 * 1024 * 1024)),
    "huge line": ("line.txt", lambda: b"word " * 12_000),
    "invalid UTF-8": ("latin.txt", lambda: "caf\u00e9 cr\u00e8me ".encode("latin-1") * 200 + b"\xff\xfe\xc3"),
    "NUL bytes": ("nul.txt", lambda: b"text\x00" * 1000),
    "over the upload limit": ("big.txt", lambda: b"a " * (MAX_UPLOAD // 2 + 10)),
    "empty": ("empty.md", lambda: b""),
    "HTML tag soup": ("soup.html", lambda: b"<div>" * 20_000),
}
file_names = st.one_of(
    st.sampled_from(
        [
            "a.md",
            "b.txt",
            "c.html",
            "d.pdf",
            "e.exe",
            "f",
            ".md",
            "g.MD",
            "..txt",
            "dir/h.md",
            "x" * 300 + ".txt",
        ]
    ),
    st.text(min_size=1, max_size=30).map(lambda s: s + ".txt"),
)
file_bodies = st.binary(max_size=4000) | st.text(max_size=4000).map(
    lambda s: s.encode("utf-8", "surrogatepass")
)


async def documents(client: httpx.AsyncClient) -> dict[str, int]:
    response = await client.get("/v1/documents")
    assert response.status_code == 200
    return {d["doc_id"]: d["chunks"] for d in response.json()["documents"]}


async def upload_and_check(client: httpx.AsyncClient, files: list[tuple[str, bytes]]) -> int:
    """Upload; never a 5xx; every document the server says it stored is listed whole, and a refused request
    leaves the listing as it was (except the files it stored before refusing a later one)."""
    before = await documents(client)
    response = await client.post("/v1/documents", files=[("file", (name, data)) for name, data in files])
    assert response.status_code < 500, (files[0][0], response.status_code, response.text[:300])
    after = await documents(client)
    if response.status_code == 201:
        for result in response.json()["documents"]:
            assert after.get(result["doc_id"]) == result["chunks"], (result, after)
    else:
        error_code("/v1/documents", response.json())
        changed = {k: v for k, v in after.items() if before.get(k) != v}
        for doc_id, chunks in changed.items():  # documents stored before a later file was refused: whole
            assert chunks > 0, (doc_id, chunks)
    return response.status_code


class TestHostileUploads:
    @pytest.mark.parametrize("case", list(NAMED_FILES))
    async def test_named_hostile_file_is_a_4xx_or_a_whole_document(
        self, fuzz_http: tuple[httpx.AsyncClient, Services], case: str
    ) -> None:
        """Truncated PDFs, wrong extensions, compressed bombs, huge lines, bad UTF-8: 4xx or stored whole."""
        client, _ = fuzz_http
        name, make = NAMED_FILES[case]
        status = await upload_and_check(client, [(name, make())])
        assert status in (201, 400, 413, 415, 422)

    @UPLOAD_FUZZ
    @given(files=st.lists(st.tuples(file_names, file_bodies), min_size=1, max_size=3))
    async def test_any_upload_is_a_4xx_or_whole_documents(
        self, fuzz_http: tuple[httpx.AsyncClient, Services], files: list[tuple[str, bytes]]
    ) -> None:
        """Random names and bytes, one to three files per request: no 5xx, no half-written document."""
        client, _ = fuzz_http
        await upload_and_check(client, files)

    async def test_too_many_files_is_a_400_and_stores_nothing(
        self, fuzz_http: tuple[httpx.AsyncClient, Services]
    ) -> None:
        """More files than limits.max_files_per_upload: 400 too_many_files, nothing stored."""
        client, _ = fuzz_http
        before = await documents(client)
        response = await client.post(
            "/v1/documents", files=[("file", (f"many{i}.md", b"# Many\n\ntext")) for i in range(5)]
        )
        assert response.status_code == 400
        assert error_code("/v1/documents", response.json()) == "too_many_files"
        assert await documents(client) == before


# -- settings ------------------------------------------------------------------------------------------


def scalar_fields() -> list[tuple[str, str, Any]]:
    """(env var, nested path, annotation) of every numeric, boolean and enum setting."""
    out: list[tuple[str, str, Any]] = []

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}__")
                continue
            args = [a for a in get_args(ann) if a is not type(None)] or [ann]
            if get_origin(ann) in (Literal, list) or all(a in (int, float, bool) for a in args):
                out.append((f"CHATBOT_{prefix}{name}".upper(), prefix + name, ann))

    walk(Settings, "")
    return out


SCALARS = scalar_fields()
LIST_VARS = {var for var, _, ann in SCALARS if get_origin(ann) is list}
env_values = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats().map(str),
    st.sampled_from(
        [
            "",
            " ",
            "0",
            "-1",
            "1e309",
            "nan",
            "inf",
            "-inf",
            "true",
            "false",
            "yes",
            "off",
            "null",
            "[]",
            "{}",
            "[1,",
            "auto",
            "dense",
            "prod",
            "openai",
        ]
    ),
    st.text(max_size=20).filter(lambda s: "\x00" not in s),
)


@contextlib.contextmanager
def environment(values: dict[str, str]) -> Iterator[None]:
    """Set CHATBOT_* variables for the block, restoring the previous environment after."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class TestHostileSettings:
    def test_the_walk_finds_the_fields(self) -> None:
        """The property below covers numeric, enum and list settings of every section."""
        names = {var for var, _, _ in SCALARS}
        assert {
            "CHATBOT_LIMITS__MAX_FRAME_BYTES",
            "CHATBOT_RETRIEVAL__MODE",
            "CHATBOT_SERVER__ALLOWED_ORIGINS",
        } <= names

    @SETTINGS_FUZZ
    @given(choices=st.lists(st.tuples(st.sampled_from(SCALARS), env_values), min_size=1, max_size=3))
    def test_env_values_load_or_raise_one_readable_config_error(
        self, choices: list[tuple[tuple[str, str, Any], str]]
    ) -> None:
        """Numeric/enum/list values: Settings, or a ConfigError naming the variable; nothing else."""
        values = {var: value for (var, _, _), value in choices}
        with environment(values):
            try:
                load_settings(_env_file=None)
            except ConfigError as exc:
                message = exc.message
                assert message.startswith("Invalid settings:"), message
                assert "errors.pydantic.dev" not in message, message
                assert "Traceback" not in message, message
                bad = [var for var in values if not _field_accepts(var, values[var])]
                unparsable = [var for var in bad if var in LIST_VARS]  # reported first, on their own
                named = [var for var in (unparsable or bad) if var in message]
                assert named if unparsable else len(named) == len(bad), (bad, message)


def _field_accepts(var: str, value: str) -> bool:
    """Whether the one field behind `var` accepts `value` alone (model-level rules aside)."""
    with environment({var: value}):
        try:
            Settings(_env_file=None)  # type: ignore[call-arg]
        except ValidationError as exc:
            return not any(
                "__".join(str(p) for p in e["loc"]).upper() in var for e in exc.errors() if e["loc"]
            )
        except ValueError:  # pydantic-settings could not even parse it (e.g. JSON for a list)
            return False
    return True
