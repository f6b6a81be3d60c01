"""No wait that can last for ever: the awaits that hung suites before are banned, and a bounded wait that
runs out names what it waited for."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import pytest

from services.kernel.waits import WaitTimeout, within

REPO = Path(__file__).resolve().parents[3]

# `await x.keys()` is nats-py's KeyValue.keys(): a watcher that can wait for ever (use Bus.kv_latest);
# `await x.close()` on a pool waits for every connection to come back (use kernel.waits.close_pool);
# `await x.list()` on an object store lists through the same kind of watcher (wrap it in within()).
BANNED = {"keys": "Bus.kv_latest", "list": "within(...)"}
POOL_NAMES = {"pool", "state.pool", "self.pool", "self._pool"}


def _unbounded_awaits(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Await) and isinstance(node.value, ast.Call)):
            continue
        func = node.value.func
        if not isinstance(func, ast.Attribute) or node.value.args or node.value.keywords:
            continue
        receiver = ast.unparse(func.value)
        if func.attr in BANNED and not receiver.endswith(("client", "trunks", "s")):
            found.append(
                f"{path.relative_to(REPO)}:{node.lineno}: await {receiver}.{func.attr}() -> {BANNED[func.attr]}"
            )
        if func.attr == "close" and receiver in POOL_NAMES:
            found.append(f"{path.relative_to(REPO)}:{node.lineno}: await {receiver}.close() -> close_pool")
    return found


def test_no_known_unbounded_await_in_services_or_tests() -> None:
    found = [
        hit
        for root in ("services", "tests", "sdk", "cli")
        for path in sorted((REPO / root).rglob("*.py"))
        if ".venv" not in path.parts
        for hit in _unbounded_awaits(path)
    ]
    assert not found, "unbounded awaits:\n" + "\n".join(found)


async def test_within_names_what_it_waited_for() -> None:
    never = asyncio.Event()
    with pytest.raises(WaitTimeout, match=r"gave up after 0.05 s waiting for the gate"):
        await within(0.05, "the gate", never.wait())
    assert await within(1.0, "a value", asyncio.sleep(0, result=7)) == 7
