import eventflow as ef

raw = ef.Dataset("raw")
p = ef.Pipeline("failing")


@p.task(inputs=[raw])
def explode(ctx: ef.TaskContext) -> None:
    raise RuntimeError("disk full")


app = ef.App([p])
