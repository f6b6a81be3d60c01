"""SIP requests and responses (RFC 3261 §7): parsing, serialization, framing on datagrams and streams
(§18.3), and building responses to requests (§8.2.6).

Parsing is strict where RFC 4475 says a message is malformed and liberal where it says to accept; every
failure is a `SipParseError` that, for a readable request, carries enough to answer `400 Bad Request`.
Serialization is canonical: full header names, `Name: value`, one line per Via/Contact/Route value,
folded lines unfolded and a Content-Length that matches the body.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from services.media.sip.errors import PartialMessage, SipParseError
from services.media.sip.fields import (
    MAGIC_COOKIE,
    CSeq,
    NameAddr,
    Via,
    parse_cseq,
    parse_name_addr,
    parse_via,
)
from services.media.sip.headers import (
    LIST_HEADERS,
    SINGLE_HEADERS,
    Headers,
    canonical_name,
    is_token,
    split_list,
)
from services.media.sip.uri import parse_sip_uri, parse_uri

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_DATAGRAM",
    "DEFAULT_MAX_HEADER_BYTES",
    "REASON_PHRASES",
    "SipMessage",
    "SipRequest",
    "SipResponse",
    "StreamParser",
    "build_request",
    "error_response",
    "is_keepalive",
    "make_response",
    "new_branch",
    "new_call_id",
    "new_tag",
    "parse_datagram",
]

DEFAULT_MAX_DATAGRAM = 65535
DEFAULT_MAX_HEADER_BYTES = 32768
DEFAULT_MAX_BODY_BYTES = 65536
_MAX_UINT32 = 2**32 - 1

REASON_PHRASES: dict[int, str] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    421: "Extension Required",
    423: "Interval Too Brief",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    493: "Undecipherable",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}

# Methods whose 101-299 responses establish a dialog, so Record-Route is copied into them (§12.1.1).
_DIALOG_CREATING = frozenset({"INVITE", "SUBSCRIBE", "REFER"})

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_LINE_SPLIT = re.compile(rb"\r?\n")
_STREAM_CL = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE | re.MULTILINE)
_VERSION = re.compile(r"^SIP/(\d+)\.(\d+)$", re.IGNORECASE)
_ENDS_WITH_VERSION = re.compile(r" SIP/\d+\.\d+\s*$", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")


class _Fields:
    """Typed accessors shared by requests and responses; each parses its header on access."""

    headers: Headers

    @property
    def via(self) -> list[Via]:
        return [parse_via(v) for v in self.headers.get_all("Via")]

    @property
    def top_via(self) -> Via:
        value = self.headers.get("Via")
        if value is None:
            raise SipParseError("missing Via header")
        return parse_via(value)

    @property
    def from_(self) -> NameAddr:
        return parse_name_addr(self._required("From"))

    @property
    def to(self) -> NameAddr:
        return parse_name_addr(self._required("To"))

    @property
    def call_id(self) -> str:
        return self._required("Call-ID")

    @property
    def cseq(self) -> CSeq:
        return parse_cseq(self._required("CSeq"))

    @property
    def contacts(self) -> list[NameAddr]:
        return [parse_name_addr(v, allow_star=True) for v in self.headers.get_all("Contact")]

    @property
    def routes(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.headers.get_all("Route")]

    @property
    def record_routes(self) -> list[NameAddr]:
        return [parse_name_addr(v) for v in self.headers.get_all("Record-Route")]

    @property
    def max_forwards(self) -> int | None:
        value = self.headers.get("Max-Forwards")
        return int(value) if value is not None and value.strip().isdigit() else None

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.split(";", 1)[0].strip().lower() if value else None

    def _required(self, name: str) -> str:
        value = self.headers.get(name)
        if value is None:
            raise SipParseError(f"missing {name} header")
        return value


def _serialize(start: str, headers: Headers, body: bytes) -> bytes:
    lines = [start]
    has_length = False
    for name, value in headers:
        if name == "Content-Length":
            if has_length:
                continue
            value = str(len(body))
            has_length = True
        lines.append(f"{name}: {value}")
    if not has_length:
        lines.append(f"Content-Length: {len(body)}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("utf-8") + body


@dataclass(eq=False)
class SipRequest(_Fields):
    method: str
    uri: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def start_line(self) -> str:
        return f"{self.method} {self.uri} {self.version}"

    def __bytes__(self) -> bytes:
        return _serialize(self.start_line, self.headers, self.body)

    def __repr__(self) -> str:
        return f"SipRequest({self.start_line!r})"


@dataclass(eq=False)
class SipResponse(_Fields):
    status: int
    reason: str = ""
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    version: str = "SIP/2.0"

    @property
    def start_line(self) -> str:
        reason = self.reason.replace("\r", " ").replace("\n", " ")
        return f"{self.version} {self.status} {reason}"

    def __bytes__(self) -> bytes:
        return _serialize(self.start_line, self.headers, self.body)

    def __repr__(self) -> str:
        return f"SipResponse({self.start_line!r})"


SipMessage = SipRequest | SipResponse


# --- parsing ---------------------------------------------------------------------------------------


def _guess_method(start: str) -> str | None:
    """The method of a request line that failed to parse, if the line still looks like a request."""
    first = start.split(" ", 1)[0]
    if is_token(first) and not first.upper().startswith("SIP/") and _ENDS_WITH_VERSION.search(start):
        return first
    return None


def _partial(method: str | None, fields: Iterable[tuple[str, str]]) -> PartialMessage:
    via: list[str] = []
    found: dict[str, str] = {}
    for name, value in fields:
        if name == "Via":
            try:
                via.extend(part for part in split_list(value) if part)
            except SipParseError:
                via.append(value)
        elif name in ("From", "To", "Call-ID", "CSeq") and name not in found:
            found[name] = value
    return PartialMessage(
        method=method,
        via=tuple(via),
        from_=found.get("From"),
        to=found.get("To"),
        call_id=found.get("Call-ID"),
        cseq=found.get("CSeq"),
    )


def _fail(msg: SipMessage, reason: str, status: int = 400) -> SipParseError:
    method = msg.method if isinstance(msg, SipRequest) else None
    return SipParseError(reason, status=status, partial=_partial(method, msg.headers))


def _read_fields(lines: list[bytes]) -> tuple[list[tuple[str, str]], str | None]:
    """Header lines to (canonical name, unfolded value), best effort: the first problem is returned, not
    raised, so that the readable fields can still answer the request."""
    fields: list[tuple[str, str]] = []
    error: str | None = None
    name: str | None = None
    parts: list[str] = []

    def flush() -> None:
        if name is not None:
            fields.append((canonical_name(name), " ".join(p for p in parts if p)))

    for raw in lines:
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            error = error or "header is not valid UTF-8"
            flush()
            name, parts = None, []
            continue
        if "\r" in line:
            error = error or "bare CR in header"
            continue
        if line[:1] in (" ", "\t"):
            if name is None:
                error = error or "continuation line without a header"
            else:
                parts.append(line.strip(" \t"))
            continue
        flush()
        name, parts = None, []
        head, colon, value = line.partition(":")
        head = head.rstrip(" \t")
        if not colon or not is_token(head):
            error = error or ("header line without a colon" if not colon else "invalid header name")
            continue
        name, parts = head, [value.strip(" \t")]
    flush()
    return fields, error


def _check_request_uri(uri: str) -> None:
    if uri.startswith("<"):
        raise SipParseError("Request-URI must not be enclosed in <>")
    if not _SCHEME.match(uri):
        raise SipParseError("Request-URI has no scheme")
    if uri.partition(":")[0].lower() in ("sip", "sips"):
        parsed = parse_sip_uri(uri)
        if parsed.headers:
            raise SipParseError("headers are not allowed in a Request-URI")
    else:
        parse_uri(uri)


def _parse_start(start: str) -> SipMessage:
    if start[:4].upper() == "SIP/":
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        if not _VERSION.match(version):
            raise SipParseError("malformed status line")
        if version.upper() != "SIP/2.0":
            raise SipParseError("unsupported SIP version", status=505)
        if len(code) != 3 or not code.isdigit() or not 100 <= int(code) <= 699:
            raise SipParseError("invalid status code")
        return SipResponse(int(code), reason)
    parts = start.split(" ")
    if len(parts) != 3 or not all(parts):
        raise SipParseError("malformed request line")
    method, uri, version = parts
    if not is_token(method):
        raise SipParseError("invalid method")
    if not _VERSION.match(version):
        raise SipParseError("malformed SIP version")
    if version.upper() != "SIP/2.0":
        raise SipParseError("unsupported SIP version", status=505)
    _check_request_uri(uri)
    return SipRequest(method, uri)


def _parse_head(head: bytes) -> SipMessage:
    """Start line and header fields; the returned message has no body yet."""
    lines = _LINE_SPLIT.split(head)
    try:
        start = lines[0].decode("utf-8")
    except UnicodeDecodeError:
        raise SipParseError("start line is not valid UTF-8") from None
    fields, field_error = _read_fields(lines[1:])
    try:
        msg = _parse_start(start)
        if field_error:
            raise SipParseError(field_error)
        headers = Headers()
        for name, value in fields:
            if name in LIST_HEADERS:
                values = split_list(value)
                if not all(values):
                    raise SipParseError(f"empty value in {name} header")
                for v in values:
                    headers.add(name, v)
            else:
                headers.add(name, value)
    except SipParseError as err:
        err.partial = _partial(_guess_method(start), fields)
        raise
    msg.headers = headers
    return msg


def _uint32(value: str, what: str) -> int:
    text = value.strip()
    if not text.isdigit() or len(text) > 10 or int(text) > _MAX_UINT32:
        raise SipParseError(f"invalid {what}")
    return int(text)


def _parse_contact(value: str) -> NameAddr:
    return parse_name_addr(value, allow_star=True)


_VALIDATED: tuple[tuple[str, Callable[[str], object]], ...] = (
    ("Via", parse_via),
    ("From", parse_name_addr),
    ("To", parse_name_addr),
    ("Contact", _parse_contact),
    ("Route", parse_name_addr),
    ("Record-Route", parse_name_addr),
    ("Path", parse_name_addr),
    ("Service-Route", parse_name_addr),
)


def _validate(msg: SipMessage) -> None:
    h = msg.headers
    for name in ("Via", "From", "To", "Call-ID", "CSeq"):
        if name not in h:
            raise SipParseError(f"missing {name} header")
    seen: set[str] = set()
    for name, _ in h:
        if name in SINGLE_HEADERS:
            if name in seen:
                raise SipParseError(f"more than one {name} header")
            seen.add(name)
    for name, parse in _VALIDATED:
        for value in h.get_all(name):
            try:
                parse(value)
            except SipParseError as err:
                raise SipParseError(f"invalid {name} header: {err.reason}") from None
    call_id = msg.call_id
    if not call_id or any(c.isspace() for c in call_id):
        raise SipParseError("invalid Call-ID")
    cseq = msg.cseq
    if isinstance(msg, SipRequest) and cseq.method != msg.method:
        raise SipParseError("CSeq method does not match the request method")
    max_forwards = h.get("Max-Forwards")
    if max_forwards is not None and _uint32(max_forwards, "Max-Forwards") > 255:
        raise SipParseError("invalid Max-Forwards")
    for name in ("Expires", "Min-Expires"):
        for value in h.get_all(name):
            _uint32(value, name)
    for value in h.get_all("Retry-After"):
        _uint32(re.split(r"[ \t;(]", value.strip(), maxsplit=1)[0], "Retry-After")
    content_type = h.get("Content-Type")
    if content_type is not None and "/" not in content_type:
        raise SipParseError("invalid Content-Type")


def _finish(msg: SipMessage, body: bytes) -> SipMessage:
    msg.body = body
    try:
        _validate(msg)
    except SipParseError as err:
        raise _fail(msg, err.reason, err.status) from None
    return msg


def _content_length(msg: SipMessage) -> int | None:
    values = msg.headers.get_all("Content-Length")
    if not values:
        return None
    if len(values) > 1:
        raise _fail(msg, "more than one Content-Length header")
    try:
        return _uint32(values[0], "Content-Length")
    except SipParseError as err:
        raise _fail(msg, err.reason) from None


def _skip_crlf(data: bytes | bytearray, start: int = 0) -> int:
    n = len(data)
    while start < n and data[start] in (0x0D, 0x0A):
        start += 1
    return start


def is_keepalive(data: bytes) -> bool:
    """A datagram of only CR/LF (RFC 5626 keepalive) or nothing: ignore it, it is not a message."""
    return _skip_crlf(data) == len(data)


def parse_datagram(data: bytes, *, max_size: int = DEFAULT_MAX_DATAGRAM) -> SipMessage:
    """One message from one UDP datagram (RFC 3261 §18.3).

    Without Content-Length the body runs to the end of the datagram; octets after Content-Length are
    discarded (RFC 4475 dblreq); a Content-Length larger than what arrived is an error (clerr).
    """
    if len(data) > max_size:
        raise SipParseError("datagram too large", status=513)
    start = _skip_crlf(data)
    if start == len(data):
        raise SipParseError("empty datagram")
    match = _HEAD_END.search(data, start)
    if match is None:
        msg = _parse_head(data[start:])
        raise _fail(msg, "no empty line after the header section")
    msg = _parse_head(data[start : match.start()])
    rest = data[match.end() :]
    length = _content_length(msg)
    if length is None:
        body = rest
    elif length > len(rest):
        raise _fail(msg, "Content-Length larger than the body")
    else:
        body = rest[:length]
    return _finish(msg, body)


class StreamParser:
    """Frames messages on a stream transport by Content-Length (RFC 3261 §18.3), h11-style.

    `feed(data)` appends bytes; `next_message()` returns the next complete message, or None until more
    bytes arrive. A malformed message that was still framed raises a `SipParseError` and the stream goes
    on; when framing is lost (missing, invalid or oversized Content-Length, header section too large) the
    error has `fatal=True`, the parser stays broken, and the adapter should close the connection.
    CRLF keepalives between messages are skipped; each double CRLF counts in `pings` (RFC 5626 §4.4.1).
    """

    def __init__(
        self,
        *,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_body_bytes = max_body_bytes
        self.pings = 0
        self._buf = bytearray()
        self._scanned = 0  # how far the buffer is known to hold no end of headers (bytes dribbled in)
        self._error: SipParseError | None = None

    @property
    def broken(self) -> bool:
        return self._error is not None

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> None:
        if self._error is None:
            self._buf += data

    def _break(self, reason: str, status: int, head: bytes | None) -> SipParseError:
        partial: PartialMessage | None = None
        if head is not None:
            try:
                msg = _parse_head(head)
                partial = _partial(msg.method if isinstance(msg, SipRequest) else None, msg.headers)
            except SipParseError as err:
                partial = err.partial
        self._error = SipParseError(reason, status=status, partial=partial, fatal=True)
        self._buf.clear()
        return self._error

    def next_message(self) -> SipMessage | None:
        if self._error is not None:
            raise self._error
        buf = self._buf
        start = _skip_crlf(buf)
        if start:
            self.pings += bytes(buf[:start]).count(b"\r\n\r\n")
            del buf[:start]
            self._scanned = 0
        if not buf:
            return None
        match = _HEAD_END.search(buf, max(0, self._scanned - 3), self.max_header_bytes + 4)
        if match is None:
            if len(buf) > self.max_header_bytes:
                raise self._break("header section too large", 513, None)
            self._scanned = len(buf)
            return None
        head = bytes(buf[: match.start()])
        lengths = _STREAM_CL.findall(head)
        if not lengths:
            raise self._break("missing Content-Length on a stream transport", 400, head)
        if len(lengths) > 1:
            raise self._break("more than one Content-Length header", 400, head)
        text = lengths[0].strip()
        if not text.isdigit() or len(text) > 10:
            raise self._break("invalid Content-Length", 400, head)
        length = int(text)
        if length > self.max_body_bytes:
            raise self._break("body too large", 513, head)
        end = match.end() + length
        if len(buf) < end:
            self._scanned = match.start()  # the header end is known: find it again at once
            return None
        body = bytes(buf[match.end() : end])
        del buf[:end]
        self._scanned = 0
        return _finish(_parse_head(head), body)


# --- building ---------------------------------------------------------------------------------------


def new_branch() -> str:
    """A fresh RFC 3261 branch (magic cookie + 64 random bits)."""
    return MAGIC_COOKIE + secrets.token_hex(8)


def new_tag() -> str:
    return secrets.token_hex(6)


def new_call_id(host: str | None = None) -> str:
    value = secrets.token_hex(12)
    return f"{value}@{host}" if host else value


def _add_tag(to_value: str, tag: str) -> str:
    try:
        if parse_name_addr(to_value).tag is not None:
            return to_value
    except SipParseError:
        return to_value
    return f"{to_value};tag={tag}"


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipResponse:
    """A response to `request` per RFC 3261 §8.2.6: Via (all, in order), From, To (+ `to_tag` unless it has
    one or this is 100 Trying), Call-ID and CSeq copied; Record-Route copied into dialog-creating 1xx/2xx."""
    resp = SipResponse(status, reason if reason is not None else REASON_PHRASES.get(status, ""))
    h = resp.headers
    for value in request.headers.get_all("Via"):
        h.add("Via", value)
    if 100 < status < 300 and request.method in _DIALOG_CREATING:
        for value in request.headers.get_all("Record-Route"):
            h.add("Record-Route", value)
    for name in ("From", "To", "Call-ID", "CSeq"):
        copied = request.headers.get(name)
        if copied is None:
            continue
        if name == "To" and to_tag and status != 100:
            copied = _add_tag(copied, to_tag)
        h.add(name, copied)
    if status == 100 and "Timestamp" in request.headers:
        h.add("Timestamp", request.headers.get("Timestamp") or "")
    for name, value in headers:
        h.add(name, value)
    if body:
        h.add("Content-Type", content_type or "application/sdp")
    resp.body = body
    return resp


def _printable(text: str) -> str:
    return "".join(c if 32 <= ord(c) < 127 else " " for c in text)[:120]


def error_response(err: SipParseError, *, to_tag: str | None = None) -> SipResponse | None:
    """The error response (400, 505 or 513, reason phrase naming the problem) to a request that failed to
    parse, or None when it cannot be answered (a response, an ACK, no Via): then the input is dropped."""
    if not err.can_respond or err.partial is None:
        return None
    p = err.partial
    phrase = REASON_PHRASES.get(err.status, "Bad Request")
    resp = SipResponse(err.status, f"{phrase} ({_printable(err.reason)})")
    for value in p.via:
        resp.headers.add("Via", value)
    if p.from_ is not None:
        resp.headers.add("From", p.from_)
    if p.to is not None:
        resp.headers.add("To", _add_tag(p.to, to_tag) if to_tag else p.to)
    if p.call_id is not None:
        resp.headers.add("Call-ID", p.call_id)
    if p.cseq is not None:
        resp.headers.add("CSeq", p.cseq)
    return resp


def build_request(
    method: str,
    uri: str,
    *,
    via: Via | str,
    from_: NameAddr | str,
    to: NameAddr | str,
    call_id: str,
    cseq: int,
    max_forwards: int = 70,
    contact: NameAddr | str | None = None,
    routes: Iterable[str] = (),
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    """A new request with the mandatory headers of RFC 3261 §8.1.1 in the usual order."""
    req = SipRequest(method, uri)
    h = req.headers
    h.add("Via", str(via))
    h.add("Max-Forwards", str(max_forwards))
    for route in routes:
        h.add("Route", route)
    h.add("From", str(from_))
    h.add("To", str(to))
    h.add("Call-ID", call_id)
    h.add("CSeq", f"{cseq} {method}")
    if contact is not None:
        h.add("Contact", str(contact))
    for name, value in headers:
        h.add(name, value)
    if body:
        h.add("Content-Type", content_type or "application/sdp")
    req.body = body
    return req
