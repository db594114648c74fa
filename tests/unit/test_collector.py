"""A service's cyclic garbage collector under load: objects that live for a few young collections
(a Kafka step's records, events and futures, held across its round trips to the broker) die
before they reach the old generation, so full collections, which walk every state, stay rare."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

#: In a fresh interpreter (a service freezes what it loaded): steps of `SIZE` objects each, the
#: last `ALIVE` of them in flight, through `eventflow.serving._run` as a service runs its main.
SCRIPT = textwrap.dedent(
    """
    import collections, gc, json
    from eventflow.serving import _run
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

    _run(main(), Settings(event_loop="asyncio"))
    print(json.dumps({"collections": sum(seen.values()), "full": seen[2]}))
    """
)


def test_objects_living_through_a_few_young_collections_seldom_cost_a_full_one() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["collections"] > 3000, seen  # the load was there
    # At Python's default thresholds one collection in a hundred is a full one (30 here).
    assert seen["full"] * 500 < seen["collections"], seen
