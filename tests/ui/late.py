"""For the UI's freshness views: a feed that must get a new version every few seconds, and daily
sales due at every other second's tick (yesterday's partition is due at once), with a task that
has a deadline of its own."""

from datetime import timedelta

import eventflow as ef

feed = ef.Dataset("feed", freshness=ef.Freshness(max_age=timedelta(seconds=4)))
sales = ef.Dataset("sales", ef.daily(), freshness=ef.Freshness(deadline="* * * * * */2"))
totals = ef.Dataset("totals", ef.daily())

late = ef.Pipeline("late")


@late.task(inputs=[feed])
def read_feed(ctx: ef.TaskContext) -> None:
    pass


@late.task(inputs=[sales], outputs=[totals], deadline="* * * * * */2")
def total(ctx: ef.TaskContext) -> None:
    ctx.emit(totals)


app = ef.App([late])
