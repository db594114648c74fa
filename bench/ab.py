"""`python -m bench SCENARIO ... --against REV`: the same scenarios on this tree and on another
git revision, taking turns (this tree, REV, this tree, REV, ... for `--rounds`), so that a claim
of a gain is a ratio measured in one run on a machine whose load drifts.

REV runs its own `bench` code in a temporary `git worktree`, so each side measures what its own
scenario measured; a revision whose bench lacks a scenario is refused before anything starts.
Its Python environment is this one when both revisions' `pyproject.toml` are the same, and
otherwise a venv cached by that file's hash (`$XDG_CACHE_HOME/eventflow-bench/`), holding
REV's dependencies; either way the worktree comes first on `PYTHONPATH`, so its `eventflow` is
the one imported, in the bench and in the services it starts."""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from .machine import ROOT

# Options of this driver, not forwarded to the runs of either side.
OWN_OPTIONS = ("--against", "--rounds", "--out", "--bootstrap")


class Refused(Exception):
    """REV cannot run what was asked for; the message says why."""


def git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise Refused(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def scenarios_of(source: str) -> set[str]:
    """The scenario names a revision's `bench/__main__.py` accepts (its `SCENARIOS` and
    `ONLY_BY_NAME` tuples), read without importing it."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(
                isinstance(t, ast.Name) and t.id in ("SCENARIOS", "ONLY_BY_NAME") for t in targets
            ):
                value = node.value
                if isinstance(value, ast.Tuple | ast.List):
                    names |= {
                        e.value
                        for e in value.elts
                        if isinstance(e, ast.Constant) and isinstance(e.value, str)
                    }
    return names


def check_scenarios(rev: str, sha: str, wanted: Sequence[str]) -> None:
    try:
        source = git("show", f"{sha}:bench/__main__.py")
    except Refused:
        raise Refused(f"{rev} ({sha[:10]}) has no bench/__main__.py to run") from None
    missing = [name for name in wanted if name not in scenarios_of(source)]
    if missing:
        raise Refused(
            f"{rev} ({sha[:10]}) has no scenario {', '.join(missing)}; "
            f"it has: {', '.join(sorted(scenarios_of(source))) or 'none'}"
        )


def forwarded(argv: Sequence[str]) -> list[str]:
    """The command line without this driver's own options (`--against REV`, `--rounds=3`...)."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in OWN_OPTIONS:
            skip = True
        elif not arg.startswith(tuple(f"{o}=" for o in OWN_OPTIONS)):
            kept.append(arg)
    return kept


def _digest(pyproject: bytes) -> str:
    return hashlib.sha256(pyproject + sys.version.encode()).hexdigest()[:16]


def python_for(tree: Path) -> str:
    """This interpreter if `tree` declares the same dependencies as this one, else that of a
    venv cached by its `pyproject.toml` (built once, with REV's dependencies and the dev extra
    that its bench may use)."""
    wanted = (tree / "pyproject.toml").read_bytes()
    if wanted == (ROOT / "pyproject.toml").read_bytes():
        return sys.executable
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "eventflow-bench" / _digest(wanted)
    python = venv / "bin" / "python"
    if not (venv / ".complete").exists():
        print(f"bench: a venv for {tree.name} in {venv} (once) ...", file=sys.stderr, flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        # Installed (not editable) for its dependencies and metadata; the code imported is the
        # worktree's, first on PYTHONPATH.
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", f"{tree}[dev]"], check=True, cwd=tree
        )
        (venv / ".complete").touch()
    return str(python)


@contextmanager
def worktree(sha: str) -> Iterator[Path]:
    """A detached worktree of `sha`, removed afterwards (and pruned from git's list)."""
    folder = Path(tempfile.mkdtemp(prefix="eventflow-ab-")) / "tree"
    git("worktree", "add", "--detach", "--quiet", str(folder), sha)
    try:
        yield folder
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(folder)], cwd=ROOT, capture_output=True
        )
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)
        shutil.rmtree(folder.parent, ignore_errors=True)


def run_side(python: str, tree: Path, args: list[str], out: Path) -> dict[str, Any]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tree), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [python, "-m", "bench", *args, "--out", str(out)],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise Refused(f"bench in {tree} failed ({done.returncode}):\n{done.stderr.strip()}")
    report: dict[str, Any] = orjson.loads(out.read_bytes())
    return report


def imports_from(python: str, tree: Path) -> None:
    """Refuse to measure if `tree`'s own eventflow is not the one its runs would import."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    found = subprocess.run(
        [python, "-c", "import eventflow; print(eventflow.__file__)"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
    ).stdout.strip()
    if not found.startswith(str(tree)):
        raise Refused(f"the runs in {tree} would import eventflow from {found or 'nowhere'}")


def figures(results: dict[str, Any]) -> dict[str, float]:
    """Every numeric figure as 'scenario/runtime measure.sub': value (counts `n` left out)."""
    flat: dict[str, float] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k != "n":
                    walk(f"{prefix}.{k}" if prefix else k, v)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[prefix] = float(value)

    for key, found in results.items():
        if isinstance(found, dict):
            for measure, value in found.items():
                walk(f"{key} {measure}", value)
    return flat


def combine(current: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median of each side's rounds and their ratio (current / other); a
    figure that one side does not measure is shown with None for that side."""
    sides = [[figures(r["results"]) for r in reports] for reports in (current, other)]
    names = dict.fromkeys(name for side in sides for round_ in side for name in round_)
    rows: dict[str, Any] = {}
    for name in names:
        values = [[round_[name] for round_ in side if name in round_] for side in sides]
        mine, theirs = (statistics.median(v) if v else None for v in values)
        rows[name] = {
            "current": mine,
            "other": theirs,
            "ratio": round(mine / theirs, 3) if mine is not None and theirs else None,
            "rounds": {"current": values[0], "other": values[1]},
        }
    return rows


def table(rows: dict[str, Any]) -> str:
    def cell(value: float | None, width: int, digits: int = 3) -> str:
        return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"

    width = max([len(name) for name in rows] + [6])
    lines = [f"{'figure':<{width}} {'current':>12} {'other':>12} {'ratio':>7}"]
    for name, row in rows.items():
        lines.append(
            f"{name:<{width}} {cell(row['current'], 12)} {cell(row['other'], 12)} "
            f"{cell(row['ratio'], 7)}"
        )
    return "\n".join(lines)


def describe_side(report: dict[str, Any]) -> str:
    m = report["machine"]
    libraries = ", ".join(f"{k} {v}" for k, v in m["libraries"].items())
    return f"commit {m['commit']}: Python {m['python']}, {libraries}"


def against(
    rev: str, names: Sequence[str], argv: Sequence[str], rounds: int, bootstrap: str | None
) -> dict[str, Any]:
    """Run the scenarios `rounds` times on each side, alternating; the combined report."""
    sha = git("rev-parse", "--verify", f"{rev}^{{commit}}")
    check_scenarios(rev, sha, names)
    args = forwarded(argv) + (["--bootstrap", bootstrap] if bootstrap else [])
    reports: dict[str, list[dict[str, Any]]] = {"current": [], "other": []}
    with worktree(sha) as tree, tempfile.TemporaryDirectory(prefix="eventflow-ab-") as scratch:
        python = python_for(tree)
        imports_from(python, tree)
        sides = {"current": (sys.executable, ROOT), "other": (python, tree)}
        for n in range(rounds):
            for side, (exe, folder) in sides.items():
                print(f"bench: round {n + 1}/{rounds}, {side} ...", file=sys.stderr, flush=True)
                began = time.perf_counter()
                report = run_side(exe, folder, args, Path(scratch) / f"{side}-{n}.json")
                report["seconds"] = round(time.perf_counter() - began, 1)
                reports[side].append(report)
    return {
        "against": {"rev": rev, "commit": sha},
        "rounds": rounds,
        "machine": reports["current"][0]["machine"],
        "other_machine": reports["other"][0]["machine"],
        "figures": combine(reports["current"], reports["other"]),
        "reports": reports,
    }


def summary(report: dict[str, Any]) -> str:
    m, other = report["machine"], report["other_machine"]
    head = [
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, {m['os']}, Kafka {m['kafka']}",
        f"current: {describe_side({'machine': m})}",
        f"other ({report['against']['rev']}): {describe_side({'machine': other})}",
        f"medians of {report['rounds']} round(s) each, taken in turns; ratio = current / other",
    ]
    return "\n".join([*head, table(report["figures"])])
