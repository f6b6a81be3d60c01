"""SIPp as the real caller against the media service subprocess: the built-in `uac` scenario, and RFC 4733
digits from the shipped dtmf_2833_*.pcap files (the `uac_pcap` scenario) arriving as call.dtmf on NATS."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from pathlib import Path

import nats
import pytest

from services.kernel.events import CallArrived, CallDtmf, CallEnded, MediaAnswer, MediaHangup
from services.kernel.messages import decode, encode
from services.kernel.waits import flushed
from services.runtime.embedded import free_port
from tests.sipp_uac import sipp_command, sipp_scenario

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]
PCAPS = Path("/usr/share/sip-tester")


def _sipp(args: list[str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    port = free_port()
    return subprocess.run(
        [*sipp_command(port), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sipp_uac_calls_complete(media_edge, tmp_path: Path) -> None:
    result = _sipp(
        [
            "-sn",
            "uac",
            "-s",
            media_edge.number,
            f"127.0.0.1:{media_edge.port}",
            "-m",
            "20",
            "-r",
            "20",
            "-l",
            "20",
            "-timeout",
            "20",
            "-timeout_error",
            "-trace_stat",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_sipp_unknown_number_fails(media_edge, tmp_path: Path) -> None:
    result = _sipp(
        [
            "-sn",
            "uac",
            "-s",
            "+19995550001",
            f"127.0.0.1:{media_edge.port}",
            "-m",
            "1",
            "-timeout",
            "10",
            "-timeout_error",
            "-trace_err",
        ],
        tmp_path,
    )
    assert result.returncode != 0
    errors = "".join(p.read_text(errors="replace") for p in tmp_path.glob("*_errors.log"))
    assert "SIP/2.0 404" in errors


def _dtmf_scenario(digits: list[str]) -> str:
    text = sipp_scenario("uac_pcap")
    plays = "".join(
        f'<nop><action><exec play_pcap_audio="pcap/dtmf_2833_{d}.pcap"/></action></nop>'
        f'<pause milliseconds="400"/>'
        for d in digits
    )
    start = text.index("<!-- Play a pre-recorded PCAP file")
    end = text.index('<pause milliseconds="1000"/>') + len('<pause milliseconds="1000"/>')
    return text[:start] + plays + '<pause milliseconds="300"/>' + text[end:]


async def _answer_and_collect(media_edge, expected: int, run) -> tuple[list[CallDtmf], list[CallEnded]]:
    nc = await nats.connect(media_edge.nats_url)
    digits: list[CallDtmf] = []
    ended: list[CallEnded] = []
    tenant = media_edge.tenant_id

    async def on_arrived(msg) -> None:  # type: ignore[no-untyped-def]
        event = decode(msg.data, CallArrived)
        cmd = MediaAnswer(tenant_id=tenant, call_id=event.call_id)
        reply = await nc.request(f"sb.{tenant}.cmd.media.answer", encode(cmd), timeout=2)
        assert b'"ok":true' in reply.data

    async def on_dtmf(msg) -> None:  # type: ignore[no-untyped-def]
        digits.append(decode(msg.data, CallDtmf))

    async def on_ended(msg) -> None:  # type: ignore[no-untyped-def]
        ended.append(decode(msg.data, CallEnded))

    await nc.subscribe(f"sb.{tenant}.evt.call.arrived", cb=on_arrived)
    await nc.subscribe(f"sb.{tenant}.evt.call.dtmf", cb=on_dtmf)
    await nc.subscribe(f"sb.{tenant}.evt.call.ended", cb=on_ended)
    await flushed(nc)
    result = await asyncio.to_thread(run)
    for _ in range(40):
        if ended:
            break
        await asyncio.sleep(0.05)
    await nc.close()
    return digits, ended, result  # type: ignore[return-value]


async def test_sipp_rfc4733_digits_arrive_as_events(media_edge, tmp_path: Path) -> None:
    (tmp_path / "pcap").symlink_to(PCAPS)
    sent = ["1", "5", "9", "pound", "star", "0"]
    scenario = tmp_path / "dtmf.xml"
    scenario.write_text(_dtmf_scenario(sent))

    def run() -> subprocess.CompletedProcess[str]:
        return _sipp(
            [
                "-sf",
                str(scenario),
                "-s",
                media_edge.flow_number,
                f"127.0.0.1:{media_edge.port}",
                "-m",
                "1",
                "-timeout",
                "20",
                "-timeout_error",
            ],
            tmp_path,
        )

    digits, ended, result = await _answer_and_collect(media_edge, len(sent), run)
    assert result.returncode == 0, result.stdout[-2000:]
    rfc = [d.digit for d in digits if d.source == "rfc4733"]
    assert rfc == ["1", "5", "9", "#", "*", "0"]
    assert ended and ended[0].cause == "remote_bye" and ended[0].duration > 1.0


async def test_originate_answered_by_sipp_uas_with_echo(media_edge, infra, tmp_path: Path) -> None:
    """originate -> SIPp `uas -rtp_echo` answers; we play a prompt of DTMF tones (1, 5, 9) and the echoed
    audio is decoded on our side: the Goertzel detector of the call's RTP path finds exactly those digits
    in what came back (call.dtmf, source inband), and the final call.quality counts it."""
    import asyncpg
    import numpy as np

    from services.kernel.events import CallAnswered, CallDtmf, CallQuality, MediaOriginate, MediaPlay
    from services.kernel.ids import new_id
    from services.media.dsp.tones import dtmf_tone
    from services.media.rtp.g711 import ulaw_encode

    uas_port = free_port()
    conn = await asyncpg.connect(infra.owner_url)
    try:
        await conn.execute("DELETE FROM sip_trunks WHERE tenant_id = $1", media_edge.tenant_id)
        await conn.execute(
            """INSERT INTO sip_trunks (id, tenant_id, name, allowed_ips, outbound_host, outbound_port)
               VALUES ($1, $2, 'echo', '{127.0.0.0/8}', '127.0.0.1', $3)""",
            new_id(),
            media_edge.tenant_id,
            uas_port,
        )
    finally:
        await conn.close()
    uas = await asyncio.create_subprocess_exec(
        *sipp_command(uas_port),
        *[
            "-sn",
            "uas",
            "-rtp_echo",
            "-m",
            "1",
            "-timeout",
            "20",
        ],
        cwd=tmp_path,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    tenant = media_edge.tenant_id
    nc = await nats.connect(media_edge.nats_url)
    seen: list[object] = []
    kinds = {"answered": CallAnswered, "ended": CallEnded, "quality": CallQuality, "dtmf": CallDtmf}
    gap = np.zeros(1600)
    tones = np.concatenate([gap] + [np.concatenate([dtmf_tone(d, 0.1), gap]) for d in "159"])
    (infra.data_dir / "echo-digits.ulaw").write_bytes(ulaw_encode(tones.astype(np.int16)))

    async def on_event(msg) -> None:  # type: ignore[no-untyped-def]
        kind = kinds.get(msg.subject.rsplit(".", 1)[-1])
        if kind is not None:
            seen.append(decode(msg.data, kind))

    await nc.subscribe(f"sb.{tenant}.evt.call.*", cb=on_event)
    try:
        await asyncio.sleep(0.3)  # SIPp binds its port
        call_id = uuid.uuid4()
        cmd = MediaOriginate(tenant_id=tenant, call_id=call_id, to="+15550199", caller_id="+15550100")
        reply = await nc.request(f"sb.{tenant}.cmd.media.originate", encode(cmd), timeout=5)
        assert b'"ok":true' in reply.data, reply.data
        for _ in range(60):
            if any(isinstance(e, CallAnswered) and e.call_id == call_id for e in seen):
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the outbound call was not answered")
        play = MediaPlay(tenant_id=tenant, call_id=call_id, file="echo-digits.ulaw")
        assert b'"ok":true' in (await nc.request(f"sb.{tenant}.cmd.media.play", encode(play), timeout=5)).data
        for _ in range(80):
            if len([e for e in seen if isinstance(e, CallDtmf)]) >= 3:
                break
            await asyncio.sleep(0.05)
        digits = [(e.digit, e.source) for e in seen if isinstance(e, CallDtmf) and e.call_id == call_id]
        assert digits == [("1", "inband"), ("5", "inband"), ("9", "inband")]
        hangup = MediaHangup(tenant_id=tenant, call_id=call_id)
        assert (
            b'"ok":true'
            in (await nc.request(f"sb.{tenant}.cmd.media.hangup", encode(hangup), timeout=5)).data
        )
        for _ in range(40):
            if any(isinstance(e, CallEnded) and e.call_id == call_id for e in seen):
                break
            await asyncio.sleep(0.05)
        final = next(e for e in seen if isinstance(e, CallQuality) and e.call_id == call_id)
        # The echo returned our own audio: most of what we sent came back.
        assert final.packets_sent > 40 and final.packets_received > 0.8 * final.packets_sent
        ended = next(e for e in seen if isinstance(e, CallEnded) and e.call_id == call_id)
        assert ended.cause == "normal_clearing" and ended.duration > 0
    finally:
        await nc.close()
        if uas.returncode is None:
            uas.terminate()
            await asyncio.wait_for(uas.wait(), 5)
        conn = await asyncpg.connect(infra.owner_url)
        await conn.execute("DELETE FROM sip_trunks WHERE tenant_id = $1", media_edge.tenant_id)
        await conn.close()


def _inband_scenario(stream: Path) -> str:
    """uac_pcap (which offers PCMA) with its pcap replay replaced by an rtp_stream of raw A-law audio."""
    text = sipp_scenario("uac_pcap")
    start = text.index("<!-- Play a pre-recorded PCAP file")
    end = text.index('<pause milliseconds="1000"/>') + len('<pause milliseconds="1000"/>')
    play = f'<nop><action><exec rtp_stream="{stream},1,8"/></action></nop><pause milliseconds="3500"/>'
    return text[:start] + play + text[end:]


async def test_sipp_inband_tone_stream_is_detected(media_edge, tmp_path: Path) -> None:
    import numpy as np

    from services.media.dsp.tones import dtmf_tone
    from services.media.rtp.g711 import alaw_encode

    sent = ["4", "7", "#", "2"]
    gap = np.zeros(int(0.15 * 8000))
    audio = np.concatenate([np.zeros(4000)] + [np.concatenate([dtmf_tone(d, 0.12), gap]) for d in sent])
    stream = tmp_path / "digits.alaw"
    stream.write_bytes(alaw_encode(audio))
    scenario = tmp_path / "inband.xml"
    scenario.write_text(_inband_scenario(stream))

    def run() -> subprocess.CompletedProcess[str]:
        target = f"127.0.0.1:{media_edge.port}"
        args = ["-sf", str(scenario), "-s", media_edge.flow_number, target, "-m", "1", "-timeout", "20"]
        return _sipp([*args, "-timeout_error"], tmp_path)

    digits, ended, result = await _answer_and_collect(media_edge, len(sent), run)
    assert result.returncode == 0, result.stdout[-2000:]
    assert [d.digit for d in digits if d.source == "inband"] == sent
    assert not [d for d in digits if d.source == "rfc4733"]
    assert ended and ended[0].cause == "remote_bye"
