"""Typed values of the header fields the SIP core relies on: Via, name-addr (From, To, Contact, Route,
Record-Route) and CSeq (RFC 3261 §20, grammar in §25.1), each with a tolerant parser (LWS anywhere the
grammar allows it) and a canonical serializer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.media.sip.errors import SipParseError
from services.media.sip.headers import Params, Scanner, is_token, quote, unquote
from services.media.sip.uri import SipUri, Uri, parse_uri

__all__ = [
    "MAGIC_COOKIE",
    "CSeq",
    "NameAddr",
    "Via",
    "parse_cseq",
    "parse_name_addr",
    "parse_via",
]

MAGIC_COOKIE = "z9hG4bK"  # RFC 3261 §8.1.1.7: branches starting with this are globally unique
_MAX_UINT32 = 2**32 - 1
_PARAM_VALUE_STOPS = ' \t;,"<>'
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")


def parse_header_params(s: Scanner, what: str) -> Params:
    """`*( SEMI generic-param )` with LWS allowed around ';' and '=' (RFC 4475 wsinv)."""
    items: list[tuple[str, str | None]] = []
    while True:
        s.skip_ws()
        if s.peek() != ";":
            return Params(items)
        s.pos += 1
        s.skip_ws()
        name = s.token()
        if not name:
            raise SipParseError(f"empty parameter in {what}")
        s.skip_ws()
        value: str | None = None
        if s.peek() == "=":
            s.pos += 1
            s.skip_ws()
            value = s.quoted() if s.peek() == '"' else s.take_until(_PARAM_VALUE_STOPS)
            if not value:
                raise SipParseError(f"empty parameter value in {what}")
        items.append((name, value))


@dataclass
class Via:
    """One Via value: sent-protocol, sent-by and parameters (branch, received, rport...)."""

    transport: str
    host: str
    port: int | None = None
    params: Params = field(default_factory=Params)
    protocol: str = "SIP/2.0"

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def has_magic_cookie(self) -> bool:
        """An RFC 3261 branch: the magic cookie followed by at least one character."""
        b = self.branch
        return b is not None and b.startswith(MAGIC_COOKIE) and len(b) > len(MAGIC_COOKIE)

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return int(value) if value is not None and value.isdigit() else None

    @property
    def wants_rport(self) -> bool:
        return "rport" in self.params

    @property
    def sent_by(self) -> str:
        """host:port with the transport's default port filled in, lower-cased, for transaction matching."""
        port = self.port or (5061 if self.transport.upper() == "TLS" else 5060)
        return f"{self.host.lower()}:{port}"

    def __str__(self) -> str:
        host = self.host if self.port is None else f"{self.host}:{self.port}"
        return f"{self.protocol}/{self.transport} {host}{self.params}"


def parse_via(value: str) -> Via:
    s = Scanner(value)
    s.skip_ws()
    name = s.token()
    s.skip_ws()
    s.expect("/", "Via sent-protocol")
    s.skip_ws()
    version = s.token()
    s.skip_ws()
    s.expect("/", "Via sent-protocol")
    s.skip_ws()
    transport = s.token()
    if not name or not version or not transport:
        raise SipParseError("malformed Via sent-protocol")
    if not s.skip_ws():
        raise SipParseError("missing space before Via sent-by")
    if s.peek() == "[":
        host = s.take_until("]")
        s.expect("]", "Via IPv6 sent-by")
        host += "]"
    else:
        host = s.take_while(_HOST_CHARS)
    if not host:
        raise SipParseError("missing Via sent-by host")
    port: int | None = None
    s.skip_ws()
    if s.peek() == ":":
        s.pos += 1
        s.skip_ws()
        digits = s.take_while(frozenset("0123456789"))
        if not digits or len(digits) > 5 or int(digits) > 65535:
            raise SipParseError("invalid Via port")
        port = int(digits)
    params = parse_header_params(s, "Via")
    s.skip_ws()
    if not s.at_end():
        raise SipParseError("unexpected text in Via")
    if "branch" in params and not params.get("branch"):
        raise SipParseError("empty Via branch")
    return Via(
        transport=transport.upper(), host=host, port=port, params=params, protocol=f"{name.upper()}/{version}"
    )


@dataclass
class NameAddr:
    """A name-addr or addr-spec with header parameters: the value of From, To, Contact, Route...

    `uri` is kept as text (any scheme); `sip_uri` parses it when it is sip/sips. A Contact of `*` has
    uri "*".
    """

    uri: str
    display_name: str | None = None
    params: Params = field(default_factory=Params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def parsed_uri(self) -> Uri | None:
        try:
            return parse_uri(self.uri)
        except SipParseError:
            return None

    @property
    def sip_uri(self) -> SipUri | None:
        parsed = self.parsed_uri
        return parsed if isinstance(parsed, SipUri) else None

    def with_tag(self, tag: str) -> NameAddr:
        params = self.params.copy()
        params.set("tag", tag)
        return NameAddr(uri=self.uri, display_name=self.display_name, params=params)

    def __str__(self) -> str:
        if self.uri == "*":
            return f"*{self.params}"
        name = ""
        if self.display_name:
            name = (
                self.display_name
                if all(is_token(w) for w in self.display_name.split(" "))
                else quote(self.display_name)
            ) + " "
        return f"{name}<{self.uri}>{self.params}"


def _check_uri(uri: str) -> None:
    scheme = uri.partition(":")[0].lower()
    if scheme in ("sip", "sips", "tel"):
        parse_uri(uri)
    elif ":" not in uri or not scheme:
        raise SipParseError("URI has no scheme")


def parse_name_addr(value: str, *, allow_star: bool = False) -> NameAddr:
    s = Scanner(value)
    s.skip_ws()
    if allow_star and s.peek() == "*":
        s.pos += 1
        params = parse_header_params(s, "Contact")
        s.skip_ws()
        if not s.at_end():
            raise SipParseError("unexpected text after Contact *")
        return NameAddr(uri="*", params=params)
    display: str | None = None
    if s.peek() == '"':
        display = unquote(s.quoted())
        s.skip_ws()
        if s.peek() != "<":
            raise SipParseError("display name not followed by <URI>")
    elif s.peek() != "<":
        # Either `token *(LWS token) <uri>` (LWS before '<' optional: RFC 4475 lwsdisp) or a bare addr-spec.
        start = s.pos
        words: list[str] = []
        while True:
            word = s.token()
            if not word:
                break
            words.append(word)
            s.skip_ws()
            if s.peek() == "<":
                break
        if s.peek() == "<" and words:
            display = " ".join(words)
        else:
            s.pos = start
    if s.peek() == "<":
        s.pos += 1
        uri = s.take_until(">")
        s.expect(">", "name-addr")
        if not uri or any(c in " \t" for c in uri):
            raise SipParseError("whitespace or nothing inside <URI>")
    else:
        uri = s.take_until(" \t;,")
        if not uri:
            raise SipParseError("missing URI")
        if "?" in uri:
            # RFC 3261 §20.10: a URI with headers or parameters must be enclosed in <> (RFC 4475 regbadct)
            raise SipParseError("URI with headers must be enclosed in <>")
    _check_uri(uri)
    params = parse_header_params(s, "name-addr")
    s.skip_ws()
    if not s.at_end():
        raise SipParseError("unexpected text in name-addr")
    return NameAddr(uri=uri, display_name=display, params=params)


@dataclass(frozen=True)
class CSeq:
    number: int
    method: str

    def __str__(self) -> str:
        return f"{self.number} {self.method}"


def parse_cseq(value: str) -> CSeq:
    parts = value.split()
    if len(parts) != 2 or not parts[0].isdigit() or not is_token(parts[1]):
        raise SipParseError("malformed CSeq")
    if len(parts[0]) > 10 or int(parts[0]) > _MAX_UINT32:
        raise SipParseError("CSeq number out of range")
    return CSeq(int(parts[0]), parts[1])
