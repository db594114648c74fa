"""The bench's CPU accounting of the services: a process's own seconds, and its children's apart
(a dev instance's history process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from bench import deploy

BUSY = "while True: pass"


def test_a_busy_child_is_found_and_its_cpu_grows() -> None:
    child = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        assert child.pid in deploy._children(os.getpid())
        deadline = time.monotonic() + 60
        while deploy._cpu_s(child.pid) < 0.1:  # until it has run a tenth of a second
            assert time.monotonic() < deadline, "the busy child used no CPU in 60 s"
            time.sleep(0.01)
    finally:
        child.kill()
        child.wait()
    assert deploy._cpu_s(child.pid) == 0.0, "a process that is gone counts nothing"
