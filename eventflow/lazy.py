"""Names a package exports, imported from their module when first used.

`import eventflow` and the `eventflow` command read the package's `__init__` files; importing
everything they name pulled in SQLAlchemy and FastAPI (the history store, the HTTP API, the
embedded runtime), most of a second, for commands such as `eventflow emit` that use none of it.
Type checkers read the same names from an `if typing.TYPE_CHECKING:` import beside the table.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def exports(namespace: dict[str, Any], where: Mapping[str, str]) -> None:
    """Give the package whose `globals()` is `namespace` a module `__getattr__` and `__dir__`
    for the names in `where`, each mapped to the submodule (relative, such as `.runtime`) that
    defines it. Installed here rather than written in the package, so that a type checker sees
    no `__getattr__` that would let it accept any name."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value  # once: later lookups find it in the module
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *where})

    namespace["__getattr__"] = __getattr__
    namespace["__dir__"] = __dir__
