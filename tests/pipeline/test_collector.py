"""The collector policy around big one-off allocations (desktop_app/pipeline/collector.py).

These freeze objects in the test process: harmless (frozen objects are still freed by their
reference counts), and the checks below only use objects made for them.
"""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from desktop_app.pipeline import collector


class Node:
    """An object in a reference cycle: only the cyclic collector frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    was = gc.isenabled()
    gc.enable()
    yield
    (gc.enable if was else gc.disable)()


def test_full_collections_wait_during_long_lived_work_and_garbage_is_still_freed() -> None:
    threshold = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with collector.long_lived_work():
        assert gc.get_threshold() == (*threshold[:2], collector.HELD_THRESHOLD)
        with collector.long_lived_work():  # nested: still held
            pass
        assert gc.get_threshold()[2] == collector.HELD_THRESHOLD
        garbage = Node()
        kept = Node()
        garbage_ref = weakref.ref(garbage)
        del garbage
    assert gc.get_threshold() == threshold
    assert garbage_ref() is None  # collected at the end, not frozen with the survivors
    assert gc.get_freeze_count() > frozen  # the survivors (`kept` among them) are frozen
    assert kept.me is kept


def test_a_caller_that_switched_the_collector_off_gets_nothing_collected_or_frozen() -> None:
    threshold = gc.get_threshold()
    gc.disable()
    frozen = gc.get_freeze_count()
    with collector.long_lived_work():
        cycle = Node()
    assert not gc.isenabled() and gc.get_threshold() == threshold
    assert gc.get_freeze_count() == frozen
    del cycle


def test_free_collects_a_dropped_cycle_even_when_a_compile_froze_it() -> None:
    model = Node()
    ref = weakref.ref(model)
    with collector.long_lived_work():  # as a compile while the model is loaded
        pass
    del model
    gc.collect()
    assert ref() is not None  # frozen in its cycle: a plain collection does not free it
    assert collector.free([ref])
    assert ref() is None


def test_free_is_cheap_for_objects_already_gone_and_says_when_one_stays(
        caplog: pytest.LogCaptureFixture) -> None:
    gone = Node()
    refs = collector.weak_refs([gone, 5, "text"])  # plain values cannot be referenced weakly
    assert len(refs) == 1
    del gone
    gc.collect()
    assert collector.free(refs)
    still_held = Node()
    assert not collector.free(collector.weak_refs([still_held]))
    assert "still referenced" in caplog.text
