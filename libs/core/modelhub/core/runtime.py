"""Process-wide runtime tuning that every service applies once it has started.

CPython's cyclic garbage collector runs a young-generation pass every 700 net allocations of container
objects, and a service handling batches (thousands of decoded events, rows and documents alive at once) makes
such objects by the hundred thousand: passes run thousands of times a second, each walking what the batch
has built so far, and the survivors are promoted and walked again by the older generations' passes. Measured on
the search consumer (bench/search/indexing_profile.py), this cost about a fifth of its CPU. Objects here are
freed by reference counting as soon as they are dropped; the collector is only needed for reference cycles,
which are rare and small in this code, so collecting them less often costs little memory
(docs/adr/0011-garbage-collector-settled-after-start-up.md).
"""

from __future__ import annotations

import gc

GC_THRESHOLDS = (50_000, 20, 20)
"""Net allocations of container objects between two young-generation passes (CPython: 700), and young passes
per middle one, middle passes per old one (CPython: 10, 10). A young pass then finds at most 50,000 objects of
cyclic garbage waiting, a few megabytes. Measured: the search consumer's CPU per indexed document fell by a
fifth (10,000 did as well), the ledger's single transfers per second rose by 15-30 %."""


def settle_after_startup() -> None:
    """Call once a service has built what it keeps for its lifetime (engines, pools, servers, modules).

    Freezes what exists now (the collector's passes no longer walk it, each of which would otherwise take tens
    of milliseconds in the middle of some call) and makes the collector's passes rarer (GC_THRESHOLDS)."""
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
