"""Three steps in a chain: each runs the moment the previous one's output is produced.

eventflow dev examples/hello.py --emit greetings.requested --until-idle
"""

import eventflow as ef

requested = ef.Dataset("greetings.requested")
drafted = ef.Dataset("greetings.drafted")
polished = ef.Dataset("greetings.polished")
sent = ef.Dataset("greetings.sent")

hello = ef.Pipeline("hello")


@hello.task(inputs=[requested], outputs=[drafted])
def draft(ctx: ef.TaskContext) -> None:
    who = ctx.inputs[requested].metadata.get("name", "world")
    ctx.emit(drafted, text=f"hello {who}")


@hello.task(inputs=[drafted], outputs=[polished])
async def polish(ctx: ef.TaskContext) -> None:
    text = ctx.inputs[drafted].metadata["text"]
    ctx.emit(polished, text=text.capitalize() + "!")


@hello.task(inputs=[polished], outputs=[sent])
def send(ctx: ef.TaskContext) -> None:
    text = ctx.inputs[polished].metadata["text"]
    ctx.log.warning("%s", text)
    ctx.emit(sent, text=text)


app = ef.App([hello])
