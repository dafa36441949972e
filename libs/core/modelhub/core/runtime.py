"""Process-wide runtime tuning that every service applies once it has started.

CPython's cyclic garbage collector runs a young-generation pass every 700 net allocations of container
objects, and a service handling batches (thousands of decoded events, rows and documents alive at once) makes
such objects by the hundred thousand: passes run thousands of times a second, each walking what the batch
has built so far, and the survivors are promoted and walked again by the older generations' passes. Measured on
the search consumer (bench/search/indexing_profile.py), this cost about a fifth of its CPU. Objects here are
freed by reference counting as soon as they are dropped; the collector is only needed for reference cycles,
which are rare and small in this code, so collecting them less often costs little memory.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 10_000
"""Net allocations of container objects between two young-generation passes (CPython's default: 700). A pass
then finds at most this many objects of cyclic garbage waiting, a few megabytes at most."""


def settle_after_startup(young_threshold: int = YOUNG_GENERATION_THRESHOLD) -> None:
    """Call once a service has built what it keeps for its lifetime (engines, pools, servers, modules).

    Freezes what exists now (the collector's passes no longer walk it, each of which would otherwise take tens
    of milliseconds in the middle of some call) and makes young-generation passes rarer; the older
    generations keep CPython's ratios to it."""
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(young_threshold, middle, old)
