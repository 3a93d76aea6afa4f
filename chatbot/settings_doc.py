"""The settings table of the README, generated from the Settings model (a test keeps the README in sync)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo

from chatbot.settings import Settings

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value: Any = field.default_factory()  # type: ignore[call-arg]
    else:
        value = field.default
    if value is None or isinstance(value, SecretStr):
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(str, value)) or "(empty)"
    return f"{value}"


def _rows(model: type[BaseModel], prefix: str) -> list[tuple[str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(_rows(annotation, f"{prefix}{name.upper()}__"))
            continue
        rows.append((f"{prefix}{name.upper()}", _default(field), field.description or ""))
    return rows


def settings_table() -> str:
    lines = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for env, default, description in _rows(Settings, "CHATBOT_"):
        shown = f"`{default}`" if default else ""
        lines.append(f"| `{env}` | {shown} | {description.replace('|', '/')} |")
    return "\n".join(lines)


def settings_section() -> str:
    return f"{BEGIN}\n{settings_table()}\n{END}"


def refresh_readme(path: str = "README.md") -> bool:
    """Rewrite the generated settings section of the README; True if it changed."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    start, end = text.index(BEGIN), text.index(END) + len(END)
    updated = text[:start] + settings_section() + text[end:]
    if updated != text:
        with open(path, "w", encoding="utf-8") as f:
            f.write(updated)
    return updated != text


if __name__ == "__main__":
    print("README.md updated" if refresh_readme() else "README.md already current")  # noqa: T201 - a CLI
