"""Pause Python's cyclic garbage collector around bulk work that only builds live objects."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused() -> Iterator[None]:
    """Suspend the cyclic garbage collector inside the block if it is enabled.

    Building many long-lived objects (an index, an SDK's models at import) makes the
    collector walk the growing heap again and again for no garbage; reference counting
    still frees what dies meanwhile. A collector the caller had off stays off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
