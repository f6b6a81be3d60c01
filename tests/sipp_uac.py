"""SIPp for the end-to-end tests (SIPp is the real SIP peer). `sipp_command` starts every SIPp command line
(tests/unit/test_sipp_launches.py fails on one that does not); the caller scenarios (their XML is written
here once): INVITE with an SDP offer, ACK, what the caller does meanwhile, then either waiting for the
platform's BYE or hanging up itself. Import as `from tests.sipp_uac import sipp_command, uac_scenario, ...`."""

from __future__ import annotations

import socket
import subprocess

from services.runtime.embedded import free_port

__all__ = ["pause", "press", "sipp_command", "sipp_media_port", "sipp_scenario", "stream", "uac_scenario"]

_RTPMAP = {0: "PCMU/8000", 8: "PCMA/8000", 101: "telephone-event/8000"}


def sipp_media_port(host: str = "127.0.0.1") -> int:
    """A port for SIPp's `-mp`: SIPp binds it and the one two above (audio and video RTP) as it starts, and
    exits 254 at once if either is taken. Without `-mp` every SIPp on the machine takes 6000: two pytest
    sessions side by side (make test) made each other's SIPp fail."""
    for _ in range(100):
        port = free_port(host)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as video:
            try:
                video.bind((host, port + 2))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free pair of SIPp media ports on {host}")


def sipp_command(port: int | None = None, *, host: str = "127.0.0.1") -> list[str]:
    """The start of a SIPp command line: SIP on `host`:`port` (a free port when None), media on `host` at
    a free port of its own (sipp_media_port), no keyboard. The control port is left to SIPp, which takes the
    next free one from 8888 on when one is taken (a fixed `-cp` would fail instead)."""
    port = free_port(host) if port is None else port
    return ["sipp", "-nostdin", "-i", host, "-mi", host, "-p", str(port), "-mp", str(sipp_media_port(host))]


def sipp_scenario(name: str) -> str:
    """The XML of SIPp's built-in scenario `name` (`sipp -sd`, which binds no port)."""
    return subprocess.run(["sipp", "-sd", name], capture_output=True, text=True).stdout  # exits 99


def pause(ms: int) -> str:
    return f'  <pause milliseconds="{ms}"/>\n'


def press(digit: str, *, after_ms: int = 0) -> str:
    """A key press from SIPp's shipped RFC 4733 captures (the scenario's folder needs a `pcap` link to
    /usr/share/sip-tester)."""
    return (pause(after_ms) if after_ms else "") + (
        f'  <nop><action><exec play_pcap_audio="pcap/dtmf_2833_{digit}.pcap"/></action></nop>\n'
    )


def stream(path: str, *, loops: int = 1) -> str:
    """Stream a raw u-law file as the caller's audio (from SIPp's own media port)."""
    return f'  <nop><action><exec rtp_stream="{path},{loops},0"/></action></nop>\n'


def uac_scenario(
    *,
    rtp_port: int | None = None,
    payload_types: tuple[int, ...] = (0, 101),
    caller: str = "sipp <sip:+15550142@[local_ip]:[local_port]>",
    during: str = "",
    hangup_after_ms: int | None = None,
    bye_timeout_ms: int = 20000,
    name: str = "caller",
    routes: bool = False,
) -> str:
    """One call. `rtp_port`: where the platform's audio goes (a socket of the test), or None for SIPp's own
    media port (needed for `stream`). `during`: actions after the ACK (`press`, `stream`, `pause`). Then the
    caller hangs up after `hangup_after_ms`, or (None) waits up to `bye_timeout_ms` for the platform's BYE.
    `routes`: in-dialog requests go to the 200's Contact through its Record-Route set (a proxy such as
    Kamailio in between); otherwise to the address the INVITE went to."""
    media = (
        f"c=IN IP4 [local_ip]\nt=0 0\nm=audio {rtp_port}"
        if rtp_port
        else "c=IN IP4 [media_ip]\nt=0 0\nm=audio [media_port]"
    )
    rtpmaps = "".join(f"a=rtpmap:{pt} {_RTPMAP[pt]}\n" for pt in payload_types)
    if 101 in payload_types:
        rtpmaps += "a=fmtp:101 0-15\n"
    via = "Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]"
    dialog = f"From: {caller};tag=[pid]SIPpTag09[call_number]\nTo: <sip:[service]@[remote_ip]:[remote_port]>"
    fixed = "Call-ID: [call_id]\n{cseq}\nContact: sip:sipp@[local_ip]:[local_port]\nMax-Forwards: 70"
    invite = f"""INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
{via}
{dialog}
{fixed.format(cseq="CSeq: 1 INVITE")}
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP4 [local_ip]
s=-
{media} RTP/AVP {" ".join(map(str, payload_types))}
{rtpmaps}"""
    route_line = "[routes]\n" if routes else ""
    in_dialog = f"{via}\n{dialog}[peer_tag_param]\n{fixed}\n{route_line}Content-Length: 0\n"
    target = "[next_url]" if routes else "sip:[service]@[remote_ip]:[remote_port]"
    if hangup_after_ms is None:
        end = f"""  <recv request="BYE" timeout="{bye_timeout_ms}"/>
  <send><![CDATA[

SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

]]></send>
"""
    else:
        bye = in_dialog.format(cseq="CSeq: 2 BYE")
        end = f"""{pause(hangup_after_ms)}  <send retrans="500"><![CDATA[

BYE {target} SIP/2.0
{bye}
]]></send>
  <recv response="200"/>
"""
    ack = in_dialog.format(cseq="CSeq: 1 ACK")
    return f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
  <send retrans="500"><![CDATA[

{invite}
]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="183" optional="true"/>
  <recv response="200" rtd="true"{' rrs="true"' if routes else ""}/>
  <send><![CDATA[

ACK {target} SIP/2.0
{ack}
]]></send>
{during}{end}</scenario>
"""
