"""The import picture: core <- runtime <- adapters (embedded, kafka) <- operations <- api <-
serving <- cli.

Decisions stay pure only while `core` imports no runtime; the two adapters stay adapters only
while neither reaches into the other.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import eventflow

PACKAGE = Path(eventflow.__file__).parent

#: Layer -> the layers of eventflow it must not import.
ABOVE_ADAPTERS = {"operations", "api", "ui", "cli", "serving"}
FORBIDDEN = {
    "core": {"runtime", "embedded", "kafka", "testing", *ABOVE_ADAPTERS},
    "runtime": {"embedded", "kafka", "testing", *ABOVE_ADAPTERS},
    "embedded": {"kafka", *ABOVE_ADAPTERS},
    "kafka": {"embedded", *ABOVE_ADAPTERS},
    "operations": {"api", "cli", "serving"},
    # The API sees a runtime only through the operations port.
    "api": {"embedded", "kafka", "cli", "serving"},
    # The web UI too, and it reads what the API reads.
    "ui": {"embedded", "kafka", "cli", "serving"},
    # Alerts read events as any subscriber does, through `clients`, on either runtime.
    "alerts": {"core", "embedded", "kafka", "testing", *ABOVE_ADAPTERS},
    # A projection of the event log: it reads events, never decides or runs them.
    "history": {"core", "runtime", "embedded", "kafka", "testing", *ABOVE_ADAPTERS},
}


def imported_layers(path: Path) -> set[str]:
    """The first component under `eventflow` of every module `path` imports."""
    module = path.relative_to(PACKAGE.parent).with_suffix("").parts
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(module[: len(module) - node.level])
                target = [*base, *(node.module.split(".") if node.module else [])]
                names = [[*target, alias.name] for alias in node.names]
            else:
                names = [(node.module or "").split(".")]
        elif isinstance(node, ast.Import):
            names = [alias.name.split(".") for alias in node.names]
        else:
            continue
        for name in names:
            if len(name) > 1 and name[0] == "eventflow":
                found.add(name[1])
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_only_the_layers_below_it(layer: str) -> None:
    breaches = {
        str(path.relative_to(PACKAGE)): sorted(imported_layers(path) & FORBIDDEN[layer])
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {where: what for where, what in breaches.items() if what} == {}


def test_the_check_sees_relative_imports() -> None:
    assert "core" in imported_layers(PACKAGE / "runtime" / "step.py")
    assert "runtime" in imported_layers(PACKAGE / "kafka" / "coordinator.py")
