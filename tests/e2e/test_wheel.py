"""The package as a newcomer installs it: a wheel built from the tree carries every file the
package reads at run time, builds without setuptools warnings, and its installed `eventflow`
runs the hello example in a fresh virtual environment (dependencies come from PyPI)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from .test_cli import env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.mark.timeout(900)
def test_the_wheel_installs_into_a_fresh_venv_and_runs_hello(tmp_path: Path) -> None:
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", tmp_path / "dist", ROOT)
    assert built.returncode == 0, built.stdout + built.stderr
    assert "Warning" not in built.stdout + built.stderr, built.stdout + built.stderr
    [wheel] = (tmp_path / "dist").glob("eventflow-*.whl")

    shipped = set(zipfile.ZipFile(wheel).namelist())
    needed = {
        str(path.relative_to(ROOT))
        for path in (ROOT / "eventflow").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    assert needed - shipped == set(), "files of the package missing from the wheel"

    venv.create(tmp_path / "venv", with_pip=True)
    bin_ = tmp_path / "venv" / "bin"
    installed = run(bin_ / "python", "-m", "pip", "install", "-q", wheel)
    assert installed.returncode == 0, installed.stderr

    # Away from the source tree, so only the installed package can be imported.
    away = tmp_path / "away"
    away.mkdir()
    shutil.copy(ROOT / "examples" / "hello.py", away)
    done = subprocess.run(
        [bin_ / "eventflow", "dev", "hello.py", "--emit", "greetings.requested", "--until-idle"],
        cwd=away,
        env=env(away / ".eventflow"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hello  -  ok" in done.stdout and "Hello world!" in done.stderr
    # The UI reads its templates and static files from the installed package.
    probe = "from eventflow.ui.site import HERE; print(HERE); print(*sorted(HERE.rglob('*.html')))"
    where = run(bin_ / "python", "-c", probe, cwd=away)
    assert where.returncode == 0, where.stderr
    assert where.stdout.startswith(str(tmp_path / "venv")), where.stdout
    assert "templates/graph.html" in where.stdout
