"""A Kafka service's cyclic garbage collector under a steady load: middle and full collections
are spaced out, so a full one, which walks every state the service made, stays rare."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: In a fresh interpreter (a service freezes what it loaded): steps of `SIZE` objects each, the
#: last `ALIVE` of them in flight, through `eventflow.serving._run` as a Kafka service runs.
SCRIPT = textwrap.dedent(
    """
    import collections, gc, json
    from eventflow.serving import MIDDLE_COLLECTIONS, _run
    from eventflow.settings import Settings

    SIZE, ALIVE, STEPS = 1000, 20, 4000
    seen = collections.Counter()
    gc.callbacks.append(lambda phase, info: phase == "stop" and seen.update([info["generation"]]))

    async def main() -> int:
        seen.clear()  # not the collection before the loop starts
        in_flight = collections.deque(maxlen=ALIVE)
        for _ in range(STEPS):
            in_flight.append([[] for _ in range(SIZE)])
        return 0

    _run(main(), Settings(event_loop="asyncio"), middle_collections=MIDDLE_COLLECTIONS)
    print(json.dumps({"collections": sum(seen.values()), "full": seen[2]}))
    """
)


def test_a_kafka_service_seldom_makes_a_full_collection() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["collections"] > 3000, seen  # the load was there
    # At Python's default thresholds about one collection in 130 is a full one (30 here).
    assert seen["full"] * 500 < seen["collections"], seen
