# Voice settings and cheaper per-frame work for aiortc 1.16.x, version-pinned like dtmf_patch:
#   1. aiortc's Opus encoder is fixed at 96 kbit/s stereo; ours sends what we ask the browser for: mono at
#      `bitrate` (about 32 kbit/s). Half the encoder's CPU (measured: 159 -> 78 us a frame here) and a
#      third of the bandwidth. Decoders take mono Opus in a stream declared opus/48000/2 (RFC 7587).
#   2. aiortc computes the RFC 6465 audio level of every frame it sends in a pure-Python loop over the
#      samples (about 250 us for a 48 kHz frame, more than the Opus encoder); the same number from numpy.
#   3. `inline_codecs(transceiver)`: aiortc encodes each frame in the default thread pool and decodes in a
#      thread per receiver, handing every 20 ms frame between threads twice. For voice the hand-offs cost
#      far more than the codecs (perf on the worker: a third of its CPU in the kernel's task switching,
#      4 % in libopus), so a leg's frames are encoded and decoded on the event loop instead. G.711 skips
#      PyAV altogether: received payloads become int16 arrays by table (services.media.rtp.g711) and go to
#      the track as such (WebRtcLeg._receive takes them); OutboundAudio hands the sender encoded packets.
# 1 and 2 are process-wide (aiortc has no per-connection hook): a media worker's legs share the settings.
from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable
from typing import Any

import aiortc
import aiortc.codecs
import aiortc.rtp
import av
import numpy as np
from aiortc import RTCRtpTransceiver
from aiortc.codecs import get_decoder
from aiortc.codecs.opus import OpusEncoder
from av import AudioFrame, AudioResampler

from services.media.rtp.g711 import G711

from .config import UnsupportedVersionError

__all__ = ["SUPPORTED_AIORTC", "VoiceOpusEncoder", "audio_level_dbov", "inline_codecs", "install"]

SUPPORTED_AIORTC = ("1.16.",)
AIORTC_AUDIO_LEVEL = aiortc.rtp.compute_audio_level_dbov  # aiortc's own, kept for comparison (tests)
_bitrate = 32000
_installed = False


class VoiceOpusEncoder(OpusEncoder):
    """aiortc's encoder with mono input and our bit rate (the context opens on its first frame, so its
    settings can still change here)."""

    def __init__(self) -> None:
        super().__init__()
        self.codec.layout = "mono"
        self.codec.bit_rate = _bitrate
        self.resampler = AudioResampler(format="s16", layout="mono", rate=48000, frame_size=960)

    # aiortc annotates Encoder.encode's timestamp as int, yet its OpusEncoder returns None while libopus
    # buffers (no packet yet), as this one does: the override is as wrong as aiortc's annotation.
    def encode(  # type: ignore[override]
        self, frame: Any, force_keyframe: bool = False
    ) -> tuple[list[bytes], int | None]:
        # Our track's frames are what the codec takes already (20 ms of mono s16 at 48 kHz): the
        # resampler would only copy them, at about 60 us a frame.
        if (
            frame.format.name != "s16"
            or frame.layout.nb_channels != 1
            or frame.sample_rate != 48000
            or frame.samples != 960
        ):
            return super().encode(frame, force_keyframe)
        packets = self.codec.encode(frame)
        if not packets:
            return [], None
        pts = packets[0].pts
        if self.first_packet_pts is None:
            self.first_packet_pts = pts
        if pts is None or self.first_packet_pts is None:
            raise UnsupportedVersionError("PyAV's Opus encoder gave a packet without a pts")
        return [bytes(p) for p in packets], pts - self.first_packet_pts


def audio_level_dbov(frame: AudioFrame) -> int:
    """RFC 6465 Appendix A, as aiortc.rtp.compute_audio_level_dbov computes it (same result)."""
    samples = np.frombuffer(memoryview(frame.planes[0]), dtype=np.int16).astype(np.float64)
    energy = float(np.dot(samples, samples))
    rms = math.sqrt(energy / (frame.samples * 32767 * 32767))
    if rms <= 0:
        return -127
    return round(min(0.0, max(-127.0, 20 * math.log10(rms))))


def install(bitrate: int = 32000) -> None:
    """Idempotent; the last bit rate given wins. UnsupportedVersionError on an unchecked aiortc: re-read
    aiortc.codecs.get_encoder, OpusEncoder and RTCRtpSender._next_encoded_frame, then extend the tuple."""
    global _bitrate, _installed
    version = getattr(aiortc, "__version__", "unknown")
    if not version.startswith(SUPPORTED_AIORTC):
        raise UnsupportedVersionError(f"voice_patch is checked against aiortc 1.16.x, this is {version}")
    _bitrate = bitrate
    if _installed:
        return
    # get_encoder() looks OpusEncoder up in aiortc.codecs; the sender looks the level function up in
    # aiortc.rtp at call time.
    aiortc.codecs.OpusEncoder = VoiceOpusEncoder  # type: ignore[attr-defined]  # aiortc.codecs: no __all__
    aiortc.rtp.compute_audio_level_dbov = audio_level_dbov
    _installed = True


class _InlineLoop:
    """Stands in for the sender's event loop, which aiortc 1.16 uses for one thing only:
    `run_in_executor(None, encoder.encode, frame, force_keyframe)`. Runs it at once; the sender awaits a
    future that is already done, so it never leaves the loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def run_in_executor(self, executor: object, func: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = self._loop.create_future()
        try:
            future.set_result(func(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future


_LAWS = {"audio/pcmu": G711.PCMU, "audio/pcma": G711.PCMA}


class _InlineDecoder:
    """Stands in for the receiver's decoder queue: each complete frame from the jitter buffer is decoded
    where it is put (on the event loop) and goes straight to the receiving track. aiortc still starts its
    decoder thread, which waits in `get()` until the receiver stops."""

    def __init__(self, receiver: Any, decode_error: threading.Event) -> None:
        self._receiver = receiver
        self._decode_error = decode_error
        self._decoder: Any = None
        self._codec_name: str | None = None
        self._stopped = threading.Event()

    def put(self, task: Any) -> None:
        queue = self._receiver._track._queue
        if task is None:  # the receiver stops: end the track, release the idle thread
            self._stopped.set()
            queue.put_nowait(None)
            return
        codec, encoded_frame = task
        law = _LAWS.get(codec.mimeType.lower())
        if law is not None:
            queue.put_nowait(law.decode(encoded_frame.data))  # int16 at 8 kHz, for WebRtcLeg._receive
            return
        if codec.name != self._codec_name:
            self._decoder, self._codec_name = get_decoder(codec), codec.name
        try:
            frames = self._decoder.decode(encoded_frame)
        except av.FFmpegError:
            self._decode_error.set()  # as aiortc's worker does; the decoder keeps its state
            return
        for frame in frames:
            queue.put_nowait(frame)

    def get(self) -> None:
        self._stopped.wait()


# The sender's private event loop (name-mangled), replaced by inline_codecs.
_SENDER_LOOP = "_RTCRtpSender__loop"


def inline_codecs(transceiver: RTCRtpTransceiver) -> None:
    """Encode and decode this transceiver's audio on the event loop (call before negotiation: the
    receiver starts its decoder thread with the queue it has then)."""
    sender, receiver = transceiver.sender, transceiver.receiver
    loop = getattr(sender, _SENDER_LOOP, None)
    error = getattr(receiver, "_RTCRtpReceiver__decoder_error", None)
    if loop is None or error is None or not hasattr(receiver, "_RTCRtpReceiver__decoder_queue"):
        raise UnsupportedVersionError(
            "aiortc's sender or receiver changed: re-check voice_patch.inline_codecs"
        )
    setattr(sender, _SENDER_LOOP, _InlineLoop(loop))
    receiver._RTCRtpReceiver__decoder_queue = _InlineDecoder(receiver, error)
