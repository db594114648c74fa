"""`explain` on each runtime reads the state the runtime has committed, whichever it is."""

from __future__ import annotations

import eventflow as ef

from .conftest import Start
from .harness import Recorder

D1 = "2026-11-21"


async def test_a_task_waiting_for_its_second_input_says_so(start: Start) -> None:
    rec = Recorder()
    x, y = ef.Dataset("x", ef.daily()), ef.Dataset("y", ef.daily())
    p = ef.Pipeline("p")
    p.task(inputs=[x, y], name="join")(rec.enter)
    async with start(ef.App([p])) as h:
        await h.emit("x", D1, version=4)
        await h.wait_idle()
        waiting = await h.explain("p", "join", D1)
        await h.act("p", "pause")
        await h.emit("y", D1, version=2)
        await h.wait_idle()
        paused = await h.explain("p", "join", D1)
        await h.act("p", "resume")
        await h.wait_for_runs(1)
        await h.wait_idle()
        done = await h.explain("p", "join", D1)
    assert (waiting.status, waiting.verdict) == ("waiting", "waiting for y")
    inputs = [i.detail for i in waiting.items if i.check == "input"]
    assert inputs == [
        "latest version 4; never consumed (partition 2026-11-21)",
        "no version yet; never consumed (partition 2026-11-21)",
    ]
    assert (paused.status, paused.verdict) == ("waiting", "waiting for resume (paused by tester)")
    assert [i.title for i in done.items if i.check == "attempt"] == ["last attempt succeeded"]
    assert rec.calls == [("join", D1, {"x": 4, "y": 2})]
