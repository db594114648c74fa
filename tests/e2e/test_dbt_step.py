"""`examples/dbt_step.py` on a real dbt (the venv `make test` builds beside the dev one) and a
real DuckDB file: the models built are announced, dbt's failures fail the task in dbt's words,
and dbt's log is the task's log."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import duckdb
import pytest

import eventflow as ef
from eventflow.dbt import DbtProject
from eventflow.testing import EmbeddedHarness

ROOT = Path(__file__).parents[2]
EXAMPLE = ROOT / "examples" / "dbt_step.py"
#: Where `make test` installs dbt (`$(VENV)/dbt`): its pins and the dev extra's conflict.
DBT = Path(sys.prefix) / "dbt" / "bin" / "dbt"


@pytest.fixture
def dbt(monkeypatch: pytest.MonkeyPatch) -> str:
    """The dbt executable, named to the helper as `EVENTFLOW_DBT`; missing, the test fails."""
    path = os.environ.get("EVENTFLOW_DBT") or str(DBT)
    stamp = DBT.parents[1] / ".installed"
    assert Path(path).exists(), f"no dbt at {path}: `make test` installs it (make {stamp})"
    monkeypatch.setenv("EVENTFLOW_DBT", path)
    return path


def load_example() -> ModuleType:
    """The example as a module of its own (examples/ is no package), loaded once."""
    spec = importlib.util.spec_from_file_location("dbt_step_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


dbt_step = load_example()


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example's files (its DuckDB file among them) in `tmp_path`."""
    monkeypatch.setattr(dbt_step.Files, "root", tmp_path / "shop")
    return tmp_path / "shop"


def read_csv(path: str) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def logged(h: EmbeddedHarness, task: str) -> list[tuple[str, str]]:
    return [(line.level, line.message) for chunk in h.task_logs(task) for line in chunk.lines]


async def test_each_model_built_is_announced_for_the_day(dbt: str, files: Path) -> None:
    async with EmbeddedHarness(dbt_step.app) as h:
        for day in ("2026-11-20", "2026-11-21"):
            await h.emit(dbt_step.ready.name, partition=day)
        runs = await h.wait_for_runs(2, timeout=90)
    assert [r.status for r in runs] == ["succeeded", "succeeded"]
    db = duckdb.connect(str(files / "shop.duckdb"), read_only=True)
    for day in ("2026-11-20", "2026-11-21"):
        [staged] = [v for v in h.produced("shop.stg_orders") if v.partition == day]
        [revenue] = [v for v in h.produced("shop.daily_revenue") if v.partition == day]
        for version, model in ((staged, "stg_orders"), (revenue, "daily_revenue")):
            meta = version.metadata
            assert meta["unique_id"] == f"model.shop.{model}" and meta["status"] == "success"
            assert meta["relation"] == f'"shop"."main"."{model}"'
            assert isinstance(meta["execution_time_s"], float) and meta["execution_time_s"] > 0
            assert "rows_affected" not in meta  # dbt-duckdb reports no row counts
        assert staged.metadata["invocation_id"] == revenue.metadata["invocation_id"] != ""
        # the day's rows, counted where dbt put them
        [orders] = [v for v in h.produced("orders") if v.partition == day]
        exported = await asyncio.to_thread(read_csv, orders.metadata["path"])
        [[n]] = db.execute("select count(*) from stg_orders where day = ?", [day]).fetchall()
        assert n == orders.metadata["rows"] == len(exported)
        countries = {row["country"].lower() for row in exported}
        [[n]] = db.execute("select count(*) from daily_revenue where day = ?", [day]).fetchall()
        [report] = [v for v in h.produced("revenue_report") if v.partition == day]
        assert n == report.metadata["rows"] == len(countries)
    invocations = {v.metadata["invocation_id"] for v in h.produced("shop.daily_revenue")}
    assert len(invocations) == 2  # one dbt invocation per attempt
    lines = logged(h, "transform")
    assert ("INFO", "1 of 4 START sql incremental model main.stg_orders") in [
        (level, message.split(" ...")[0]) for level, message in lines
    ]
    assert lines.count(("INFO", "Completed successfully")) == 2


async def test_a_failing_dbt_test_fails_the_task_naming_it(dbt: str, files: Path) -> None:
    async with EmbeddedHarness(dbt_step.app) as h:
        await h.emit(dbt_step.ready.name, partition="2026-11-22", refund=True)
        [run] = await h.wait_for_runs(timeout=60)
    assert run.status == "failed"
    [failed] = h.task_results("transform")
    assert isinstance(failed, ef.TaskFailedData) and not failed.retriable
    assert failed.error == (
        "dbt: test.shop.amounts_are_not_negative failed: Got 1 result, configured to fail if != 0"
    )
    assert not h.produced("shop.stg_orders") and not h.produced("shop.daily_revenue")
    assert not h.task_results("revenue_report")
    lines = logged(h, "transform")
    assert (
        "ERROR",
        "Failure in test amounts_are_not_negative (tests/amounts_are_not_negative.sql)",
    ) in lines


async def test_a_broken_model_fails_the_task_with_dbts_error(dbt: str, tmp_path: Path) -> None:
    """A project variant of the example's: its staging model selects a column the file lacks."""
    export = ef.Dataset("export", ef.daily())
    staged = ef.Dataset("staged", ef.daily())
    p = ef.Pipeline("broken")
    bad = tmp_path / "orders.csv"
    bad.write_text("order_id,country\no1,DE\n")
    project = DbtProject(
        dbt_step.PROJECT,
        models={"model.shop.stg_orders": staged},
        select="stg_orders",
        vars={"orders_csv": str(bad), "duckdb_path": str(tmp_path / "shop.duckdb")},
    )
    p.task(inputs=[export], outputs=[staged], name="dbt_staging")(project.body())
    async with EmbeddedHarness(ef.App([p])) as h:
        await h.emit("export", partition="2026-11-20")
        [run] = await h.wait_for_runs(timeout=60)
    assert run.status == "failed"
    [failed] = h.task_results("dbt_staging")
    assert isinstance(failed, ef.TaskFailedData)
    assert failed.error.startswith(
        "dbt: model.shop.stg_orders failed: Runtime Error in model stg_orders "
        "(models/stg_orders.sql) Binder Error:"
    )
    assert '"amount"' in failed.error
    errors = [message for level, message in logged(h, "dbt_staging") if level == "ERROR"]
    assert any("Binder Error" in message and '"amount"' in message for message in errors)


async def test_a_timed_out_build_leaves_no_dbt_running(dbt: str, tmp_path: Path) -> None:
    export = ef.Dataset("export", ef.daily())
    staged = ef.Dataset("staged", ef.daily())
    p = ef.Pipeline("slow")
    marker = str(tmp_path / "timed-out.duckdb")  # finds this test's dbt among processes
    project = DbtProject(
        dbt_step.PROJECT,
        models={"stg_orders": staged},
        vars={"orders_csv": str(tmp_path / "none.csv"), "duckdb_path": marker},
    )
    # dbt takes seconds to start: the attempt is cancelled while it runs
    p.task(inputs=[export], outputs=[staged], name="dbt_slow", timeout_s=0.5)(project.body())
    async with EmbeddedHarness(ef.App([p])) as h:
        await h.emit("export", partition="2026-11-20")
        [run] = await h.wait_for_runs(timeout=60)
    [failed] = h.task_results("dbt_slow")
    assert isinstance(failed, ef.TaskFailedData) and failed.kind == "timeout"
    assert run.status == "failed" and not running(marker)


def running(marker: str) -> list[int]:
    """Processes whose command line names `marker`."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker.encode() in (proc / "cmdline").read_bytes():
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_the_example_runs_as_its_docstring_says(dbt: str) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "EVENTFLOW_DBT": dbt},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    days = done.stdout.split("2026-11-")[1:]
    for day in days[:2]:
        assert "  transform       -> shop.stg_orders (unique_id=model.shop.stg_orders)" in day
        assert "  transform       -> shop.daily_revenue (unique_id=model.shop.daily_revenue)" in day
        assert "  revenue_report  -> revenue_report (rows=3)" in day
        assert "  run succeeded" in day
    assert (
        "  transform       failed: dbt: test.shop.amounts_are_not_negative failed: Got 1 result,"
        in days[2]
    )
    assert "  run failed" in days[2] and done.stderr == ""
