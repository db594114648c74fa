"""dbt as a task: `dbt build` run in a subprocess, each model it built announced as a dataset.

dbt-core is never imported: its pins often conflict with an App's, so it may live in a venv of
its own (`dbt=` or `EVENTFLOW_DBT` names its executable). Each attempt gives dbt a target and
log folder of its own, so attempts running side by side never read each other's artifacts.
What dbt prints becomes the task's log (`ctx.log`), and its `run_results.json` says what was
built and what failed.

    shop = DbtProject("dbt_project", models={"daily_revenue": revenue})

    @p.task(inputs=[orders], outputs=[revenue])
    async def transform(ctx: ef.TaskContext) -> None:
        await shop.build(ctx, vars={"orders_csv": ctx.inputs[orders].metadata["path"]})
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import tempfile
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .context import TaskContext
from .datasets import DatasetLike, dataset_name
from .errors import DbtError, Fail
from .settings import Settings

__all__ = ["PIP", "DbtError", "DbtProject", "DbtRun", "NodeResult", "find_dbt", "parse_results"]

PIP = "pip install 'eventflow[dbt]'"
#: Node statuses that fail the build: a model or hook in error, a test that failed.
FAILED = frozenset({"error", "fail", "runtime error", "partial success"})
#: dbt's JSON log levels as logging's.
LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "error": logging.ERROR,
}
#: Longest line of dbt's output kept whole; a longer one is cut there.
MAX_LINE = 64 * 1024


@dataclass(frozen=True)
class NodeResult:
    """One node of a dbt invocation, as `run_results.json` reports it."""

    unique_id: str
    status: str
    message: str | None = None
    execution_time_s: float = 0.0
    #: Only where the adapter reports it (Postgres, Snowflake, BigQuery do; DuckDB does not).
    rows_affected: int | None = None
    relation: str | None = None

    @property
    def resource_type(self) -> str:
        """`model`, `seed`, `snapshot`, `test`..."""
        return self.unique_id.split(".", 1)[0]

    @property
    def name(self) -> str:
        """The node's name: its unique id without the resource type and package."""
        parts = self.unique_id.split(".", 2)
        return parts[2] if len(parts) == 3 else self.unique_id

    def failure(self) -> str:
        """What failed, in dbt's own words, on one line."""
        said = " ".join((self.message or self.status).split())
        return f"{self.unique_id} failed: {said}"


@dataclass(frozen=True)
class DbtRun:
    """What one `dbt build` did: its invocation id and every node's result."""

    invocation_id: str
    results: tuple[NodeResult, ...]

    def failures(self) -> list[NodeResult]:
        return [r for r in self.results if r.status in FAILED]

    def find(self, model: str) -> NodeResult | None:
        """The result of `model`, by unique id or by name; `Fail` if the name is ambiguous."""
        found = [r for r in self.results if model in (r.unique_id, r.name)]
        if len(found) > 1:
            ids = sorted(r.unique_id for r in found)
            raise Fail(f"dbt: {model!r} names several nodes {ids}: map it by unique id")
        return found[0] if found else None


def parse_results(raw: bytes) -> DbtRun:
    """`run_results.json` as a `DbtRun`; the fields read are those dbt has written since 1.5."""
    data = orjson.loads(raw)
    results = []
    for node in data.get("results", []):
        response = node.get("adapter_response") or {}
        rows = response.get("rows_affected")
        results.append(
            NodeResult(
                unique_id=node["unique_id"],
                status=str(node["status"]),
                message=node.get("message"),
                execution_time_s=round(float(node.get("execution_time") or 0.0), 3),
                rows_affected=rows if isinstance(rows, int) and rows >= 0 else None,
                relation=node.get("relation_name"),
            )
        )
    return DbtRun(str(data.get("metadata", {}).get("invocation_id", "")), tuple(results))


def find_dbt(dbt: Path | str | None = None) -> str:
    """The dbt executable: `dbt` if given, else `EVENTFLOW_DBT`, else `dbt` beside the Python
    running eventflow (a venv need not be on the PATH), else on the PATH; `Fail` with the
    `pip install` line when there is none, since no retry can install it."""
    named = dbt if dbt is not None else Settings().dbt
    if named is not None:
        found = shutil.which(str(named))
        if found is None:
            raise Fail(f"no dbt executable at {str(named)!r} (dbt=, EVENTFLOW_DBT): {PIP}")
        return found
    beside = Path(sys.executable).parent
    found = shutil.which("dbt", path=str(beside)) or shutil.which("dbt")
    if found is None:
        raise Fail(f"dbt is not installed (not beside {sys.executable}, not on the PATH): {PIP}")
    return found


@dataclass(frozen=True)
class DbtProject:
    """A dbt project and which of its models are which datasets.

    `models` maps a model (or seed, snapshot) by unique id (`model.shop.daily_revenue`) or name
    to one of the task's declared outputs. `profiles_dir` defaults to `project_dir` when it
    holds a `profiles.yml` (else dbt's own default, `~/.dbt`); `select` and `vars` are the
    defaults of every build. The task's partition is passed as the var `partition_var`.
    """

    project_dir: Path | str
    models: Mapping[str, DatasetLike]
    select: str | Sequence[str] | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    profiles_dir: Path | str | None = None
    target: str | None = None
    dbt: Path | str | None = None
    partition_var: str = "partition"

    async def build(
        self,
        ctx: TaskContext,
        *,
        select: str | Sequence[str] | None = None,
        vars: Mapping[str, Any] | None = None,
    ) -> DbtRun:
        """Run `dbt build` for this attempt and announce each mapped model (`ctx.emit`) with
        `unique_id`, `status`, `execution_time_s`, `invocation_id` and, where the adapter says,
        `rows_affected` and `relation`.

        A node that failed (a model in error, a failing test) fails the task with dbt's
        message and no retry, and nothing is announced; so does a mapped model the build did
        not run. dbt ending in error before reporting its nodes raises `DbtError`."""
        with tempfile.TemporaryDirectory(prefix="eventflow-dbt-") as work:
            argv = self.argv(find_dbt(self.dbt), Path(work), ctx.partition, select, vars)
            errors: deque[str] = deque(maxlen=5)
            code = await _run(argv, ctx.log, errors)
            results = Path(work, "target", "run_results.json")
            run = parse_results(results.read_bytes()) if results.exists() else None
        if run is not None and (failed := run.failures()):
            raise Fail("dbt: " + "; ".join(r.failure() for r in failed))
        if run is None or code != 0:
            said = " ".join(" ".join(errors).split()) or "no error logged"
            raise DbtError(f"dbt build exited with {code}: {said}")
        self._announce(ctx, run)
        return run

    def body(
        self, *, select: str | Sequence[str] | None = None, vars: Mapping[str, Any] | None = None
    ) -> Callable[[TaskContext], Awaitable[None]]:
        """A task body that only builds, for a task whose vars do not depend on its inputs:
        `p.task(inputs=[...], outputs=[...], name="shop")(project.body())`."""

        async def dbt_build(ctx: TaskContext) -> None:
            await self.build(ctx, select=select, vars=vars)

        return dbt_build

    def argv(
        self,
        dbt: str,
        work: Path,
        partition: str,
        select: str | Sequence[str] | None = None,
        vars: Mapping[str, Any] | None = None,
    ) -> list[str]:
        """The command line of one build, its artifacts and logs in `work`."""
        project = Path(self.project_dir)
        profiles = self.profiles_dir
        if profiles is None and (project / "profiles.yml").exists():
            profiles = project
        merged = {**self.vars, **(vars or {})}
        if partition:
            merged[self.partition_var] = partition
        argv = [dbt, "build", "--project-dir", str(project)]
        if profiles is not None:
            argv += ["--profiles-dir", str(profiles)]
        if self.target is not None:
            argv += ["--target", self.target]
        argv += ["--target-path", str(work / "target"), "--log-path", str(work / "logs")]
        argv += ["--log-format", "json", "--no-use-colors", "--no-send-anonymous-usage-stats"]
        argv += ["--no-version-check"]
        if merged:
            argv += ["--vars", orjson.dumps(merged).decode()]
        chosen = select if select is not None else self.select
        if chosen:
            argv += ["--select", *([chosen] if isinstance(chosen, str) else chosen)]
        return argv

    def _announce(self, ctx: TaskContext, run: DbtRun) -> None:
        built = []
        for model, dataset in self.models.items():
            result = run.find(model)
            if result is None or result.status != "success":
                said = "did not run it" if result is None else f"left it {result.status}"
                raise Fail(f"dbt: the build {said}, but {model!r} is mapped to a dataset")
            built.append((dataset, result))
        for dataset, result in built:
            meta: dict[str, Any] = {
                "unique_id": result.unique_id,
                "status": result.status,
                "execution_time_s": result.execution_time_s,
                "invocation_id": run.invocation_id,
            }
            if result.rows_affected is not None:
                meta["rows_affected"] = result.rows_affected
            if result.relation is not None:
                meta["relation"] = result.relation
            ctx.emit(dataset_name(dataset), meta)


async def _run(argv: list[str], log: logging.Logger, errors: deque[str]) -> int:
    """Run dbt, its output lines to `log` (its error lines also to `errors`); its exit code.
    Cancelled (the task timed out, the worker stops), dbt is killed, never left running."""
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        await asyncio.gather(
            _relay(proc.stdout, logging.INFO, log, errors),
            _relay(proc.stderr, logging.WARNING, log, errors),
        )
        return await proc.wait()
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await asyncio.shield(proc.wait())


async def _relay(
    stream: asyncio.StreamReader, level: int, log: logging.Logger, errors: deque[str]
) -> None:
    async for raw in _lines(stream):
        parsed = _line(raw.decode(errors="replace"), level)
        if parsed is None:
            continue
        at, message = parsed
        log.log(at, "%s", message)
        if at >= logging.ERROR:
            errors.append(message)


def _line(text: str, level: int) -> tuple[int, str] | None:
    """A line of dbt's JSON log as (level, message); any other line as it is; None for blank
    lines, which dbt prints to space its output."""
    if text.startswith("{"):
        try:
            info = orjson.loads(text)["info"]
            level, text = LEVELS.get(info["level"], level), str(info["msg"])
        except (orjson.JSONDecodeError, KeyError, TypeError):
            pass
    text = text.rstrip()
    return (level, text) if text.strip() else None


async def _lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    """Lines of `stream`, each cut at `MAX_LINE` bytes rather than held without end."""
    rest = b""
    while chunk := await stream.read(MAX_LINE):
        *lines, rest = (rest + chunk).split(b"\n")
        for line in lines:
            yield line[:MAX_LINE]
        if len(rest) > MAX_LINE:
            yield rest[:MAX_LINE]
            rest = b""
    if rest:
        yield rest
