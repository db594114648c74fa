"""A faust-streaming app in exactly_once mode: count per key in a changelog table, emit each
count. Run by faust_eos.py, which SIGKILLs it mid-stream and checks the output."""

import os

import faust

app = faust.App(
    os.environ.get("EXP_APP", "eos-experiment"),
    broker=f"kafka://{os.environ['EXP_BOOTSTRAP']}",
    processing_guarantee="exactly_once",
    store="memory://",
    topic_partitions=6,
    topic_replication_factor=1,
    broker_session_timeout=6.0,
    web_enabled=False,
)
source = app.topic(os.environ["EXP_IN"], key_type=str, value_type=str, partitions=6)
sink = app.topic(os.environ["EXP_OUT"], key_type=str, value_type=str, partitions=6)
counts = app.Table("counts", default=int, partitions=6)


@app.agent(source)
async def count(stream):  # type: ignore[no-untyped-def]
    async for key, value in stream.items():
        counts[key] += 1
        await sink.send(key=key, value=f"{value}:{counts[key]}")


if __name__ == "__main__":
    app.main()
