"""`eventflow.dbt` without dbt: run results read, failures named, the command line, the log
lines, and a missing executable failing its task with the pip line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import orjson
import pytest

import eventflow as ef
from eventflow.dbt import PIP, DbtProject, NodeResult, _line, find_dbt, parse_results
from eventflow.testing import EmbeddedHarness


def run_results(*nodes: dict[str, object]) -> bytes:
    return orjson.dumps({"metadata": {"invocation_id": "inv-1"}, "results": list(nodes)})


def test_results_keep_rows_affected_where_the_adapter_reports_them() -> None:
    run = parse_results(
        run_results(
            {
                "unique_id": "model.shop.orders",
                "status": "success",
                "execution_time": 1.23456,
                "adapter_response": {"_message": "INSERT 0 42", "rows_affected": 42},
                "message": "INSERT 0 42",
                "relation_name": '"db"."main"."orders"',
            },
            # DuckDB says nothing of rows; some adapters say -1 for "unknown"
            {"unique_id": "model.shop.a", "status": "success", "adapter_response": {}},
            {
                "unique_id": "model.shop.b",
                "status": "success",
                "adapter_response": {"rows_affected": -1},
            },
        )
    )
    orders, a, b = run.results
    assert run.invocation_id == "inv-1"
    assert (orders.rows_affected, orders.execution_time_s) == (42, 1.235)
    assert orders.relation == '"db"."main"."orders"'
    assert (orders.name, orders.resource_type) == ("orders", "model")
    assert a.rows_affected is None and b.rows_affected is None


def test_failures_are_the_failed_nodes_in_dbts_words_on_one_line() -> None:
    run = parse_results(
        run_results(
            {"unique_id": "model.shop.ok", "status": "success"},
            {
                "unique_id": "model.shop.stg",
                "status": "error",
                "message": "Runtime Error in model stg (models/stg.sql)\n  Binder Error: no x",
            },
            {"unique_id": "test.shop.positive", "status": "fail", "message": "Got 1 result"},
            {"unique_id": "test.shop.soft", "status": "warn", "message": "Got 2 results"},
            {"unique_id": "model.shop.after", "status": "skipped"},
        )
    )
    assert [r.failure() for r in run.failures()] == [
        "model.shop.stg failed: Runtime Error in model stg (models/stg.sql) Binder Error: no x",
        "test.shop.positive failed: Got 1 result",
    ]


def test_a_model_is_found_by_unique_id_or_name_and_an_ambiguous_name_fails() -> None:
    run = parse_results(
        run_results(
            {"unique_id": "model.shop.orders", "status": "success"},
            {"unique_id": "model.other.orders", "status": "success"},
            {"unique_id": "model.shop.revenue", "status": "success"},
        )
    )
    assert run.find("revenue") == NodeResult("model.shop.revenue", "success")
    assert run.find("model.other.orders") == NodeResult("model.other.orders", "success")
    assert run.find("missing") is None
    with pytest.raises(ef.Fail, match="several nodes"):
        run.find("orders")


def test_the_command_line_puts_artifacts_in_the_attempts_folder(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "profiles.yml").write_text("{}")
    shop = DbtProject(project, models={}, select="tag:daily", vars={"a": 1, "b": 2})
    argv = shop.argv("/bin/dbt", tmp_path / "attempt", "2026-11-20", vars={"b": 3})
    assert argv[:2] == ["/bin/dbt", "build"]
    options = dict(zip(argv[2::2], argv[3::2], strict=False))
    assert options["--project-dir"] == str(project)
    assert options["--profiles-dir"] == str(project)  # it holds a profiles.yml
    assert options["--target-path"] == str(tmp_path / "attempt" / "target")
    assert options["--log-path"] == str(tmp_path / "attempt" / "logs")
    assert orjson.loads(argv[argv.index("--vars") + 1]) == {
        "a": 1,
        "b": 3,
        "partition": "2026-11-20",
    }
    assert argv[argv.index("--select") :] == ["--select", "tag:daily"]
    assert "--log-format" in argv and "--no-send-anonymous-usage-stats" in argv

    other = DbtProject(tmp_path, models={}, target="prod")
    argv = other.argv("dbt", tmp_path / "attempt", "", select=["a", "b+"])
    assert "--profiles-dir" not in argv and "--vars" not in argv  # dbt's defaults
    assert argv[argv.index("--target") + 1] == "prod"
    assert argv[argv.index("--select") :] == ["--select", "a", "b+"]


def test_dbt_log_lines_keep_their_level_and_message() -> None:
    json_line = orjson.dumps({"info": {"level": "error", "msg": "Failure in test t"}}).decode()
    assert _line(json_line, logging.INFO) == (logging.ERROR, "Failure in test t")
    assert _line('{"info": {"level": "warn", "msg": "old"}}', logging.INFO) == (
        logging.WARNING,
        "old",
    )
    assert _line('{"info": {"level": "info", "msg": ""}}', logging.INFO) is None  # spacing
    assert _line("Traceback (most recent call last):", logging.WARNING) == (
        logging.WARNING,
        "Traceback (most recent call last):",
    )
    assert _line('{"not dbt": 1}', logging.INFO) == (logging.INFO, '{"not dbt": 1}')


def test_a_missing_executable_names_the_pip_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ef.Fail) as named:
        find_dbt(tmp_path / "no-dbt")
    assert named.value.reason.endswith(PIP) and str(tmp_path / "no-dbt") in named.value.reason
    monkeypatch.delenv("EVENTFLOW_DBT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    with pytest.raises(ef.Fail) as default:
        find_dbt()
    assert default.value.reason == (
        f"dbt is not installed (not beside {tmp_path / 'python'}, not on the PATH): "
        "pip install 'eventflow[dbt]'"
    )
    found = tmp_path / "dbt"
    found.write_text("#!/bin/sh\n")
    found.chmod(0o755)
    assert find_dbt() == str(found)
    monkeypatch.setenv("EVENTFLOW_DBT", str(tmp_path / "elsewhere"))
    with pytest.raises(ef.Fail, match="elsewhere"):
        find_dbt()


async def test_a_task_without_dbt_fails_once_with_the_pip_line(tmp_path: Path) -> None:
    raw = ef.Dataset("raw")
    built = ef.Dataset("built")
    p = ef.Pipeline("p")
    shop = DbtProject(tmp_path, models={"built": built}, dbt=tmp_path / "no-dbt")
    p.task(inputs=[raw], outputs=[built], retries=2, name="dbt_shop")(shop.body())
    async with EmbeddedHarness(ef.App([p])) as h:
        await h.emit("raw")
        [run] = await h.wait_for_runs()
    [failed] = h.task_results("dbt_shop")
    assert isinstance(failed, ef.TaskFailedData) and not failed.retriable
    assert failed.error.endswith("pip install 'eventflow[dbt]'")
    assert run.status == "failed" and not h.produced("built")
