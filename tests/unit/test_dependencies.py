"""Every package chatbot/ imports is declared in pyproject.toml, and every declared package is used."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


@cache
def declared() -> frozenset[str]:
    """The distributions [project].dependencies and the optional `multilingual` extra name (extras and
    markers dropped)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    specs = [*project["dependencies"], *project["optional-dependencies"]["multilingual"]]
    names = (re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", spec) for spec in specs)
    return frozenset(normalise(match.group()) for match in names if match)


@cache
def imported() -> dict[str, set[str]]:
    """Top-level modules imported anywhere in chatbot/ (lazy imports in functions too) -> importing files."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "chatbot").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top != "chatbot" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


class TestDeclaredDependencies:
    def test_every_imported_package_is_declared(self) -> None:
        """Each third-party module chatbot/ imports comes from a distribution in [project].dependencies."""
        distributions = packages_distributions()
        undeclared = {
            module: sorted(files)
            for module, files in imported().items()
            if not {normalise(d) for d in distributions.get(module, [])} & declared()
        }
        assert undeclared == {}

    def test_every_declared_package_is_imported(self) -> None:
        """Each declared distribution provides a module that chatbot/ imports (lazily counts)."""
        provided = {
            normalise(dist)
            for module, dists in packages_distributions().items()
            if module in imported()
            for dist in dists
        }
        unused = declared() - provided
        assert unused == set()

    def test_the_scan_sees_lazy_imports(self) -> None:
        """Imports inside functions count: onnxruntime is only imported when the offline model loads."""
        assert "onnxruntime" in imported()
