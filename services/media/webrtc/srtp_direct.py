# pylibsrtp's Session.protect/unprotect without its per-call Python: each call checks the type and length,
# allocates an `int *` with ffi.new, copies the packet into the session's buffer by slice assignment and
# raises through a helper; about 1-1.5 us of its 2-3 us (docs/media.md, "CPU per packet"), on every packet
# of every WebRTC leg, both ways. Here the length cell and the buffer are allocated once, and libsrtp runs
# on the same `srtp_t` as the Session (aiortc's, keyed by the DTLS handshake): one stream state per SSRC,
# whoever protects. The binding's internals (`_binding`, `Session._srtp`) are those of pylibsrtp 1.0 (the
# locked version); a Session without them is used through its own methods.
from __future__ import annotations

from typing import Any

import pylibsrtp

try:
    from pylibsrtp._binding import ffi, lib
except ImportError:  # a pylibsrtp without the cffi module we know: its own methods
    ffi = lib = None

__all__ = ["DirectSrtp"]

BUFFER = 1500  # pylibsrtp's own buffer: an MTU
RTP_TRAILER = 16 + 128  # SRTP_MAX_TAG_LEN + SRTP_MAX_MKI_LEN, as pylibsrtp reserves
RTCP_TRAILER = 4 + 16 + 128


class DirectSrtp:
    """protect / unprotect / protect_rtcp / unprotect_rtcp of one pylibsrtp.Session, with its errors
    (pylibsrtp.Error: a tampered, replayed or unkeyed packet; ValueError: too long)."""

    def __init__(self, session: pylibsrtp.Session) -> None:
        self.session = session  # keeps the srtp_t alive
        srtp: Any = getattr(session, "_srtp", None)
        self._srtp: Any = srtp[0] if srtp is not None and lib is not None else None
        if self._srtp is not None:
            self._data = ffi.new("char[]", BUFFER)
            self._view = ffi.buffer(self._data)
            self._length = ffi.new("int *")

    def _run(self, name: str, data: bytes) -> bytes:
        if self._srtp is None:
            out: bytes = getattr(self.session, name)(data)
            return out
        func, trailer = _OPERATIONS[name]
        size = len(data)
        if size > BUFFER - trailer:
            raise ValueError("packet is too long")
        length = self._length
        length[0] = size
        ffi.memmove(self._data, data, size)
        status = func(self._srtp, self._data, length)
        if status:
            raise pylibsrtp.Error(_error(status))
        out = self._view[0 : length[0]]
        return out

    def protect(self, data: bytes) -> bytes:
        return self._run("protect", data)

    def unprotect(self, data: bytes) -> bytes:
        return self._run("unprotect", data)

    def protect_rtcp(self, data: bytes) -> bytes:
        return self._run("protect_rtcp", data)

    def unprotect_rtcp(self, data: bytes) -> bytes:
        return self._run("unprotect_rtcp", data)


# libsrtp's function and the room it needs after the packet, by the Session method it stands in for.
_OPERATIONS: dict[str, tuple[Any, int]] = (
    {
        "protect": (lib.srtp_protect, RTP_TRAILER),
        "unprotect": (lib.srtp_unprotect, 0),
        "protect_rtcp": (lib.srtp_protect_rtcp, RTCP_TRAILER),
        "unprotect_rtcp": (lib.srtp_unprotect_rtcp, 0),
    }
    if lib is not None
    else {}
)


def _error(status: int) -> str:
    errors = getattr(pylibsrtp, "ERRORS", ())
    return errors[status] if 0 <= status < len(errors) else f"libsrtp error {status}"
