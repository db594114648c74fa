"""Finding the `App` in a pipeline file (`examples/hello.py`) or module (`pkg.pipelines:app`).

Loading also refuses a module that defines a check or a schedule no App of it holds: such a
definition would silently never run, and a forgotten blocking check lets bad data through.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from .definitions import App, Check, Schedule
from .errors import ConfigurationError, DefinitionError


def load_app(target: str) -> App:
    """Load `FILE.py[:NAME]` or `module[:NAME]`; NAME defaults to the module's only App.

    Raises `DefinitionError` when the module defines, at module level, a `Check` or a `Schedule`
    that no App in it holds.
    """
    spec, _, attr = target.partition(":") if not _is_windows_drive(target) else (target, "", "")
    module = _load_file(Path(spec)) if spec.endswith(".py") else _load_module(spec)
    apps = {name: value for name, value in vars(module).items() if isinstance(value, App)}
    if attr:
        named: object = getattr(module, attr, None)
        if not isinstance(named, App):
            raise ConfigurationError(f"{spec} has no App named {attr!r}")
        app = named
    elif len(apps) == 1:
        [app] = apps.values()
    else:
        which = "no App" if not apps else f"several Apps ({', '.join(sorted(apps))})"
        raise ConfigurationError(f"{spec} defines {which}; name one as {spec}:NAME")
    _reject_unattached(spec, module, [app, *apps.values()])
    return app


def _reject_unattached(spec: str, module: ModuleType, apps: list[App]) -> None:
    """Several Apps in one module may split its checks between them: held by any one is enough."""
    for attr, value in vars(module).items():
        if isinstance(value, Check) and not any(a.checks.get(value.name) is value for a in apps):
            raise DefinitionError(
                f"{spec}: check {value.name!r} ({attr}) on dataset {value.dataset!r} would never "
                "run: the App does not hold it; declare it with @pipeline.check(...) or pass it "
                "to App(checks=[...])"
            )
        if isinstance(value, Schedule) and not any(
            a.schedules.get(value.dataset.name) == value for a in apps
        ):
            raise DefinitionError(
                f"{spec}: schedule {attr} of dataset {value.dataset.name!r} ({value.cron!r}) "
                "would never run: the App does not hold it; declare it with "
                "pipeline.schedule(...) or pass it to App(schedules=[...])"
            )


def _is_windows_drive(target: str) -> bool:
    return len(target) > 1 and target[1] == ":"


def _load_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise ConfigurationError(f"no such pipeline file: {path}")
    digest = hashlib.blake2b(str(path.resolve()).encode(), digest_size=4).hexdigest()
    name = f"eventflow_user_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigurationError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.resolve().parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except DefinitionError:
        del sys.modules[name]
        raise
    except Exception as e:
        del sys.modules[name]
        raise DefinitionError(f"{path}: {_where(e, path)}{type(e).__name__}: {e}") from e
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def _load_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name == name or name.startswith(f"{e.name}."):
            raise ConfigurationError(f"no module named {name!r}") from e
        raise DefinitionError(f"{name}: {type(e).__name__}: {e}") from e
    except DefinitionError:
        raise
    except Exception as e:
        raise DefinitionError(f"{name}: {type(e).__name__}: {e}") from e


def _where(error: Exception, path: Path) -> str:
    if isinstance(error, SyntaxError) and error.lineno:
        return f"line {error.lineno}: "
    tb = error.__traceback__
    line = None
    while tb is not None:
        if Path(tb.tb_frame.f_code.co_filename).resolve() == path.resolve():
            line = tb.tb_lineno
        tb = tb.tb_next
    return f"line {line}: " if line else ""
