"""Named kill points for the SIGKILL-resume tests: ``S4FUSE_TEST_KILL_AT=<name>[@<n>]`` makes the
process SIGKILL itself the ``n``-th time (default 1st) it reaches :func:`kill_point` ``(name)``.

A real SIGKILL (no cleanup, no ``finally``) at a named moment is deterministic where timing a kill
from outside is not. Unset (the normal case) it costs one environment lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

ENV = "S4FUSE_TEST_KILL_AT"
_hits: Counter = Counter()


def kill_point(name: str) -> None:
    """SIGKILL this process if ``S4FUSE_TEST_KILL_AT`` names this point (and hit count)."""
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    point, _, nth = wanted.partition("@")
    if point != name:
        return
    _hits[name] += 1
    if _hits[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
