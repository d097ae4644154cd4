"""Python's cyclic garbage collector paused while a session's page table is built.

Loading 100,000 pages allocates a few million objects, none of them in a reference cycle (pages, their sizes, the
index's tuples). Each allocation past the collector's threshold starts a collection that walks the young objects,
and every so often the older generations too: on a 100,000-page ``session_start`` those collections were about
a third of its CPU, and found nothing to free. Reference counting still frees everything as usual while paused;
only cycle detection waits until the load is over.

A pause that leaves many new objects behind (a large table: ``FREEZE_AT`` or more, net of those freed) ends with
``gc.freeze()``: otherwise the first collections after it walk every one of them once per generation (0.25 s for
a full collection after a 100,000-page load), and every later full collection again. Frozen objects are still
freed by reference counting; only a cycle among objects alive at that moment would never be collected, a small
and bounded cost set against a quarter-second pause on a server's request path. Small loads freeze nothing.

Pauses nest and may overlap (two sessions loading on one event loop): the collector runs again when the last
one ends, and only if it was running when the first began.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["FREEZE_AT", "gc_paused"]

# new tracked objects a pause may leave before they are frozen (about 8 a page: a table of ~25,000 pages)
FREEZE_AT = 200_000
_depth = 0
_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    if _depth == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _was_enabled:
            if gc.get_count()[0] >= FREEZE_AT:  # the youngest generation's count: what the pause left tracked
                gc.freeze()
            gc.enable()
