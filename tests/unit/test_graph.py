"""`eventflow graph --dot` draws everything `eventflow graph` lists: datasets, tasks, checks and
the schedules' clock datasets."""

from __future__ import annotations

import eventflow as ef
from eventflow.graph import graph_dot


def test_the_dot_graph_shows_checks_and_schedules() -> None:
    tick, rows, total = ef.Dataset("clock.daily"), ef.Dataset("rows"), ef.Dataset("total")
    p = ef.Pipeline("p")
    p.schedule(tick, "0 6 * * *")

    @p.task(inputs=[tick], outputs=[rows])
    def load(ctx: ef.TaskContext) -> None:
        pass

    @p.task(inputs=[rows], outputs=[total])
    def add(ctx: ef.TaskContext) -> None:
        pass

    @p.check(rows)
    def enough(ctx: ef.CheckContext) -> bool:
        return True

    @p.check(total, blocking=False)
    def plausible(ctx: ef.CheckContext) -> bool:
        return True

    dot = graph_dot(ef.App([p])).splitlines()
    assert (
        '  "clock.daily" [label="clock.daily\\ncron 0 6 * * * (UTC)", shape=ellipse, style=dashed];'
        in dot
    )
    assert '  "rows" [shape=ellipse];' in dot
    assert '  "clock.daily" -> "task:load";' in dot
    assert '  "task:add" -> "total";' in dot
    assert '  "check:enough" [label="enough", shape=octagon, style=solid];' in dot
    assert '  "check:plausible" [label="plausible", shape=octagon, style=dashed];' in dot
    assert '  "rows" -> "check:enough" [style=dashed, arrowhead=none];' in dot
    assert dot[0] == "digraph eventflow {" and dot[-1] == "}"
