"""Teacher backends: one abstract method, `complete`, batch-first and async.

`build_backend` is the one way to get a backend from a RunConfig (the CLI, the dry run and
the tests all go through `selfinstruct.runner`). Backends are named in a table of
``"module:Class"`` strings, so a backend's heavy dependencies load only when it is chosen.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from selfinstruct import collector
from selfinstruct.backends.base import Backend, Notify

if TYPE_CHECKING:
    from selfinstruct.config import RunConfig, TeacherConfig

__all__ = ["BACKENDS", "Backend", "backend_class", "backend_name", "build_backend"]

BACKENDS: dict[str, str] = {
    "openai": "selfinstruct.backends.openai_compat:OpenAICompatBackend",
    "batch-api": "selfinstruct.backends.batch_api:BatchAPIBackend",
    "local": "selfinstruct.backends.local:LocalLlamaBackend",
    "vllm": "selfinstruct.backends.vllm_offline:VLLMOfflineBackend",
}


def backend_name(teacher: TeacherConfig) -> str:
    """Return the BACKENDS entry a teacher config names (its backend must be resolved)."""
    if teacher.backend == "auto":
        raise ValueError("teacher.backend is not resolved; call selfinstruct.runner.resolve")
    if teacher.backend == "openai" and teacher.batch_api:
        return "batch-api"
    return teacher.backend


def backend_class(name: str) -> type[Backend]:
    """Import and return the backend class of a BACKENDS entry."""
    module, _, attr = BACKENDS[name].partition(":")
    # Importing a backend's SDK builds thousands of objects (the openai package's models),
    # none of them garbage: the cyclic collector walked the growing heap again and again
    # meanwhile, ~0.06 s of the ~0.43 s `import openai` takes before the first request.
    with collector.paused():
        cls: type[Backend] = getattr(importlib.import_module(module), attr)
    return cls


def build_backend(
    config: RunConfig, api_key: str | None, *, notify: Notify | None = None
) -> Backend:
    """Build the backend of a resolved config (see selfinstruct.runner.resolve)."""
    return backend_class(backend_name(config.teacher)).from_config(config, api_key, notify=notify)
