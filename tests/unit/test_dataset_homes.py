"""A stream task's changelog may still hold a dataset's state from before its home moved (an
App change, or a deployment from before homes): that record must not overwrite the state where
the dataset lives now."""

from __future__ import annotations

import eventflow as ef
from eventflow.core import Engine, codec
from eventflow.core.state import DatasetState, dump
from eventflow.kafka.changelog import Snapshot, TaskStates
from eventflow.kafka.config import partition_for

TASKS = 12


def app() -> ef.App:
    p = ef.Pipeline("p")
    p.task(inputs=[ef.Dataset("raw")], outputs=[ef.Dataset("clean")], name="t")(lambda ctx: None)
    return ef.App([p])


def snapshot_of(*datasets: str) -> Snapshot:
    snapshot = Snapshot()
    for dataset in datasets:
        snapshot.add(codec.dataset_key(dataset, "").decode(), dump(DatasetState(seen=3)))
    return snapshot


def test_a_take_over_installs_only_the_datasets_whose_home_is_the_task() -> None:
    home, old = partition_for("p", TASKS), partition_for("clean", TASKS)
    assert home != old, "the test needs the dataset's name and its home in two tasks"
    engine = Engine(app())
    engine.datasets[("clean", "")] = DatasetState(seen=9)  # the current state, at home
    # A dataset produced outside, whose home is its own name, in the same task.
    local = next(f"x{i}" for i in range(1000) if partition_for(f"x{i}", TASKS) == old)
    TaskStates(engine, TASKS).install(old, snapshot_of("clean", local))
    assert engine.datasets[("clean", "")].seen == 9, "the stale record replaced it"
    assert engine.datasets[(local, "")].seen == 3, "a dataset at home is installed"


def test_readers_of_the_whole_changelog_skip_the_stale_copies() -> None:
    tasks = TaskStates(Engine(app()), TASKS)
    assert tasks.elsewhere(partition_for("clean", TASKS))("clean")
    assert not tasks.elsewhere(partition_for("p", TASKS))("clean")
    assert not tasks.elsewhere(partition_for("raw", TASKS))("raw")
