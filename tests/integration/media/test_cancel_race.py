"""CANCEL at every await point of an inbound call's set-up (issue #17): the edge in-process over real
PostgreSQL and real UDP sockets, the caller a plain socket. Each await of `inbound.set_up` is held open by
a gate around the real step (the route lookup, the RTP sockets, the apology prompt) while the caller
cancels or hangs up; then the step completes. The caller must get exactly one final answer to its INVITE
(487), nothing may be answered twice (the transaction layer raises if it is: `new_call_failed`), and no
leg, set-up entry or media port may be left behind."""

from __future__ import annotations

import asyncio
import gc
import secrets
import socket
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import structlog

from services.kernel.ids import new_id
from services.kernel.waits import close_pool
from services.media import sip
from services.media.prompts import PromptStore
from services.media.ua.edge import EdgeConfig, SipEdge
from services.media.ua.store import Store
from services.runtime.embedded import free_port

from .sipclient import header, request, sdp, status_of

pytestmark = pytest.mark.timeout(60)


class Gate:
    """Holds one awaited step of the edge until released; `reached` is set when the edge waits on it."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def around(self, step: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def held(*args: Any, **kwargs: Any) -> Any:
            self.reached.set()
            await self.release.wait()
            return await step(*args, **kwargs)

        return held


class Caller:
    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.local = self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    async def replies(self, seconds: float) -> list[bytes]:
        out: list[bytes] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                out.append(self.sock.recv(65536))
            except BlockingIOError:
                await asyncio.sleep(0.01)
        return out


@pytest.fixture(autouse=True)
def no_errors() -> Iterator[None]:
    """Answering a finished transaction raises inside the edge, which logs it (`new_call_failed`) and
    carries on: the caller could not tell, the log can."""
    with structlog.testing.capture_logs() as logs:
        yield
    errors = [entry for entry in logs if entry["log_level"] in ("error", "exception", "critical")]
    assert errors == []


@pytest.fixture
async def edge(infra, tmp_path: Path) -> AsyncIterator[tuple[SipEdge, str, str]]:  # type: ignore[no-untyped-def]
    owner = await asyncpg.connect(infra.owner_url)
    tenant, number = new_id(), f"+1444{secrets.randbelow(10**7):07d}"
    await owner.execute(
        "INSERT INTO tenants (id, name, admin_email, max_concurrent_calls) VALUES ($1, 'race', 'r@example.com', 5)",
        tenant,
    )
    await owner.execute(
        "INSERT INTO numbers (id, tenant_id, e164) VALUES ($1, $2, $3)", new_id(), tenant, number
    )
    await owner.close()
    pool = await asyncpg.create_pool(infra.app_url, min_size=1, max_size=2)
    low = 52000 + (free_port() % 200) * 10
    sip_edge = SipEdge(
        EdgeConfig(port=free_port(), rtp_low=low, rtp_high=low + 10, max_lag=0, max_cpu=0),
        store=Store(pool),
        prompts=PromptStore(tmp_path),
        publish=_discard,
    )
    await sip_edge.start()
    try:
        yield sip_edge, number, "+14449999999"  # a claimed number and one nobody claimed
    finally:
        await sip_edge.stop()
        await close_pool(pool)


async def _discard(event: object) -> None:
    pass


def _invite(caller: Caller, number: str) -> tuple[bytes, bytes]:
    uri = f"sip:{number}@127.0.0.1:{caller.port}"
    same = {"call_id": secrets.token_hex(8), "via_branch": sip.new_branch(), "from_tag": secrets.token_hex(4)}
    invite = request("INVITE", uri, local_port=caller.local, body=sdp(4000), **same)  # type: ignore[arg-type]
    return invite, request("CANCEL", uri, local_port=caller.local, **same)  # type: ignore[arg-type]


def _finals(replies: list[bytes], method: str) -> list[int]:
    """The distinct final answers to `method` (a retransmission of the same answer counts once)."""
    seen = {
        (status_of(r), header(r, "To"))
        for r in replies
        if status_of(r) >= 200 and (header(r, "CSeq") or "").endswith(method)
    }
    return sorted(status for status, _ in seen)


def _dialog(invite: bytes, ok: bytes) -> dict[str, str]:
    """The ids of the dialog the 200 OK to `invite` made, for the caller's requests in it."""
    return {
        "call_id": header(invite, "Call-ID") or "",
        "from_tag": (header(invite, "From") or "").split("tag=")[1],
        "to_tag": (header(ok, "To") or "").split("tag=")[1],
    }


def _assert_clean(edge: SipEdge) -> None:
    assert edge.legs == {} and edge.pending == {}
    assert edge.slots.mine == {}
    assert edge.ports.in_use == set()


@pytest.mark.parametrize("user", ["claimed", "alice"])
async def test_cancel_before_set_up_starts(edge: tuple[SipEdge, str, str], user: str) -> None:
    # INVITE and CANCEL read in one batch: the CANCEL is handled before the set-up task first runs (for
    # "alice", not a number, set-up would answer 404 at once, before any await).
    sip_edge, number, _ = edge
    caller = Caller(sip_edge.config.port)
    invite, cancel = _invite(caller, number if user == "claimed" else user)
    sip_edge.transport.on_datagram(invite, ("127.0.0.1", caller.local))
    sip_edge.transport.on_datagram(cancel, ("127.0.0.1", caller.local))
    replies = await caller.replies(0.5)
    assert _finals(replies, "INVITE") == [487] and _finals(replies, "CANCEL") == [200]
    _assert_clean(sip_edge)


@pytest.mark.parametrize("claimed", [True, False], ids=["known-number", "unknown-number"])
async def test_cancel_during_the_route_lookup(edge: tuple[SipEdge, str, str], claimed: bool) -> None:
    sip_edge, number, unknown = edge
    gate = Gate()
    sip_edge.store.route = gate.around(sip_edge.store.route)  # type: ignore[method-assign]
    caller = Caller(sip_edge.config.port)
    invite, cancel = _invite(caller, number if claimed else unknown)
    caller.send(invite)
    await asyncio.wait_for(gate.reached.wait(), 5)
    caller.send(cancel)
    replies = await caller.replies(0.3)
    gate.release.set()  # the lookup ends (a route, or none: the 404 that used to be sent twice)
    replies += await caller.replies(0.5)
    assert _finals(replies, "INVITE") == [487] and _finals(replies, "CANCEL") == [200]
    _assert_clean(sip_edge)


async def test_cancel_while_the_rtp_sockets_open(edge: tuple[SipEdge, str, str]) -> None:
    sip_edge, number, _ = edge
    gate = Gate()
    sip_edge.open_rtp = gate.around(sip_edge.open_rtp)  # type: ignore[method-assign]
    caller = Caller(sip_edge.config.port)
    invite, cancel = _invite(caller, number)
    caller.send(invite)
    await asyncio.wait_for(gate.reached.wait(), 5)
    caller.send(cancel)
    replies = await caller.replies(0.3)
    gate.release.set()
    replies += await caller.replies(0.5)
    assert 180 in [status_of(r) for r in replies]  # the 180 went out before the sockets
    assert _finals(replies, "INVITE") == [487] and _finals(replies, "CANCEL") == [200]
    _assert_clean(sip_edge)


async def test_bye_while_the_apology_is_rendered(edge: tuple[SipEdge, str, str]) -> None:
    # The last await comes after the 200 OK: the caller can no longer cancel, but it can hang up.
    sip_edge, number, _ = edge
    gate = Gate()
    sip_edge.prompts.text = gate.around(sip_edge.prompts.text)  # type: ignore[method-assign]
    caller = Caller(sip_edge.config.port)
    invite, _ = _invite(caller, number)
    caller.send(invite)
    await asyncio.wait_for(gate.reached.wait(), 5)
    replies = await caller.replies(0.3)
    ok = next(r for r in replies if status_of(r) == 200)
    to_tag = (header(ok, "To") or "").split("tag=")[1]
    from_tag = (header(invite, "From") or "").split("tag=")[1]
    uri = f"sip:{number}@127.0.0.1:{caller.port}"
    call_id = header(invite, "Call-ID")
    for method, cseq in (("ACK", 1), ("BYE", 2)):
        caller.send(
            request(
                method,
                uri,
                local_port=caller.local,
                call_id=call_id,
                from_tag=from_tag,
                to_tag=to_tag,
                cseq=cseq,
            )
        )
    replies = await caller.replies(0.3)
    assert _finals(replies, "BYE") == [200]
    gate.release.set()
    replies = await caller.replies(0.5)
    assert replies == []  # nothing more: no second BYE, no prompt for a call that is over
    _assert_clean(sip_edge)


async def test_an_ended_calls_leg_and_rtp_session_are_freed_at_once(edge: tuple[SipEdge, str, str]) -> None:
    # The INVITE's transaction lives on 32 s after the call (RFC 6026 Timer L); the edge's table of INVITE
    # transactions kept the leg, its RTP session and jitter buffer that long: about 2,000 of them at load.
    sip_edge, number, _ = edge
    ended: list[weakref.ref[object]] = []
    sip_edge.on_end.append(lambda leg: ended.extend((weakref.ref(leg), weakref.ref(leg.rtp))))
    caller = Caller(sip_edge.config.port)
    invite, _ = _invite(caller, number)
    caller.send(invite)
    replies: list[bytes] = []
    deadline = time.monotonic() + 10
    while not any(status_of(r) == 200 for r in replies) and time.monotonic() < deadline:
        replies += await caller.replies(0.1)
    ok = next(r for r in replies if status_of(r) == 200)
    uri = f"sip:{number}@127.0.0.1:{caller.port}"
    dialog = _dialog(invite, ok)
    for method, cseq in (("ACK", 1), ("BYE", 2)):
        caller.send(request(method, uri, local_port=caller.local, cseq=cseq, **dialog))
    assert _finals(await caller.replies(0.3), "BYE") == [200]
    _assert_clean(sip_edge)
    gc.collect()
    assert len(ended) == 2 and [ref() for ref in ended] == [None, None]


async def test_the_same_invite_on_another_branch_is_a_merged_request_not_a_second_call(
    edge: tuple[SipEdge, str, str],
) -> None:
    # RFC 3261 8.2.2.2: the INVITE again (Call-ID, From tag, CSeq) on a new transaction (another Via branch:
    # a forking proxy, or a client that "retransmits" with a fresh branch, as the first-call benchmark's
    # callers did under load) gets 482. Answered as a new call, it became a second contact: an agent took
    # it and heard silence, since the caller's RTP went to the first call's port (docs/media.md).
    sip_edge, number, _ = edge
    lookup, prompt = Gate(), Gate()
    sip_edge.store.route = lookup.around(sip_edge.store.route)  # type: ignore[method-assign]
    sip_edge.prompts.text = prompt.around(sip_edge.prompts.text)  # type: ignore[method-assign]
    caller = Caller(sip_edge.config.port)
    invite, _ = _invite(caller, number)
    first_branch = (header(invite, "Via") or "").split("branch=")[1].split(";")[0]

    def copy() -> bytes:
        return invite.replace(first_branch.encode(), sip.new_branch().encode())

    caller.send(invite)
    await asyncio.wait_for(lookup.reached.wait(), 5)
    caller.send(copy())  # while the first is in set-up
    assert _finals(await caller.replies(0.3), "INVITE") == [482]
    lookup.release.set()
    await asyncio.wait_for(prompt.reached.wait(), 5)  # answered (an unrouted number: its message next)
    replies = await caller.replies(0.3)
    ok = next(r for r in replies if status_of(r) == 200)
    uri = f"sip:{number}@127.0.0.1:{caller.port}"
    dialog = _dialog(invite, ok)
    caller.send(request("ACK", uri, local_port=caller.local, cseq=1, **dialog))
    await caller.replies(0.1)
    caller.send(copy())  # while the first call is up
    assert _finals(await caller.replies(0.3), "INVITE") == [482]
    assert len(sip_edge.legs) == 1
    caller.send(request("BYE", uri, local_port=caller.local, cseq=2, **dialog))
    assert _finals(await caller.replies(0.3), "BYE") == [200]
    prompt.release.set()
    await caller.replies(0.2)
    _assert_clean(sip_edge)
    assert sip_edge.invites == {}
