"""Process-wide runtime tuning applied once a service has started."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from modelhub.core.runtime import GC_THRESHOLDS, settle_after_startup


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_settling_freezes_what_exists_and_makes_collections_rarer() -> None:
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    assert gc.get_freeze_count() == 0
    settle_after_startup()
    assert gc.get_freeze_count() > 0  # what exists now (modules, this test's objects) is frozen
    assert gc.get_threshold() == GC_THRESHOLDS

    class Node:
        other: object = None

    a, b = Node(), Node()
    a.other, b.other = b, a  # a reference cycle made after start-up: only the collector frees it
    gone = weakref.ref(a)
    del a, b
    gc.collect()
    assert gone() is None
