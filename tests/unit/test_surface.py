"""The public surface: `eventflow.__all__` is exact, and everything in it is documented."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import types
from collections import Counter

import pydantic
import pytest

import eventflow as ef
from eventflow import events, runtime, testing
from eventflow.settings import Settings

#: The packages users import from, each with an exact `__all__`.
PUBLIC = [ef, testing, runtime]


def public_attributes(module: types.ModuleType) -> set[str]:
    """What `from module import X` offers: public names that are not submodules."""
    return {
        name
        for name, value in vars(module).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }


@pytest.mark.parametrize("package", PUBLIC, ids=lambda p: p.__name__)
def test_all_is_sorted_and_without_duplicates(package: types.ModuleType) -> None:
    repeated = sorted(name for name, n in Counter(package.__all__).items() if n > 1)
    assert not repeated, f"listed twice in __all__: {repeated}"
    assert package.__all__ == sorted(package.__all__), "__all__ is not sorted"


@pytest.mark.parametrize("package", PUBLIC, ids=lambda p: p.__name__)
def test_all_lists_only_names_that_exist(package: types.ModuleType) -> None:
    missing = [name for name in package.__all__ if not hasattr(package, name)]
    assert not missing, f"__all__ lists names {package.__name__} does not define: {missing}"


@pytest.mark.parametrize("package", PUBLIC, ids=lambda p: p.__name__)
def test_every_public_attribute_is_in_all(package: types.ModuleType) -> None:
    unlisted = public_attributes(package) - set(package.__all__)
    assert not unlisted, f"public names missing from __all__: {sorted(unlisted)}"


def own_doc(obj: object) -> str:
    """The docstring `obj` was written with, not one it inherits or a dataclass made up."""
    if isinstance(obj, type):
        doc = obj.__dict__.get("__doc__") or ""
        if dataclasses.is_dataclass(obj) and doc.startswith(f"{obj.__name__}("):
            return ""  # the signature a dataclass without a docstring gets
        return doc.strip()
    return (getattr(obj, "__doc__", None) or "").strip()


def is_ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "eventflow"


def undocumented_members(cls: type) -> list[str]:
    """Public methods and properties defined by eventflow classes in `cls`'s hierarchy that
    have no docstring; an override may rely on the docstring of the method it overrides."""
    found = []
    ours = [k for k in cls.__mro__ if is_ours(k)]
    names = {name for k in ours for name in vars(k) if not name.startswith("_")}
    for name in sorted(names):
        members = [vars(k)[name] for k in ours if name in vars(k)]
        members = [
            m.__func__ if isinstance(m, classmethod | staticmethod) else m
            for m in members
            if isinstance(m, classmethod | staticmethod | property | types.FunctionType)
        ]
        if members and not any(own_doc(m) for m in members):
            found.append(f"{cls.__name__}.{name}")
    return found


def undocumented(name: str) -> list[str]:
    obj = getattr(ef, name)
    missing = [] if own_doc(obj) else [name]
    if isinstance(obj, type):
        missing += undocumented_members(obj)
    return missing


@pytest.mark.parametrize("name", ef.__all__)
def test_every_exported_name_and_its_members_have_a_docstring(name: str) -> None:
    assert sorted(undocumented(name)) == []


def test_the_check_itself_sees_a_missing_docstring() -> None:
    class Plain:
        def method(self) -> None:
            pass

    Plain.__module__ = "eventflow.example"
    assert own_doc(Plain) == ""
    assert undocumented_members(Plain) == ["Plain.method"]

    @dataclasses.dataclass
    class Data:
        x: int = 0

    assert own_doc(Data) == ""


EVENT_MODELS = [
    model
    for model in vars(events).values()
    if isinstance(model, type)
    and issubclass(model, pydantic.BaseModel)
    and model.__module__ == events.__name__
    and model.__pydantic_generic_metadata__["origin"] is None  # not `Event[X]`
]


@pytest.mark.parametrize("model", EVENT_MODELS, ids=lambda m: m.__name__)
def test_events_and_payloads_are_documented(model: type[pydantic.BaseModel]) -> None:
    assert own_doc(model), f"{model.__name__} has no docstring"
    assert undocumented_members(model) == []


@pytest.mark.parametrize("model", [Settings, *EVENT_MODELS], ids=lambda m: m.__name__)
def test_every_field_has_a_description(model: type[pydantic.BaseModel]) -> None:
    bare = [name for name, info in model.model_fields.items() if not info.description]
    assert not bare, f"{model.__name__} fields without description=: {bare}"


def test_the_package_and_the_command_load_no_service_until_used() -> None:
    """`eventflow emit` and a pipeline's `import eventflow` need neither the history store nor
    the HTTP API: their modules (SQLAlchemy, FastAPI) load when a name that needs them is first
    used, and that name is then the real one. Every name the lazy packages list resolves."""
    code = """
import importlib, sys
import eventflow, eventflow.cli
heavy = ["sqlalchemy", "fastapi", "uvicorn", "eventflow.embedded.runtime", "eventflow.serving"]
print(",".join(m for m in heavy if m in sys.modules))
from eventflow.embedded.runtime import EmbeddedRuntime
from eventflow.history.store import HistoryStore
from eventflow.api.server import ApiServer
packages = ["eventflow", "eventflow.embedded", "eventflow.api", "eventflow.history"]
for package in map(importlib.import_module, packages):
    for name in package.__all__:
        assert getattr(package, name) is not None, (package.__name__, name)
    assert set(package.__all__) <= set(dir(package)), package.__name__
    assert not hasattr(package, "NoSuchName"), package.__name__
assert eventflow.EmbeddedRuntime is EmbeddedRuntime is eventflow.embedded.EmbeddedRuntime
assert eventflow.history.HistoryStore is HistoryStore and eventflow.api.ApiServer is ApiServer
print("sqlalchemy" in sys.modules)
"""
    ran = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert ran.returncode == 0, ran.stderr
    loaded, after = ran.stdout.splitlines()
    assert loaded == "", f"loaded by `import eventflow` and the command: {loaded}"
    assert after == "True"  # the check above sees modules load
