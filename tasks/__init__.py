"""The sync tasks: one module per record type (``tasks.registry``) plus the scheduled ones.

Importing this package imports every task module the registry names, so naming the package is
enough to register every task with the Celery app. A module that fails to import raises here,
stopping the worker with its error instead of being skipped.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from tasks.registry import TASK_MODULES


def load_task_modules(modules: tuple[str, ...] = TASK_MODULES) -> list[ModuleType]:
    """Import ``modules`` (all of them; the first that is missing or broken raises)."""
    return [importlib.import_module(name) for name in modules]


load_task_modules()
