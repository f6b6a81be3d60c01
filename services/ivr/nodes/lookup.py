"""lookup: a signed HTTP data dip to the tenant's server (the adapter performs it); its answer's fields
become attributes, or the node's on_error is taken."""

from __future__ import annotations

from urllib.parse import urlencode

import msgspec
from switchboard.flowdef.flow import Lookup

from ..call import Call
from ..conditions import render
from ..lookup import SIGNATURE_HEADER, TIMESTAMP_HEADER, LookupRequest, LookupResult, result_attributes, sign
from ..state import Phase, next_id

__all__ = ["done", "run"]


def run(call: Call, node: Lookup, now: float) -> None:
    s = call.state
    values = {k: render(v, s.attributes) for k, v in node.send.items()}
    url = node.url
    if node.method == "GET":
        payload = urlencode(values).encode()
        url = f"{url}{'&' if '?' in url else '?'}{payload.decode()}" if values else url
        body = b""
    else:
        payload = body = msgspec.json.encode(values)
    ts = int(now)
    headers = {TIMESTAMP_HEADER: str(ts), SIGNATURE_HEADER: sign(call.lookup_secret, ts, payload)}
    if node.method == "POST":
        headers["Content-Type"] = "application/json"
    request = LookupRequest(
        id=next_id(s),
        call_id=s.call_id,
        node=s.node,
        method=node.method,
        url=url,
        headers=headers,
        body=body,
        timeout=node.timeout,
    )
    call.emit(request)
    s.phase = Phase.lookup
    s.pending = request.id
    s.deadline = now + node.timeout


def done(call: Call, node: Lookup, result: LookupResult, now: float) -> None:
    s = call.state
    s.pending = None
    s.deadline = None
    found = result_attributes(result, node.results, node.prefix)
    if found is None:
        s.attributes[f"{node.prefix}lookup_error"] = result.error or f"status {result.status}"
        call.go(node.on_error, "error", now)
        return
    s.attributes.update(found)
    call.go(node.next, "ok", now)
