# G.711 PCMU (mu-law) and PCMA (A-law) with numpy lookup tables: 256-entry decode tables and
# 65536-entry encode tables indexed by the 16-bit sample, built once at import from the classic
# reference algorithm (Sun's g711.c, which ITU-T G.191 matches). `audioop` is gone in Python 3.13.
# Between a PCMU leg and a PCMA leg, `bytes.translate` with ULAW_TO_ALAW/ALAW_TO_ULAW transcodes
# without touching linear samples.
from __future__ import annotations

import enum

import numpy as np
import numpy.typing as npt

__all__ = [
    "ALAW_DECODE",
    "ALAW_SILENCE",
    "ALAW_TO_ULAW",
    "G711",
    "ULAW_DECODE",
    "ULAW_SILENCE",
    "ULAW_TO_ALAW",
    "alaw_decode",
    "alaw_encode",
    "as_int16",
    "ulaw_decode",
    "ulaw_encode",
]

Samples = npt.NDArray[np.int16]

ULAW_SILENCE = 0xFF  # encodes 0
ALAW_SILENCE = 0xD5  # encodes +8, the code nearest 0

_ULAW_BIAS = 0x84
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _build_ulaw_decode() -> Samples:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((code & 0x0F) << 3) + _ULAW_BIAS) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, _ULAW_BIAS - magnitude, magnitude - _ULAW_BIAS).astype(np.int16)


def _build_alaw_decode() -> Samples:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    mantissa = (code & 0x0F) << 4
    segment = (code & 0x70) >> 4
    magnitude = np.where(
        segment == 0,
        mantissa + 8,
        (mantissa + 0x108) << np.maximum(segment - 1, 0),
    )
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


def _build_ulaw_encode() -> npt.NDArray[np.uint8]:
    # ITU-T G.191 ulaw_compress: 14-bit magnitude (one's complement for negatives) plus the bias 33,
    # segment = bit length of (magnitude >> 6), 4 mantissa bits; all bits inverted on the wire.
    pcm = np.arange(-32768, 32768, dtype=np.int32)
    magnitude = np.minimum((np.where(pcm < 0, ~pcm, pcm) >> 2) + 33, 0x1FFF)
    segment = 1 + np.frexp(magnitude >> 6)[1]  # frexp's exponent is the bit length
    code = ((8 - segment) << 4) | (15 - ((magnitude >> segment) & 0x0F))
    code = np.where(pcm >= 0, code | 0x80, code)
    # Index by the sample's 16-bit two's-complement pattern, as the encoder looks it up.
    return np.roll(code.astype(np.uint8), -32768)


def _build_alaw_encode() -> npt.NDArray[np.uint8]:
    # ITU-T G.191 alaw_compress (and Sun's g711.c): 13-bit magnitude, 3-bit segment, 4 bits of
    # mantissa, even bits inverted (xor 0x55), sign bit set for non-negative samples.
    pcm = np.arange(-32768, 32768, dtype=np.int32) >> 3
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude)  # first end >= magnitude
    shift = np.where(segment < 2, 1, segment)
    code = (np.minimum(segment, 7) << 4) | ((magnitude >> shift) & 0x0F)
    code = np.where(segment >= 8, 0x7F, code)
    return np.roll((code ^ mask).astype(np.uint8), -32768)


ULAW_DECODE: Samples = _build_ulaw_decode()
ALAW_DECODE: Samples = _build_alaw_decode()
_ULAW_ENCODE = _build_ulaw_encode()
_ALAW_ENCODE = _build_alaw_encode()
ULAW_TO_ALAW = bytes(_ALAW_ENCODE[ULAW_DECODE.view(np.uint16)])
ALAW_TO_ULAW = bytes(_ULAW_ENCODE[ALAW_DECODE.view(np.uint16)])
for _table in (ULAW_DECODE, ALAW_DECODE, _ULAW_ENCODE, _ALAW_ENCODE):
    _table.flags.writeable = False


def as_int16(samples: npt.ArrayLike) -> Samples:
    """Samples as 16-bit linear, as the encoders take them: floats rounded, everything clipped."""
    array = np.asarray(samples)
    if array.dtype != np.int16:
        if array.dtype.kind == "f":
            array = np.clip(np.rint(array), -32768, 32767)
        elif array.dtype.kind in "iu":
            array = np.clip(array, -32768, 32767)
        else:
            raise TypeError(f"G.711 encodes integer or float samples, not {array.dtype}")
        array = array.astype(np.int16)
    return array


def _as_index(samples: npt.ArrayLike) -> npt.NDArray[np.uint16]:
    return as_int16(samples).view(np.uint16)


def ulaw_decode(data: bytes) -> Samples:
    return ULAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def alaw_decode(data: bytes) -> Samples:
    return ALAW_DECODE[np.frombuffer(data, dtype=np.uint8)]


def ulaw_encode(samples: npt.ArrayLike) -> bytes:
    """16-bit linear samples (floats are rounded, everything is clipped) to mu-law octets."""
    return _ULAW_ENCODE[_as_index(samples)].tobytes()


def alaw_encode(samples: npt.ArrayLike) -> bytes:
    return _ALAW_ENCODE[_as_index(samples)].tobytes()


class G711(enum.Enum):
    """The two G.711 laws by their static RTP payload type (RFC 3551)."""

    PCMU = 0
    PCMA = 8

    @property
    def payload_type(self) -> int:
        return self.value

    @property
    def silence(self) -> int:
        return ULAW_SILENCE if self is G711.PCMU else ALAW_SILENCE

    def decode(self, data: bytes) -> Samples:
        return ulaw_decode(data) if self is G711.PCMU else alaw_decode(data)

    def encode(self, samples: npt.ArrayLike) -> bytes:
        return ulaw_encode(samples) if self is G711.PCMU else alaw_encode(samples)

    def transcode_to(self, other: G711, data: bytes) -> bytes:
        if self is other:
            return data
        return data.translate(ULAW_TO_ALAW if self is G711.PCMU else ALAW_TO_ULAW)
