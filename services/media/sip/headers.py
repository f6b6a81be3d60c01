"""Lexical layer of SIP headers (RFC 3261 §7.3, §25.1): names, parameters, quoting and list splitting.

Nothing here knows what a URI or a Via means; fields.py and uri.py build on these pieces.
"""

from __future__ import annotations

import functools
import string
from collections.abc import Iterable, Iterator

from services.media.sip.errors import SipParseError

__all__ = [
    "LIST_HEADERS",
    "SINGLE_HEADERS",
    "TOKEN_CHARS",
    "Headers",
    "Params",
    "Scanner",
    "canonical_name",
    "is_token",
    "quote",
    "split_list",
    "unquote",
]

# token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
TOKEN_CHARS = frozenset(string.ascii_letters + string.digits + "-.!%*_+`'~")
_WS = " \t"

_COMPACT = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_KNOWN = [
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Transfer-Encoding",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "MIME-Version",
    "Min-Expires",
    "Min-SE",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
]
_CANONICAL = {name.lower(): name for name in _KNOWN}

# Headers whose comma-separated values are split into one entry each when parsed. Only these: splitting
# an unknown header (or Authorization, whose params are comma-separated) would change its meaning.
LIST_HEADERS = frozenset({"Via", "Contact", "Route", "Record-Route", "Path", "Service-Route"})
# Headers that may appear at most once (RFC 4475 §3.3.9 multi01, §3.3.8 mcl01).
SINGLE_HEADERS = frozenset(
    {"From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Content-Type"}
)


@functools.lru_cache(maxsize=1024)
def canonical_name(name: str) -> str:
    """The full, canonically cased name for a header name in any case or compact form.

    Unknown names are kept as received: they are matched case-insensitively but not rewritten.
    """
    low = name.lower()
    return _COMPACT.get(low) or _CANONICAL.get(low) or name


def is_token(text: str) -> bool:
    return bool(text) and all(c in TOKEN_CHARS for c in text)


def quote(text: str) -> str:
    """A quoted-string for `text`: backslash, quote and control characters escaped, CR and LF dropped."""
    out = ['"']
    for c in text:
        if c in "\r\n":
            continue
        if c in '\\"' or ord(c) < 0x20 or c == "\x7f":
            out.append("\\")
        out.append(c)
    out.append('"')
    return "".join(out)


def unquote(raw: str) -> str:
    """The text of a quoted-string (quoted-pair escapes resolved); anything else is returned as is."""
    if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
        return raw
    out: list[str] = []
    i, end = 1, len(raw) - 1
    while i < end:
        c = raw[i]
        if c == "\\" and i + 1 < end:
            out.append(raw[i + 1])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def split_list(value: str) -> list[str]:
    """Split a header value on commas that are outside quoted strings and <...> URIs; parts are stripped."""
    parts: list[str] = []
    start = 0
    in_quote = False
    depth = 0
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if in_quote:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                in_quote = False
        elif c == '"':
            in_quote = True
        elif c == "<":
            depth += 1
        elif c == ">" and depth:
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(value[start:i].strip())
            start = i + 1
        i += 1
    if in_quote:
        raise SipParseError("unterminated quoted string")
    parts.append(value[start:].strip())
    return parts


class Scanner:
    """A cursor over one header value, for the small recursive-descent parsers in fields.py and auth.py."""

    __slots__ = ("n", "pos", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.n = len(text)

    def at_end(self) -> bool:
        return self.pos >= self.n

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < self.n else ""

    def rest(self) -> str:
        return self.text[self.pos :]

    def skip_ws(self) -> int:
        start = self.pos
        while self.pos < self.n and self.text[self.pos] in _WS:
            self.pos += 1
        return self.pos - start

    def take_while(self, chars: frozenset[str]) -> str:
        start = self.pos
        while self.pos < self.n and self.text[self.pos] in chars:
            self.pos += 1
        return self.text[start : self.pos]

    def take_until(self, stops: str) -> str:
        start = self.pos
        while self.pos < self.n and self.text[self.pos] not in stops:
            self.pos += 1
        return self.text[start : self.pos]

    def token(self) -> str:
        return self.take_while(TOKEN_CHARS)

    def expect(self, char: str, what: str) -> None:
        if self.peek() != char:
            raise SipParseError(f"expected {char!r} in {what}")
        self.pos += 1

    def quoted(self) -> str:
        """A quoted-string starting at the cursor, returned raw (with its quotes and escapes)."""
        if self.peek() != '"':
            raise SipParseError("expected a quoted string")
        start = self.pos
        i = self.pos + 1
        while i < self.n:
            c = self.text[i]
            if c == "\\":
                if i + 1 >= self.n or self.text[i + 1] in "\r\n":
                    break
                i += 2
                continue
            if c == '"':
                self.pos = i + 1
                return self.text[start : self.pos]
            i += 1
        raise SipParseError("unterminated quoted string")


class Params:
    """Ordered `;name[=value]` parameters; names compare case-insensitively, values are kept raw.

    A parameter without a value (`;lr`, `;rport`) is stored with value None: test with `in`.
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str | None]] = ()) -> None:
        self._items: list[tuple[str, str | None]] = list(items)

    def get(self, name: str, default: str | None = None) -> str | None:
        low = name.lower()
        for key, value in self._items:
            if key.lower() == low:
                return value
        return default

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        low = name.lower()
        return any(key.lower() == low for key, _ in self._items)

    def set(self, name: str, value: str | None = None) -> None:
        low = name.lower()
        for i, (key, _) in enumerate(self._items):
            if key.lower() == low:
                self._items[i] = (key, value)
                return
        self._items.append((name, value))

    def remove(self, name: str) -> None:
        low = name.lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != low]

    def items(self) -> list[tuple[str, str | None]]:
        return list(self._items)

    def copy(self) -> Params:
        return Params(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[tuple[str, str | None]]:
        return iter(list(self._items))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Params):
            return NotImplemented
        return [(k.lower(), v) for k, v in self._items] == [(k.lower(), v) for k, v in other._items]

    def __str__(self) -> str:
        return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self._items)

    def __repr__(self) -> str:
        return f"Params({self._items!r})"


class Headers:
    """The header fields of one message, in order, under their canonical names.

    List headers (Via, Contact, Route, Record-Route...) hold one entry per value; every other header holds
    one entry per line as received (after unfolding).
    """

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str, str]] = []
        for name, value in items:
            self.add(name, value)

    @staticmethod
    def _key(name: str) -> tuple[str, str]:
        canon = canonical_name(name)
        return canon.lower(), canon

    @staticmethod
    def _checked(value: str) -> str:
        # A CR or LF in a value would let whoever supplied it inject header lines when serialized.
        if "\r" in value or "\n" in value:
            raise ValueError("header value contains CR or LF")
        return value

    def get(self, name: str) -> str | None:
        key = self._key(name)[0]
        for k, _, value in self._items:
            if k == key:
                return value
        return None

    def get_all(self, name: str) -> list[str]:
        key = self._key(name)[0]
        return [value for k, _, value in self._items if k == key]

    def get_list(self, name: str) -> list[str]:
        """Every comma-separated value of `name` across all its lines (e.g. Allow, Supported, Require)."""
        out: list[str] = []
        for value in self.get_all(name):
            out.extend(part for part in split_list(value) if part)
        return out

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = self._key(name)[0]
        return any(k == key for k, _, _ in self._items)

    def count(self, name: str) -> int:
        key = self._key(name)[0]
        return sum(1 for k, _, _ in self._items if k == key)

    def add(self, name: str, value: str) -> None:
        key, canon = self._key(name)
        self._items.append((key, canon, self._checked(value)))

    def prepend(self, name: str, value: str) -> None:
        """Insert before the first `name` entry (or at the top): how a Via or Route is pushed."""
        key, canon = self._key(name)
        value = self._checked(value)
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items.insert(i, (key, canon, value))
                return
        self._items.insert(0, (key, canon, value))

    def set(self, name: str, value: str) -> None:
        """Replace every `name` entry by one, at the place of the first (or at the end)."""
        key, canon = self._key(name)
        value = self._checked(value)
        out: list[tuple[str, str, str]] = []
        placed = False
        for item in self._items:
            if item[0] == key:
                if not placed:
                    out.append((key, canon, value))
                    placed = True
                continue
            out.append(item)
        if not placed:
            out.append((key, canon, value))
        self._items = out

    def replace_first(self, name: str, value: str) -> None:
        key, canon = self._key(name)
        value = self._checked(value)
        for i, (k, _, _) in enumerate(self._items):
            if k == key:
                self._items[i] = (key, canon, value)
                return
        self._items.append((key, canon, value))

    def remove(self, name: str) -> int:
        key = self._key(name)[0]
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        return before - len(self._items)

    def items(self) -> list[tuple[str, str]]:
        return [(canon, value) for _, canon, value in self._items]

    def copy(self) -> Headers:
        h = Headers()
        h._items = list(self._items)
        return h

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.items())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return self.items() == other.items()

    def __repr__(self) -> str:
        return f"Headers({self.items()!r})"
