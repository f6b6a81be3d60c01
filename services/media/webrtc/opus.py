# Opus for a WebRTC leg, straight from libopus through cffi's ABI mode (no compiler at install time):
# the worker's side of a leg is 8 kHz, and libopus both encodes from 8 kHz (narrowband SILK, nothing above
# the 4 kHz that G.711 carries anyway) and decodes to 8 kHz with its own filtering. FFmpeg's wrapper (PyAV)
# always decodes at 48 kHz, which cost a 48 -> 8 kHz resampler per frame, and it cannot reach libopus's
# packet loss concealment (an empty packet means end of stream there). The RTP clock stays 48 kHz
# (RFC 7587) whatever the coded rate.
#
# Why a binding of our own: the one on PyPI (opuslib, ctypes) has had no release since 2018 and its fork
# is young; we need six calls. Which libopus: the copy inside PyAV's wheel (av.libs, libopus 1.5), which
# aiortc already loads into every worker, so the process holds one libopus and needs no system package;
# where PyAV was built against the system's library instead (no av.libs), Debian's libopus0.
from __future__ import annotations

import ctypes.util
import glob
import os
from typing import Any

import av
import cffi
import numpy as np
import numpy.typing as npt

__all__ = ["OpusDecoder", "OpusEncoder", "OpusError", "library_path", "packet_samples", "version"]

Samples = npt.NDArray[np.int16]

_CDEF = """
typedef struct OpusEncoder OpusEncoder;
typedef struct OpusDecoder OpusDecoder;
OpusEncoder *opus_encoder_create(int32_t Fs, int channels, int application, int *error);
int opus_encoder_ctl(OpusEncoder *st, int request, ...);
int32_t opus_encode(OpusEncoder *st, const int16_t *pcm, int frame_size, unsigned char *data,
                    int32_t max_data_bytes);
void opus_encoder_destroy(OpusEncoder *st);
OpusDecoder *opus_decoder_create(int32_t Fs, int channels, int *error);
int opus_decode(OpusDecoder *st, const unsigned char *data, int32_t len, int16_t *pcm, int frame_size,
                int decode_fec);
void opus_decoder_destroy(OpusDecoder *st);
int opus_packet_get_nb_samples(const unsigned char *packet, int32_t len, int32_t Fs);
const char *opus_strerror(int error);
const char *opus_get_version_string(void);
"""

# opus_defines.h
_APPLICATION_VOIP = 2048
_SET_BITRATE = 4002
_SET_VBR = 4006
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_SIGNAL = 4024
_SIGNAL_VOICE = 3001

MAX_PACKET = 1500  # what a datagram can carry anyway; libopus's own limit is 1275 bytes per frame
MAX_FRAME_MS = 120  # the longest an Opus packet lasts (RFC 6716 3.2.5)


class OpusError(RuntimeError):
    """libopus refused a call; the message is libopus's own reason."""


def library_path() -> str:
    """The libopus to load: PyAV's bundled copy, else the system's (Debian: libopus0)."""
    bundled = os.path.join(os.path.dirname(os.path.dirname(av.__file__)), "av.libs", "libopus-*.so*")
    found = sorted(glob.glob(bundled))
    if found:
        return found[0]
    system = ctypes.util.find_library("opus")
    if system is None:
        raise OpusError(
            "no libopus: neither PyAV's wheel (av.libs) nor the system has one (apt-get install libopus0)"
        )
    return system


_ffi = cffi.FFI()
_ffi.cdef(_CDEF)
_lib: Any = _ffi.dlopen(library_path())
_NULL = _ffi.NULL


def version() -> str:
    return str(_ffi.string(_lib.opus_get_version_string()).decode())


def _check(code: int, what: str) -> int:
    if code < 0:
        raise OpusError(f"{what}: {_ffi.string(_lib.opus_strerror(code)).decode()}")
    return code


def _int(value: int) -> Any:
    return _ffi.cast("int", value)  # a variadic argument must carry its C type


def packet_samples(payload: bytes, rate: int) -> int:
    """How many samples per channel at `rate` the packet decodes to (its duration); OpusError if the
    packet is malformed."""
    return _check(_lib.opus_packet_get_nb_samples(payload, len(payload), rate), "packet duration")


class OpusEncoder:
    """Mono int16 at `rate` in, one packet per call out (the frame's length sets the packet's duration:
    2.5 to 60 ms)."""

    def __init__(self, rate: int, *, bitrate: int, complexity: int, fec: bool = False) -> None:
        if not 0 <= complexity <= 10:
            raise ValueError(f"Opus complexity {complexity} is outside 0-10")
        error = _ffi.new("int *")
        state = _lib.opus_encoder_create(rate, 1, _APPLICATION_VOIP, error)
        _check(error[0], f"opus_encoder_create({rate} Hz)")
        self._state = _ffi.gc(state, _lib.opus_encoder_destroy)
        for request, value in (
            (_SET_BITRATE, bitrate),
            (_SET_COMPLEXITY, complexity),
            (_SET_VBR, 1),
            (_SET_SIGNAL, _SIGNAL_VOICE),
            (_SET_INBAND_FEC, int(fec)),
            (_SET_PACKET_LOSS_PERC, 10 if fec else 0),
        ):
            _check(_lib.opus_encoder_ctl(self._state, request, _int(value)), f"opus_encoder_ctl({request})")
        self.rate = rate
        self._out = _ffi.new("unsigned char[]", MAX_PACKET)

    def encode(self, samples: Samples) -> bytes:
        pcm = np.ascontiguousarray(samples, dtype=np.int16)
        size = _check(
            _lib.opus_encode(
                self._state, _ffi.from_buffer("int16_t[]", pcm), len(pcm), self._out, MAX_PACKET
            ),
            "opus_encode",
        )
        return _ffi.buffer(self._out, size)[:]  # type: ignore[no-any-return]


class OpusDecoder:
    """Packets in, mono int16 at `rate` out (a stereo stream is mixed down by libopus); `conceal` makes
    up a lost frame from the decoder's state (libopus's PLC, fading out over a long gap)."""

    def __init__(self, rate: int) -> None:
        error = _ffi.new("int *")
        state = _lib.opus_decoder_create(rate, 1, error)
        _check(error[0], f"opus_decoder_create({rate} Hz)")
        self._state = _ffi.gc(state, _lib.opus_decoder_destroy)
        self.rate = rate
        self._capacity = rate * MAX_FRAME_MS // 1000
        self._pcm = np.zeros(self._capacity, np.int16)
        self._pcm_ptr = _ffi.from_buffer("int16_t[]", self._pcm)

    def decode(self, payload: bytes) -> Samples:
        """OpusError for a packet libopus cannot decode (corrupt, or longer than 120 ms) or an empty one
        (which libopus would take as a loss of as much as it has room for)."""
        if not payload:
            raise OpusError("opus_decode: an empty packet")
        count = _check(
            _lib.opus_decode(self._state, payload, len(payload), self._pcm_ptr, self._capacity, 0),
            "opus_decode",
        )
        return self._pcm[:count].copy()

    def conceal(self, samples: int) -> Samples:
        """`samples` (a multiple of 2.5 ms) in place of a packet that never came."""
        count = _check(
            _lib.opus_decode(self._state, _NULL, 0, self._pcm_ptr, min(samples, self._capacity), 0),
            "opus_decode (concealment)",
        )
        return self._pcm[:count].copy()
