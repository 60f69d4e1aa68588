"""Provide test helpers: a loopback OpenAI-compatible server driven by plain functions.

Names are imported lazily so that ``python -m selfinstruct.testing.server`` does not
load the server module twice (once as the package's attribute, once as ``__main__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from selfinstruct.testing.server import (
        Endpoint,
        Handler,
        OpenAITestServer,
        RecordedRequest,
        Reply,
        ServerStats,
        echo_handler,
        echo_text,
        load_handler,
    )

__all__ = [
    "Endpoint",
    "Handler",
    "OpenAITestServer",
    "RecordedRequest",
    "Reply",
    "ServerStats",
    "echo_handler",
    "echo_text",
    "load_handler",
]


def __getattr__(name: str) -> object:
    """Import a public name from the server module on first use."""
    if name in __all__:
        return getattr(importlib.import_module("selfinstruct.testing.server"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """List the public names alongside the module's own."""
    return sorted([*globals(), *__all__])
