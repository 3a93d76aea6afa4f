"""docker-compose.yml, Dockerfile and deploy/nginx.conf, checked offline.

No Docker engine runs here, so instead of `docker compose config` the compose file is validated against the
vendored Compose Specification schema (tests/fixtures/compose-spec.json), its ${VAR} interpolation is done by
a small interpreter of compose's rules, and the app's environment is loaded through chatbot.settings as the
container would load it."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml
from pydantic import BaseModel, SecretStr

from chatbot.errors import ConfigError
from chatbot.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
NGINX = ROOT / "deploy" / "nginx.conf"
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"
SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"
CORE_SERVICES = ("app", "qdrant", "redis")

# Placeholder values for the required host variables (long enough for the prod secret rules).
HOST_ENV = {
    "CHATBOT_AUTH__TOKEN_SECRET": "t" * 48,
    "QDRANT_API_KEY": "q" * 40,
    "CHATBOT_AUTH__API_KEYS": '[{"id": "site", "sha256": "'
    + "0" * 64
    + '", "tenant": "acme", "roles": ["chat"]}]',
}


# -- helpers ----------------------------------------------------------------------------------------------


class MissingVariable(Exception):
    """A ${VAR:?message} (or ${VAR?message}) whose variable is unset: compose refuses to start."""


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["name"] or match["bare"]
        op, arg, value = match["op"], match["arg"] or "", env.get(name)
        missing = value is None if op in ("-", "?") else not value
        if op in (":?", "?") and missing:
            raise MissingVariable(f"{name}: {arg}")
        if op in (":-", "-") and missing:
            return arg
        return value or ""

    return _INTERPOLATION.sub(replace, text)


def walk_strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from walk_strings(key)
            yield from walk_strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk_strings(item)


def settings_env_names(model: type[BaseModel] = Settings, prefix: str = "CHATBOT_") -> dict[str, Any]:
    """Every variable chatbot.settings reads (CHATBOT_ + nested names joined with __) -> its type."""
    names: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        name = prefix + field_name.upper()
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names.update(settings_env_names(annotation, name + "__"))
        else:
            names[name] = annotation
    return names


def is_secret(annotation: Any) -> bool:
    return annotation is SecretStr or SecretStr in getattr(annotation, "__args__", ())


def referenced_variable(value: str) -> str | None:
    match = re.fullmatch(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-?][^}]*)?\}", value)
    return match[1] if match else None


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    with COMPOSE.open() as f:
        loaded: dict[str, Any] = yaml.safe_load(f)
    return loaded


@pytest.fixture(scope="module")
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA.read_text())
    return loaded


@pytest.fixture
def app_env(compose: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = compose["services"]["app"]["environment"]
    return env


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean process environment: no CHATBOT_/provider variables from the machine running the tests."""
    for name in list(os.environ):
        if name.startswith(("CHATBOT_", "OPENAI_", "COHERE_", "CO_API_KEY")):
            monkeypatch.delenv(name)


def load_container_settings(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_settings()


# -- the compose file -------------------------------------------------------------------------------------


class TestComposeSchema:
    def test_vendored_schema_is_the_recorded_file(self) -> None:
        """The vendored schema is byte-identical to the one the NOTICE names (docker-compose 1.29.2 wheel)."""
        assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256

    def test_schema_is_a_valid_json_schema(self, schema: dict[str, Any]) -> None:
        """The schema itself is well-formed draft 2019-09."""
        jsonschema.Draft201909Validator.check_schema(schema)

    def test_compose_file_matches_the_compose_specification(
        self, compose: dict[str, Any], schema: dict[str, Any]
    ) -> None:
        """docker-compose.yml validates against the Compose Specification schema."""
        errors = [
            f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            for e in jsonschema.Draft201909Validator(schema).iter_errors(compose)
        ]
        assert errors == []

    def test_schema_rejects_a_broken_service(self, compose: dict[str, Any], schema: dict[str, Any]) -> None:
        """Validation is not vacuous: an unknown service key and a bad depends_on condition are refused."""
        broken = json.loads(json.dumps(compose))
        broken["services"]["app"]["helthcheck"] = {}
        broken["services"]["app"]["depends_on"]["qdrant"]["condition"] = "service_ready"
        assert not jsonschema.Draft201909Validator(schema).is_valid(broken)

    def test_whole_file_interpolates_with_the_required_variables(self, compose: dict[str, Any]) -> None:
        """With the required host variables set, every string interpolates (no stray `$`)."""
        for text in walk_strings(compose):
            interpolate(text, HOST_ENV)


class TestSecrets:
    def test_required_secrets_fail_fast_when_unset(self, compose: dict[str, Any]) -> None:
        """With no host variables, interpolation stops on each required secret with its message."""
        missing = set()
        for text in walk_strings(compose):
            try:
                interpolate(text, {})
            except MissingVariable as exc:
                missing.add(str(exc).split(":")[0])
        assert missing == set(HOST_ENV)

    def test_secret_settings_are_never_literal(self, compose: dict[str, Any]) -> None:
        """Every SecretStr setting set in an app service comes from a ${VAR...} reference, never a literal."""
        secret_names = {n for n, t in settings_env_names().items() if is_secret(t)}
        for service in ("app", "app-replica"):
            env = compose["services"][service]["environment"]
            for name in secret_names & set(env):
                assert referenced_variable(env[name]), f"{service}: {name} is a literal"

    def test_qdrant_api_key_is_shared_between_qdrant_and_the_app(
        self, compose: dict[str, Any], app_env: dict[str, str]
    ) -> None:
        """QDRANT__SERVICE__API_KEY (qdrant) and CHATBOT_QDRANT__API_KEY (app) read one required variable."""
        server = compose["services"]["qdrant"]["environment"]["QDRANT__SERVICE__API_KEY"]
        client = app_env["CHATBOT_QDRANT__API_KEY"]
        assert referenced_variable(server) == referenced_variable(client) == "QDRANT_API_KEY"
        assert ":?" in server
        assert ":?" in client

    def test_provider_keys_are_optional(self, app_env: dict[str, str]) -> None:
        """OPENAI_API_KEY and COHERE_API_KEY default to empty (the offline models answer without them)."""
        assert app_env["OPENAI_API_KEY"] == "${OPENAI_API_KEY:-}"
        assert app_env["COHERE_API_KEY"] == "${COHERE_API_KEY:-}"


class TestAppEnvironment:
    def test_every_chatbot_variable_is_a_setting(self, compose: dict[str, Any]) -> None:
        """Each CHATBOT_* variable in an app service names a field of chatbot.settings (no typos)."""
        known = settings_env_names()
        for service in ("app", "app-replica"):
            unknown = {
                n for n in compose["services"][service]["environment"] if n.startswith("CHATBOT_")
            } - set(known)
            assert unknown == set(), service

    def test_container_settings_are_production_settings(
        self, app_env: dict[str, str], clean_env: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The app's interpolated environment loads as prod: Qdrant server, Redis, token secret, JSON logs."""
        env = {k: interpolate(v, HOST_ENV) for k, v in app_env.items()}
        settings = load_container_settings(monkeypatch, env)
        assert settings.env == "prod"
        assert not settings.qdrant.is_local
        assert settings.qdrant.api_key is not None
        assert settings.qdrant.api_key.get_secret_value() == HOST_ENV["QDRANT_API_KEY"]
        assert settings.redis.url is not None
        assert settings.auth.token_secret is not None
        assert settings.log_format == "json"

    def test_variables_the_settings_require_use_fail_fast_interpolation(
        self, app_env: dict[str, str], clean_env: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Derived from chatbot.settings: each variable prod settings cannot load without is ${VAR:?}."""
        env = {k: interpolate(v, HOST_ENV) for k, v in app_env.items()}
        required = []
        for name in env:
            with monkeypatch.context() as m:
                try:
                    load_container_settings(m, {k: v for k, v in env.items() if k != name})
                except ConfigError:
                    required.append(name)
        assert "CHATBOT_AUTH__TOKEN_SECRET" in required
        for name in required:
            assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", app_env[name]), name

    @pytest.mark.parametrize(
        ("variable", "service", "port"),
        [("CHATBOT_QDRANT__URL", "qdrant", 6333), ("CHATBOT_REDIS__URL", "redis", 6379)],
    )
    def test_backends_are_reached_by_service_name(
        self, compose: dict[str, Any], app_env: dict[str, str], variable: str, service: str, port: int
    ) -> None:
        """The Qdrant and Redis URLs name their compose services, and the app waits for them to be healthy."""
        url = urlsplit(app_env[variable])
        assert (url.hostname, url.port) == (service, port)
        assert compose["services"]["app"]["depends_on"][service] == {"condition": "service_healthy"}

    def test_replicas_share_the_app_environment(
        self, compose: dict[str, Any], app_env: dict[str, str]
    ) -> None:
        """app-replica has every variable app has (it only adds ingest_on_start=false)."""
        replica = compose["services"]["app-replica"]["environment"]
        assert {k: v for k, v in replica.items() if k in app_env} == app_env
        assert set(replica) - set(app_env) == {"CHATBOT_SERVER__INGEST_ON_START"}


class TestServices:
    @pytest.mark.parametrize("service", [*CORE_SERVICES, "app-replica", "lb"])
    def test_every_service_has_a_healthcheck(self, compose: dict[str, Any], service: str) -> None:
        """Each service declares a healthcheck test (depends_on service_healthy relies on them)."""
        check = compose["services"][service]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL")
        assert not check.get("disable", False)

    def test_qdrant_is_pinned_and_probed_without_curl(self, compose: dict[str, Any]) -> None:
        """Qdrant's image is pinned; its healthcheck asks /readyz through bash's /dev/tcp (no curl/wget)."""
        qdrant = compose["services"]["qdrant"]
        assert re.fullmatch(r"qdrant/qdrant:v\d+\.\d+\.\d+", qdrant["image"])
        probe = " ".join(qdrant["healthcheck"]["test"])
        assert "/dev/tcp/127.0.0.1/6333" in probe
        assert "/readyz" in probe
        assert "curl" not in probe
        assert "wget" not in probe

    def test_redis_is_pinged(self, compose: dict[str, Any]) -> None:
        """Redis runs redis:7-alpine and its healthcheck is redis-cli ping."""
        redis = compose["services"]["redis"]
        assert redis["image"] == "redis:7-alpine"
        assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]

    @pytest.mark.parametrize(("service", "target"), [("qdrant", "/qdrant/storage"), ("redis", "/data")])
    def test_state_lives_on_named_volumes(self, compose: dict[str, Any], service: str, target: str) -> None:
        """Qdrant's storage and Redis's data are named volumes declared at the top level."""
        mounts = [v.split(":") for v in compose["services"][service]["volumes"]]
        named = [source for source, path, *_ in mounts if path == target]
        assert len(named) == 1
        assert named[0] in compose["volumes"]

    def test_app_healthcheck_probes_healthz_with_python(self, compose: dict[str, Any]) -> None:
        """The app's healthcheck uses the interpreter (no curl in python:3.11-slim) against /healthz."""
        probe = compose["services"]["app"]["healthcheck"]["test"]
        assert probe[:3] == ["CMD", "python", "-c"]
        assert "urllib.request" in probe[3]
        assert "/healthz" in probe[3]


class TestScaleProfile:
    def test_replicas_sit_behind_the_balancer_in_the_scale_profile(self, compose: dict[str, Any]) -> None:
        """Profile `scale` adds >= 2 app replicas and an nginx balancer waiting for them; `app` is default."""
        services = compose["services"]
        assert services["app-replica"]["profiles"] == ["scale"]
        assert services["app-replica"]["deploy"]["replicas"] >= 2
        assert "ports" not in services["app-replica"]  # replicas cannot share a host port
        assert services["lb"]["profiles"] == ["scale"]
        assert services["lb"]["depends_on"] == {"app-replica": {"condition": "service_healthy"}}
        assert "profiles" not in services["app"]

    def test_balancer_mounts_the_nginx_config(self, compose: dict[str, Any]) -> None:
        """The lb service mounts deploy/nginx.conf read-only as nginx's main config."""
        assert "./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in compose["services"]["lb"]["volumes"]
        assert NGINX.is_file()

    def test_nginx_proxies_http_sse_and_websockets_to_the_replicas(self) -> None:
        """nginx.conf: upstream app-replica:8000, HTTP/1.1, Upgrade/Connection headers, no SSE buffering."""
        conf = NGINX.read_text()
        assert re.search(r"server\s+app-replica:8000\b", conf)
        for directive in (
            "proxy_http_version 1.1;",
            "proxy_set_header Upgrade $http_upgrade;",
            "proxy_set_header Connection $connection_upgrade;",
            "proxy_buffering off;",
        ):
            assert directive in conf
        assert conf.count("{") == conf.count("}")


# -- the Dockerfile ---------------------------------------------------------------------------------------


class TestDockerfile:
    def test_base_image_is_python_slim(self) -> None:
        """The image builds FROM python:3.11-slim."""
        froms = [args for word, args in dockerfile_instructions() if word == "FROM"]
        assert froms == ["python:3.11-slim"]

    def test_runs_as_a_non_root_user(self) -> None:
        """The last USER is neither root nor uid 0."""
        users = [args for word, args in dockerfile_instructions() if word == "USER"]
        assert users
        user = users[-1].split(":")[0]
        assert user not in ("root", "0")

    def test_exposes_the_server_port_and_probes_healthz(self) -> None:
        """EXPOSE 8000 and a HEALTHCHECK that asks /healthz with python's urllib (no curl in slim)."""
        instructions = dockerfile_instructions()
        assert ("EXPOSE", "8000") in instructions
        checks = [args for word, args in instructions if word == "HEALTHCHECK"]
        assert len(checks) == 1
        assert "urllib.request" in checks[0]
        assert "/healthz" in checks[0]
        assert "curl" not in checks[0]

    def test_cmd_runs_a_module_that_exists(self, capsys: pytest.CaptureFixture[str]) -> None:
        """CMD is `python -m chatbot serve --host 0.0.0.0` and that module's CLI knows serve --host."""
        import importlib.util

        from chatbot.__main__ import main

        cmds = [json.loads(args) for word, args in dockerfile_instructions() if word == "CMD"]
        assert cmds == [["python", "-m", "chatbot", "serve", "--host", "0.0.0.0"]]
        _python, _flag, module, *argv = cmds[0]
        assert importlib.util.find_spec(f"{module}.__main__") is not None
        with pytest.raises(SystemExit) as exited:
            main([*argv, "--help"])
        assert exited.value.code == 0
        assert "--host" in capsys.readouterr().out

    def test_copied_paths_exist_and_reach_the_build_context(self) -> None:
        """Every COPY source exists in the repo (globs may match nothing) and .dockerignore keeps it."""
        ignored = {
            line.strip()
            for line in (ROOT / ".dockerignore").read_text().splitlines()
            if line.strip() and not line.startswith("#")
        }
        for word, args in dockerfile_instructions():
            if word != "COPY":
                continue
            *sources, _dest = shlex.split(args)
            for source in sources:
                if any(c in source for c in "*?["):
                    continue
                assert (ROOT / source).exists(), source
                assert source not in ignored, source
        assert "!docs/guide" in ignored

    def test_environment_names_are_settings(self) -> None:
        """Every CHATBOT_* ENV in the Dockerfile names a field of chatbot.settings."""
        known = settings_env_names()
        names = set()
        for word, args in dockerfile_instructions():
            if word == "ENV":
                names |= {pair.split("=")[0] for pair in args.split() if pair.startswith("CHATBOT_")}
        assert names
        assert names <= set(known)
