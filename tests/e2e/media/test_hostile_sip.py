"""Hostile SIP traffic at the front (issue #17): the SIP front and a media worker as real subprocesses,
traffic from several loopback addresses (127.0.0.0/8 is all loopback on Linux), SIPp as a real caller.

- a scanner on one address is answered 503 and then ignored, at the front, while SIPp calls from another
  address all succeed and OPTIONS from the other address keep being answered;
- malformed INVITEs (one a method starting with the bytes EF BF BE), each followed by its CANCEL, from
  many addresses leave nothing behind that touches another address: OPTIONS from 127.0.0.1 are answered
  throughout and a SIPp caller from 127.0.0.1 succeeds afterwards;
- OPTIONS with Max-Forwards: 0 is answered 200; every REGISTER is answered 405 with Allow.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.runtime.embedded import free_port
from tests.e2e.media.test_media_sharding import _env, _spawn, _wait_log
from tests.integration.media.sipclient import header, status_of
from tests.service_procs import sip_answers, stop_all
from tests.sipp_uac import sipp_command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

_fixtures = sys.modules["_media_fixtures"]  # tests/integration/media/conftest.py, loaded by ./conftest.py
HAS_SIPP = shutil.which("sipp") is not None

# The front's per-source limit in these tests (the defaults are documented in docs/security.md).
RATE, BURST, BAN_AFTER, BAN_S = 20, 40, 20, 30


@dataclass
class Front:
    port: int
    number: str
    log: Path
    site: str


@contextlib.contextmanager
def running_front(infra, *, workers: int, **env: str) -> Iterator[Front]:  # type: ignore[no-untyped-def]
    """The SIP front and `workers` media workers of a site of their own, with `env` for all of them."""
    seeded = asyncio.run(_fixtures._seed(infra.owner_url))
    port = free_port()
    site = f"edges-{secrets.token_hex(3)}"
    logs = infra.data_dir / f"edges-{port}"
    logs.mkdir()
    front_log = logs / "front.log"
    front_env = _env(infra, SB_SIP_PORT=str(port), SB_SITE=site, **env)
    procs = [_spawn([sys.executable, "-m", "services.media.front"], front_env, front_log)]
    for n in range(workers):
        low = 36000 + (port % 20) * 200 + n * 100
        worker_env = _env(
            infra,
            SB_SIP_PORT=str(port),
            SB_SITE=site,
            SB_MEDIA_WORKER_ID=f"{site}-w{n + 1}",
            SB_RTP_PORT_MIN=str(low),
            SB_RTP_PORT_MAX=str(low + 98),
            **env,
        )
        procs.append(_spawn([sys.executable, "-m", "services.media"], worker_env, logs / f"w{n + 1}.log"))
    try:
        _wait_log(front_log, "worker_linked", workers, 30.0)
        assert sip_answers(port, 10.0)
        yield Front(port=port, number=str(seeded["number"]), log=front_log, site=site)
    finally:
        stop_all(procs)


@pytest.fixture(scope="module")
def front(infra) -> Iterator[Front]:  # type: ignore[no-untyped-def]
    limits = {
        "SB_SIP_RATE": str(RATE),
        "SB_SIP_BURST": str(BURST),
        "SB_SIP_BAN_AFTER": str(BAN_AFTER),
        "SB_SIP_BAN_SECONDS": str(BAN_S),
    }
    with running_front(infra, workers=1, **limits) as running:
        yield running


def _sock(host: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, 0))
    return s


def _request(
    method: str,
    uri: str,
    sock: socket.socket,
    *,
    call_id: str | None = None,
    branch: str | None = None,
    cseq: str | None = None,
    extra: str = "",
) -> bytes:
    host, port = sock.getsockname()
    return (
        f"{method} {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {host}:{port};branch={branch or 'z9hG4bK' + secrets.token_hex(6)};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:scan@{host}>;tag={secrets.token_hex(3)}\r\n"
        f"To: <{uri}>\r\n"
        f"Call-ID: {call_id or secrets.token_hex(8)}\r\n"
        f"CSeq: {cseq or '1 ' + method}\r\n"
        f"{extra}"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _ask(sock: socket.socket, port: int, data: bytes, timeout: float = 1.0) -> bytes | None:
    """Send one request and return the first final response to it (matched by Call-ID)."""
    call_id = header(data, "Call-ID")
    sock.sendto(data, ("127.0.0.1", port))
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            reply = sock.recv(65536)
        except TimeoutError:
            return None
        if header(reply, "Call-ID") == call_id and status_of(reply) >= 200:
            return reply
    return None


def _options_ok(port: int, host: str = "127.0.0.1") -> bool:
    with _sock(host) as s:
        reply = _ask(s, port, _request("OPTIONS", f"sip:ping@127.0.0.1:{port}", s))
    return reply is not None and status_of(reply) == 200


def _sipp(port: int, number: str, tmp: Path, *, calls: int, rate: int, host: str = "127.0.0.1") -> None:
    result = subprocess.run(
        [
            *sipp_command(free_port(), host=host),
            *("-sn", "uac", "-s", number, f"127.0.0.1:{port}"),
            *("-m", str(calls), "-r", str(rate), "-l", str(calls), "-timeout", "30", "-timeout_error"),
            *("-trace_stat", "-stf", str(tmp / "stat.csv")),
        ],
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def _malformed_invites(uri: str, sock: socket.socket) -> list[tuple[bytes, bytes]]:
    """(INVITE, its CANCEL) pairs, each INVITE broken in one way (the classes a public SIP fuzzing suite
    covers: start line, method, headers, Via, lengths, encodings)."""
    out = []
    variants: list[tuple[bytes, bytes]] = [
        (b"\xef\xbf\xbeINVITE", b""),  # a method that is not a token (U+FFFE in UTF-8)
        (b"INV\x00ITE", b""),
        (b"INVITE", b"Content-Length: -1\r\n"),
        (b"INVITE", b"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKsame\r\n"),  # another's sent-by
        (b"INVITE", b"CSeq: 99999999999 INVITE\r\n"),
        (b"INVITE", b"From: \xff\xfe\r\n"),
        (b"INVITE", b"To: <sip:%00@127.0.0.1>\r\n"),
        (b"INVITE", b"Max-Forwards: -3\r\n"),
        (b"INVITE", b"Contact: <" + b"a" * 3000 + b">\r\n"),
        (b"INVITE", b"Call-ID: \r\n"),
    ]
    for method, extra in variants:
        call_id = secrets.token_hex(8)
        branch = "z9hG4bK" + secrets.token_hex(6)
        invite = _request("INVITE", uri, sock, call_id=call_id, branch=branch, extra=extra.decode("latin-1"))
        invite = method + invite[len(b"INVITE") :]
        cancel = _request("CANCEL", uri, sock, call_id=call_id, branch=branch, cseq="1 CANCEL")
        out.append((invite, cancel))
    return out


def _mutated(rnd: random.Random, uri: str, sock: socket.socket) -> tuple[bytes, bytes]:
    """A well-formed INVITE broken at random places (inserted EF BF BE, flipped, cut or inserted bytes),
    and the CANCEL that goes with the original."""
    call_id, branch = secrets.token_hex(8), "z9hG4bK" + secrets.token_hex(6)
    data = bytearray(_request("INVITE", uri, sock, call_id=call_id, branch=branch))
    for _ in range(rnd.randint(1, 4)):
        kind, pos = rnd.random(), rnd.randrange(len(data))
        if kind < 0.3:
            data[pos:pos] = b"\xef\xbf\xbe"
        elif kind < 0.6:
            data[pos] = rnd.randrange(256)
        elif kind < 0.8:
            del data[pos : pos + rnd.randint(1, 20)]
        else:
            data[pos:pos] = rnd.randbytes(rnd.randint(1, 40))
    return bytes(data), _request("CANCEL", uri, sock, call_id=call_id, branch=branch, cseq="1 CANCEL")


def test_malformed_invites_from_many_addresses_touch_nobody_else(front: Front, tmp_path: Path) -> None:
    uri = f"sip:{front.number}@127.0.0.1:{front.port}"
    rnd = random.Random(17)
    silent: list[int] = []
    # 127.0.0.1 is the monitor and the SIPp caller: its OPTIONS must stay well under its own rate (RATE/s
    # after a burst the fixture's start-up probes have spent), or the limiter rightly answers it 503. At
    # every fifth address and at most 5 a second: sent as fast as the loop ran (16/s) they were refused.
    last = 0.0
    for i in range(10, 250):
        with _sock(f"127.0.0.{i}") as s:
            pairs = _malformed_invites(uri, s) if i < 20 else [_mutated(rnd, uri, s) for _ in range(3)]
            for invite, cancel in pairs:
                s.sendto(invite, ("127.0.0.1", front.port))
                s.sendto(cancel, ("127.0.0.1", front.port))
        if i % 5 == 0:
            time.sleep(max(0.0, last + 0.2 - time.monotonic()))
            last = time.monotonic()
            if not _options_ok(front.port):
                silent.append(i)
    assert silent == [], f"OPTIONS from 127.0.0.1 unanswered after the malformed INVITEs of 127.0.0.{silent}"
    if HAS_SIPP:
        _sipp(front.port, front.number, tmp_path, calls=5, rate=5)


def _flood(sock: socket.socket, port: int, seconds: float, per_second: int) -> list[int]:
    """An extension scan (OPTIONS and REGISTER for 100, 101, ...) from `sock`: the status of each request's
    answer, 0 for none (answers are read as they come)."""
    statuses: dict[str, int] = {}
    sock.setblocking(False)
    start, sent = time.monotonic(), 0
    while (elapsed := time.monotonic() - start) < seconds:
        while sent < elapsed * per_second:
            ext = 100 + sent
            method = "REGISTER" if sent % 2 else "OPTIONS"
            data = _request(method, f"sip:{ext}@127.0.0.1:{port}", sock)
            statuses[header(data, "Call-ID") or ""] = 0
            sock.sendto(data, ("127.0.0.1", port))
            sent += 1
        try:
            while True:
                reply = sock.recv(65536)
                if status_of(reply) >= 200:
                    statuses[header(reply, "Call-ID") or ""] = status_of(reply)
        except BlockingIOError:
            time.sleep(0.002)
    sock.setblocking(True)
    return list(statuses.values())


@pytest.mark.skipif(not HAS_SIPP, reason="sipp (Debian sip-tester) is not installed")
def test_a_scanner_is_shut_out_at_the_front_while_others_keep_service(front: Front, tmp_path: Path) -> None:
    # SIPp calls from 127.0.0.1 while 127.0.0.2 scans at 100 requests/s: every call must succeed.
    sipp = subprocess.Popen(
        [
            *sipp_command(),
            *("-sn", "uac", "-s", front.number, f"127.0.0.1:{front.port}"),
            *("-m", "20", "-r", "5", "-l", "20", "-timeout", "30", "-timeout_error"),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        with _sock("127.0.0.2") as scanner:
            statuses = _flood(scanner, front.port, 4.0, 100)
            # Answered while within its burst, then 503, then nothing: the last 2 s got no answer.
            assert statuses[0] in (200, 405) and 503 in statuses, statuses[:80]
            assert set(statuses[-200:]) == {0}, statuses[-200:]
            assert (
                _ask(scanner, front.port, _request("OPTIONS", f"sip:ping@127.0.0.1:{front.port}", scanner))
                is None
            )
        assert _options_ok(front.port, "127.0.0.3")  # another address is served as before
        out, _ = sipp.communicate(timeout=60)
    finally:
        if sipp.poll() is None:
            sipp.kill()
            sipp.wait()
    assert sipp.returncode == 0, out.decode(errors="replace")[-2000:]


def test_max_forwards_zero_and_register_are_answered(front: Front) -> None:
    uri = f"sip:ping@127.0.0.1:{front.port}"
    with _sock("127.0.0.4") as s:
        # The platform is the endpoint of its own URIs: Max-Forwards 0 is not a reason for 483.
        reply = _ask(
            s, front.port, _request("OPTIONS", uri, s).replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
        )
        assert reply is not None and status_of(reply) == 200
        # Not a registrar: every REGISTER gets the same answer, whatever it names or carries.
        registers = [
            _request("REGISTER", f"sip:127.0.0.1:{front.port}", s),
            _request("REGISTER", f"sip:{front.number}@127.0.0.1", s, extra="Expires: 3600\r\n"),
            _request("REGISTER", "sip:example.com", s, extra='Authorization: Digest username="100"\r\n'),
            _request("REGISTER", f"sip:100@127.0.0.1:{front.port}", s, extra="Contact: *\r\nExpires: 0\r\n"),
        ]
        answers = [_ask(s, front.port, r) for r in registers]
    assert [status_of(a or b"") for a in answers] == [405] * 4
    assert {header(a or b"", "Allow") for a in answers} == {"INVITE, ACK, BYE, CANCEL, OPTIONS, INFO"}
