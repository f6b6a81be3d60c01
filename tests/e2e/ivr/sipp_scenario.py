"""The SIPp caller scenario both IVR end-to-end tests use: INVITE with the given media lines, ACK, the
caller's actions, then either the platform's BYE (answered) or the caller hanging up after a pause."""

from __future__ import annotations

_FROM = "From: sipp <sip:+15550142@[local_ip]:[local_port]>;tag=[pid]SIPpTag09[call_number]"
_COMMON = """Call-ID: [call_id]
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70"""


def caller_scenario(
    name: str, media: str, actions: str, *, hangup_after_ms: int | None, bye_timeout_ms: int
) -> str:
    """`media` are the SDP lines from `c=` on; `actions` the XML run after the ACK."""
    invite = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="{name}">
  <send retrans="500"><![CDATA[

INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{_FROM}
To: <sip:[service]@[remote_ip]:[remote_port]>
CSeq: 1 INVITE
{_COMMON}
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP4 [local_ip]
s=-
{media.strip()}

]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rtd="true"/>
  <send><![CDATA[

ACK sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{_FROM}
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
CSeq: 1 ACK
{_COMMON}
Content-Length: 0

]]></send>
"""
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
        end = f"""  <pause milliseconds="{hangup_after_ms}"/>
  <send retrans="500"><![CDATA[

BYE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
{_FROM}
To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
CSeq: 2 BYE
{_COMMON}
Content-Length: 0

]]></send>
  <recv response="200"/>
"""
    return invite + actions + end + "</scenario>\n"
