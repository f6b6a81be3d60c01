"""Start-up time no service needs to spend. structlog's `dev` module (imported by `import structlog`) and
httpx's command-line client (imported by `import httpx`) both import rich, and rich's tracebacks pygments:
about a third of a second of every service process's start on a quiet machine (1.7 s of a 7 s API import
at load 12), to pretty-print tracebacks on a terminal and to run `httpx` from a shell, neither of which a
service does. Both fall back by design when rich cannot be imported: structlog to plain tracebacks (rich is
hidden while it loads, services/kernel/log.py), httpx to a stub `main` (its `httpx._main` is refused by an
import hook that services/__init__.py installs). A process that already imported rich (the CLI) keeps it."""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

__all__ = ["refuse_httpx_cli", "without_rich"]


class _RefuseHttpxCli(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname == "httpx._main":
            raise ImportError("httpx's command-line client is not used by Switchboard's services")
        return None


def refuse_httpx_cli() -> None:
    """Install the hook once (before anything imports httpx; harmless after)."""
    if not any(isinstance(finder, _RefuseHttpxCli) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RefuseHttpxCli())


@contextlib.contextmanager
def without_rich() -> Iterator[None]:
    if "rich" in sys.modules:
        yield
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # typeshed omits None (import then raises)
    try:
        yield
    finally:
        if sys.modules.get("rich", 0) is None:
            del sys.modules["rich"]
