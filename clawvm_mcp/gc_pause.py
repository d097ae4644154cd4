"""Python's cyclic garbage collector paused while a session's page table is built.

Loading 100,000 pages allocates a few million objects, none of them in a reference cycle (pages, their sizes, the
index's tuples). Each allocation past the collector's threshold starts a collection that walks the young objects,
and every so often the older generations too: on a 100,000-page ``session_start`` those collections were about
a third of its CPU, and found nothing to free. Reference counting still frees everything as usual while paused;
only cycle detection waits until the load is over.

Pauses nest and may overlap (two sessions loading on one event loop): the collector runs again when the last
one ends, and only if it was running when the first began.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]

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
            gc.enable()
