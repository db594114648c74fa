"""Does faust-streaming's `processing_guarantee="exactly_once"` hold when its worker is killed?

    python experiments/faust_eos.py [--bootstrap HOST:PORT] [--kills 10] [--messages 3000]

Starts `faust_eos_app.py` (count per key in a changelog table, emit each count), produces a
paced stream, SIGKILLs the worker `--kills` times mid-stream (restarting it each time), then
reads the output with read_committed. Exactly once means: every input appears once in the
output, and each key's counts run 1..n with no repeat and no gap (the table and the output
agree). Without --bootstrap it starts a broker with scripts/kafka_broker.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

HERE = Path(__file__).parent
ROOT = HERE.parent


def start_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, str(HERE / "faust_eos_app.py"), "worker", "-l", "info"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=log.parent,
        )


async def produce(bootstrap: str, topic: str, messages: int, keys: int, seconds: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        for seq in range(messages):
            await producer.send(topic, str(seq).encode(), key=f"k{seq % keys}".encode())
            await asyncio.sleep(seconds / messages)
        await producer.flush()
    finally:
        await producer.stop()


async def read_all(bootstrap: str, topic: str, quiet: float) -> list[tuple[str, str]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(6)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[tuple[str, str]] = []
        last = time.monotonic()
        while time.monotonic() - last < quiet:
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                for record in batch:
                    found.append((record.key.decode(), record.value.decode().strip('"')))
                    last = time.monotonic()
        return found
    finally:
        await consumer.stop()


async def create_topics(bootstrap: str, names: list[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, 6, 1) for name in names])
    finally:
        await admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap")
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--seconds", type=float, default=30.0, help="time to produce the stream")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    folder = Path(tempfile.mkdtemp(prefix="faust-eos-"))
    broker_dir = folder / "kafka"
    bootstrap = args.bootstrap
    if not bootstrap:
        up = subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "kafka_broker.py"),
                "up",
                "--dir",
                str(broker_dir),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        bootstrap = up.stdout.strip()
    run = uuid.uuid4().hex[:8]
    names = {"EXP_IN": f"exp-{run}.in", "EXP_OUT": f"exp-{run}.out", "EXP_APP": f"exp-{run}"}
    env = {**os.environ, "EXP_BOOTSTRAP": bootstrap, **names}
    asyncio.run(create_topics(bootstrap, [names["EXP_IN"], names["EXP_OUT"]]))
    log = folder / "worker.log"
    worker = start_worker(env, log)
    time.sleep(8)  # join, recover
    producer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import asyncio, sys; sys.path.insert(0, {str(HERE)!r}); "
            "from faust_eos import produce; "
            f"asyncio.run(produce({bootstrap!r}, {names['EXP_IN']!r}, {args.messages:d}, 50, "
            f"{args.seconds:f}))",
        ]
    )
    crashes = 0
    for n in range(args.kills):
        time.sleep(rng.uniform(0.5, args.seconds / args.kills))
        if worker.poll() is not None:
            crashes += 1
        else:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait()
        print(f"kill {n + 1}/{args.kills}", flush=True)
        worker = start_worker(env, log)
    producer.wait()
    outputs = asyncio.run(read_all(bootstrap, names["EXP_OUT"], quiet=60.0))
    if worker.poll() is not None:
        crashes += 1
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    if not args.bootstrap:
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "kafka_broker.py"),
                "down",
                "--dir",
                str(broker_dir),
            ],
            capture_output=True,
        )

    seen = Counter(value.split(":")[0] for _, value in outputs)
    duplicates = sum(c - 1 for c in seen.values() if c > 1)
    lost = sum(1 for seq in range(args.messages) if str(seq) not in seen)
    per_key: dict[str, list[int]] = defaultdict(list)
    for key, value in outputs:
        per_key[key].append(int(value.split(":")[1]))
    table_errors = sum(
        1 for key, counts in per_key.items() if sorted(counts) != list(range(1, len(counts) + 1))
    )
    tracebacks = log.read_text(errors="replace").count("Traceback")
    print(f"faust-streaming exactly_once, {args.kills} SIGKILLs, {args.messages} messages:")
    print(
        f"  outputs {len(outputs)}, duplicates {duplicates}, lost {lost}, "
        f"keys whose counts repeat or skip {table_errors}/{len(per_key)}, "
        f"worker crashes on its own {crashes}, tracebacks in log {tracebacks}"
    )
    print(f"  log: {log}")


if __name__ == "__main__":
    main()
