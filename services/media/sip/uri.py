"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966), and the dialled number a Request-URI carries.

Components are kept as received (escapes included) so that `str(parse_uri(x)) == x`; the `*_unescaped`
accessors give the decoded values RFC 3261 §19.1.4 compares.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from urllib.parse import unquote as _pct_decode

from services.media.sip.errors import SipParseError
from services.media.sip.headers import Params

__all__ = ["AbsoluteUri", "SipUri", "TelUri", "Uri", "dialled_number", "parse_sip_uri", "parse_uri"]

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
_HOST_CHARS = frozenset(string.ascii_letters + string.digits + ".-_")
_IPV6_CHARS = frozenset(string.hexdigits + ":.")
# Characters that can never appear in a URI on the wire (they end it in a header or start line).
_FORBIDDEN = frozenset(' \t\r\n<>"\x00')
_TEL_CHARS = frozenset(string.digits + string.ascii_letters + "+*#-.()")
_VISUAL_SEPARATORS = str.maketrans("", "", "-.() ")


@dataclass
class SipUri:
    """sip: or sips: URI. `user`, `password` and parameter values are kept escaped as received."""

    host: str
    user: str | None = None
    password: str | None = None
    port: int | None = None
    params: Params = field(default_factory=Params)
    headers: list[tuple[str, str]] = field(default_factory=list)
    scheme: str = "sip"

    @property
    def user_unescaped(self) -> str | None:
        return None if self.user is None else _pct_decode(self.user, errors="surrogateescape")

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.lower() if value else None

    @property
    def loose_route(self) -> bool:
        return "lr" in self.params

    @property
    def secure(self) -> bool:
        return self.scheme.lower() == "sips"

    def host_port(self) -> str:
        host = self.host
        return host if self.port is None else f"{host}:{self.port}"

    def __str__(self) -> str:
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(self.user)
            if self.password is not None:
                out.append(":" + self.password)
            out.append("@")
        out.append(self.host_port())
        out.append(str(self.params))
        if self.headers:
            out.append("?" + "&".join(f"{k}={v}" for k, v in self.headers))
        return "".join(out)


@dataclass
class TelUri:
    """tel: URI (RFC 3966): a global (+E.164) or local number with parameters such as phone-context."""

    number: str
    params: Params = field(default_factory=Params)

    @property
    def is_global(self) -> bool:
        return self.number.startswith("+")

    def __str__(self) -> str:
        return f"tel:{self.number}{self.params}"


@dataclass
class AbsoluteUri:
    """Any other scheme, kept opaque (RFC 4475 §3.3.11: a UAS answers 416 to these in a Request-URI)."""

    scheme: str
    opaque: str

    def __str__(self) -> str:
        return f"{self.scheme}:{self.opaque}"


Uri = SipUri | TelUri | AbsoluteUri


def _parse_uri_params(text: str, what: str) -> Params:
    items: list[tuple[str, str | None]] = []
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if not name:
            raise SipParseError(f"empty parameter in {what}")
        if eq and not value:
            raise SipParseError(f"empty parameter value in {what}")
        items.append((name, value if eq else None))
    return Params(items)


def _parse_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError("unterminated IPv6 reference in URI")
        host = text[: end + 1]
        if not all(c in _IPV6_CHARS for c in host[1:-1]) or ":" not in host:
            raise SipParseError("invalid IPv6 reference in URI")
        rest = text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise SipParseError("invalid text after IPv6 reference in URI")
        port_text = rest[1:] if rest else None
    else:
        host, colon, port_text_raw = text.partition(":")
        port_text = port_text_raw if colon else None
        if not host or not all(c in _HOST_CHARS for c in host):
            raise SipParseError("invalid host in URI")
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or len(port_text) > 5 or int(port_text) > 65535:
            raise SipParseError("invalid port in URI")
        port = int(port_text)
    return host, port


def parse_sip_uri(text: str) -> SipUri:
    scheme, sep, rest = text.partition(":")
    if not sep or scheme.lower() not in ("sip", "sips"):
        raise SipParseError("not a sip: or sips: URI")
    if not rest or any(c in _FORBIDDEN for c in rest):
        raise SipParseError("invalid character in SIP URI")
    user: str | None = None
    password: str | None = None
    # The user part may contain ';', '?' and ':' (RFC 4475 intmeth, semiuri) but never an unescaped '@',
    # so the first '@' ends it.
    at = rest.find("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user_text, colon, pass_text = userinfo.partition(":")
        if not user_text:
            raise SipParseError("empty user part in SIP URI")
        user = user_text
        password = pass_text if colon else None
    hostpart, q, headers_text = rest.partition("?")
    if "@" in hostpart:
        raise SipParseError("more than one '@' in SIP URI")
    hostport, semi, params_text = hostpart.partition(";")
    host, port = _parse_host_port(hostport)
    params = _parse_uri_params(params_text, "SIP URI") if semi else Params()
    headers: list[tuple[str, str]] = []
    if q:
        for part in headers_text.split("&"):
            name, eq, value = part.partition("=")
            if not name or not eq:
                raise SipParseError("malformed header in SIP URI")
            headers.append((name, value))
    return SipUri(
        host=host, user=user, password=password, port=port, params=params, headers=headers, scheme=scheme
    )


def _parse_tel_uri(text: str) -> TelUri:
    rest = text.partition(":")[2]
    number, semi, params_text = rest.partition(";")
    if not number or not all(c in _TEL_CHARS for c in number):
        raise SipParseError("invalid tel URI number")
    if number.startswith("+") and not any(c.isdigit() for c in number):
        raise SipParseError("invalid tel URI number")
    params = _parse_uri_params(params_text, "tel URI") if semi else Params()
    return TelUri(number=number, params=params)


def parse_uri(text: str) -> Uri:
    """Parse any URI SIP carries; sip/sips/tel strictly, other schemes opaquely."""
    scheme, sep, rest = text.partition(":")
    if not sep or not _SCHEME.match(scheme):
        raise SipParseError("URI has no scheme")
    if not rest or any(c in _FORBIDDEN for c in rest):
        raise SipParseError("invalid character in URI")
    low = scheme.lower()
    if low in ("sip", "sips"):
        return parse_sip_uri(text)
    if low == "tel":
        return _parse_tel_uri(text)
    return AbsoluteUri(scheme=scheme, opaque=rest)


def _normalise_number(raw: str, assume_international: bool) -> str | None:
    digits = raw.translate(_VISUAL_SEPARATORS)
    if digits.startswith("+"):
        body = digits[1:]
        return "+" + body if body.isdigit() and 0 < len(body) <= 15 else None
    if not digits.isdigit():
        return None
    if digits.startswith("00") and len(digits) > 2:
        return "+" + digits[2:]
    return "+" + digits if assume_international else digits


def dialled_number(uri: str | Uri, *, assume_international: bool = True) -> str | None:
    """The number dialled in a Request-URI, in E.164 form with a leading '+', or None if it is not one.

    `sip:+1-555-0100@host`, `sip:0015550100@host`, `tel:+15550100` all give '+15550100'. A bare digit
    string (what many trunks send) is taken as international unless `assume_international` is False,
    in which case it is returned without '+'. Visual separators and user-part parameters are dropped.
    """
    try:
        parsed = parse_uri(uri) if isinstance(uri, str) else uri
    except SipParseError:
        return None
    if isinstance(parsed, TelUri):
        return _normalise_number(parsed.number, assume_international)
    if isinstance(parsed, SipUri):
        user = parsed.user_unescaped
        if not user:
            return None
        # A telephone-subscriber user part may carry its own ';' parameters (RFC 3261 §19.1.1).
        return _normalise_number(user.partition(";")[0], assume_international)
    return None
