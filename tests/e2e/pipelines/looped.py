"""A task that names the event loop running it: the process's own."""

import asyncio

import eventflow as ef

tick = ef.Dataset("tick")
seen = ef.Dataset("loop.seen")
p = ef.Pipeline("looped")


@p.task(inputs=[tick], outputs=[seen])
async def name_the_loop(ctx: ef.TaskContext) -> None:
    ctx.emit(seen, loop=type(asyncio.get_running_loop()).__module__)


app = ef.App([p])
