"""The Opus-in-Ogg copy of a recording: the master's two G.711 channels (caller left, agent right) encoded
by libopus through PyAV (already a dependency, through aiortc) at 8 kHz input, 24 kbit/s for both channels
(a fifth of the master's 128 kbit/s). Fed piece by piece; what the Ogg muxer has written so far is taken
after each piece, so a copy is never held whole either."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import av
import numpy as np

from services.media.rtp.g711 import G711
from services.media.spool.spool import RATE

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

__all__ = ["OPUS_BITRATE", "OggOpusEncoder"]

OPUS_BITRATE = 24_000


class _Sink(io.RawIOBase):
    def __init__(self) -> None:
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Buffer) -> int:
        view = memoryview(data)
        self.buffer += view
        return view.nbytes

    def take(self) -> bytes:
        out, self.buffer = bytes(self.buffer), bytearray()
        return out


class OggOpusEncoder:
    """Interleaved caller/agent G.711 octets in (`push`), Ogg pages out. Synchronous (libopus): run it on a
    worker thread."""

    def __init__(self, law: G711, *, bitrate: int = OPUS_BITRATE) -> None:
        self.law = law
        self._sink = _Sink()
        self._container = av.open(self._sink, "w", format="ogg")
        self._stream = self._container.add_stream("libopus", rate=RATE, layout="stereo")
        self._stream.codec_context.bit_rate = bitrate
        self._pts = 0
        self._odd = b""  # half a frame (one channel's octet) carried to the next piece

    def push(self, frames: bytes) -> bytes:
        frames = self._odd + frames
        usable = len(frames) - len(frames) % 2
        self._odd = frames[usable:]
        if usable:
            pcm = self.law.decode(frames[:usable]).astype(np.int16)  # interleaved L R L R: packed s16
            frame = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="stereo")
            frame.sample_rate = RATE
            frame.pts = self._pts
            self._pts += usable // 2
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        return self._sink.take()

    def finish(self) -> bytes:
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()
        return self._sink.take()
