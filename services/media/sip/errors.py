"""The one exception the SIP core raises for bad input, carrying what the adapter needs to answer it."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["PartialMessage", "SipParseError"]


@dataclass(frozen=True)
class PartialMessage:
    """What could still be read from a message that failed to parse.

    For a request whose start line and Via were readable this is enough to build a `400 Bad Request`
    (RFC 3261 §8.2.6 copies Via, From, To, Call-ID and CSeq); otherwise the adapter drops the input.
    """

    method: str | None = None  # request method; None for responses or an unreadable start line
    via: tuple[str, ...] = ()
    from_: str | None = None
    to: str | None = None
    call_id: str | None = None
    cseq: str | None = None


class SipParseError(ValueError):
    """Malformed SIP or SDP input. Never anything else escapes the parsers.

    `status` is the response code to answer with (400, 505 for a foreign SIP version, 513 when over a
    size limit); `fatal` means a stream lost its framing and the connection must be closed.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int = 400,
        partial: PartialMessage | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial = partial
        self.fatal = fatal

    @property
    def can_respond(self) -> bool:
        """True when the input was a request (not ACK) with a Via, so an error response can be routed."""
        p = self.partial
        return p is not None and p.method is not None and p.method != "ACK" and bool(p.via)

    def __repr__(self) -> str:
        return f"SipParseError({self.reason!r}, status={self.status}, fatal={self.fatal})"
