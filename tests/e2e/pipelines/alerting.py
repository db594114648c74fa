import eventflow as ef

raw = ef.Dataset("raw")
p = ef.Pipeline("failing")


@p.task(inputs=[raw])
def explode(ctx: ef.TaskContext) -> None:
    raise ef.Fail("disk full")


app = ef.App(
    [p],
    alerts=[ef.Alert("oncall", on=["run.failed"], webhook="${ALERT_HOOK}", format="slack")],
)
