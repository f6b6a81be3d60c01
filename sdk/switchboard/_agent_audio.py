"""The headless agent's audio: one aiortc peer connection per contact, a track that plays an audio file to the
caller and a recorder that writes what the agent hears to a 16-bit mono WAV file.

Playing: the file (any format and rate PyAV reads: WAV of any rate, channels and sample width, and more) is
decoded and resampled once to the leg's rate (8 kHz for G.711, 48 kHz for Opus), then sent in 20 ms frames
paced on the monotonic clock; silence before `start()`, after the file ends (unless looping) and while
nothing is set. Recording: every frame the leg receives is read (aiortc would otherwise queue them without
bound); frames are written only between `start()` and `close()`, resampled to mono at the leg's rate.
"""

from __future__ import annotations

import asyncio
import fractions
import re
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from aiortc import RTCConfiguration, RTCIceServer, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from .agent_events import IceServerInfo

__all__ = ["AgentLeg", "PlayerTrack", "WavRecorder", "answer_clock_rate", "load_audio", "record_path"]

Samples = npt.NDArray[np.int16]
PTIME = 0.02
LEG_TIMEOUT_S = 10.0


def load_audio(path: str | Path, rate: int) -> Samples:
    """The whole file as mono int16 samples at `rate` (PyAV decodes and resamples: any rate or channels)."""
    chunks: list[Samples] = []
    resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
    with av.open(str(path)) as container:
        if not container.streams.audio:
            raise ValueError(f"{path} has no audio stream")
        for frame in container.decode(audio=0):
            for out in resampler.resample(frame):
                chunks.append(out.to_ndarray().reshape(-1).astype(np.int16))
    for out in resampler.resample(None):  # flush the resampler's tail
        chunks.append(out.to_ndarray().reshape(-1).astype(np.int16))
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)


def answer_clock_rate(sdp: str) -> int:
    """The clock rate of the codec an answer picked (the first payload type of its audio m-line)."""
    payload: str | None = None
    for line in sdp.splitlines():
        if line.startswith("m=audio"):
            parts = line.split()
            payload = parts[3] if len(parts) > 3 else None
            break
    if payload is None:
        return 8000
    match = re.search(rf"^a=rtpmap:{re.escape(payload)} [^/\s]+/(\d+)", sdp, re.MULTILINE)
    if match:
        return int(match.group(1))
    return 8000  # static payload types (0 PCMU, 8 PCMA) may come without an rtpmap


def record_path(template: str, contact_id: str) -> Path:
    """`{contact_id}` in the template is replaced (nothing else is interpreted, so other braces are kept)."""
    return Path(template.replace("{contact_id}", contact_id))


class PlayerTrack(MediaStreamTrack):
    """20 ms mono s16 frames at `rate`: the samples set by `play()`, else silence."""

    kind = "audio"

    def __init__(self, rate: int = 8000) -> None:
        super().__init__()
        self.rate = rate
        self._samples: Samples | None = None
        self._repeat = False
        self._pos = 0
        self._start: float | None = None
        self._pts = 0

    def set_rate(self, rate: int) -> None:
        """Before media flows (the negotiated codec's rate); the timeline restarts."""
        if rate != self.rate:
            self.rate = rate
            self._start, self._pts = None, 0

    def play(self, samples: Samples, *, loop: bool = False) -> None:
        self._samples, self._repeat, self._pos = samples, loop, 0

    @property
    def playing(self) -> bool:
        return self._samples is not None and (self._repeat or self._pos < len(self._samples))

    def _next_chunk(self, n: int) -> Samples:
        out = np.zeros(n, dtype=np.int16)
        samples = self._samples
        if samples is None or len(samples) == 0:
            return out
        filled = 0
        while filled < n:
            if self._pos >= len(samples):
                if not self._repeat:
                    break
                self._pos = 0
            take = min(n - filled, len(samples) - self._pos)
            out[filled : filled + take] = samples[self._pos : self._pos + take]
            filled += take
            self._pos += take
        return out

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        n = int(self.rate * PTIME)
        if self._start is None:
            self._start = time.monotonic()
        else:
            # Paced on the monotonic clock from the first frame: a late frame makes the next one sooner.
            wait = self._start + self._pts / self.rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        frame = av.AudioFrame.from_ndarray(self._next_chunk(n).reshape(1, -1), format="s16", layout="mono")
        frame.sample_rate = self.rate
        frame.pts = self._pts
        frame.time_base = fractions.Fraction(1, self.rate)
        self._pts += n
        return frame


class WavRecorder:
    """A 16-bit mono WAV file written as audio arrives (the header is completed on close)."""

    def __init__(self, path: Path, rate: int) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.rate = rate
        self._wav = wave.open(str(path), "wb")  # closed by close()
        self._wav.setnchannels(1)
        self._wav.setsampwidth(2)
        self._wav.setframerate(rate)
        self.samples = 0
        self._energy = 0.0

    def write(self, samples: Samples) -> None:
        self._wav.writeframes(samples.astype("<i2").tobytes())
        self.samples += len(samples)
        self._energy += float(np.sum(samples.astype(np.float64) ** 2))

    @property
    def seconds(self) -> float:
        return self.samples / self.rate

    @property
    def rms(self) -> float:
        return (self._energy / self.samples) ** 0.5 if self.samples else 0.0

    def close(self) -> None:
        self._wav.close()


class AgentLeg:
    """One contact's WebRTC leg: offer, answer, play and record. ICE uses exactly `ice_servers` (an empty
    list: host candidates only; never aiortc's default public STUN server)."""

    def __init__(
        self,
        contact_id: str,
        ice_servers: Sequence[IceServerInfo],
        *,
        play: str | Path | None = None,
        play_loop: bool = False,
        record: str | None = None,
    ) -> None:
        self.contact_id = contact_id
        self.leg_id: str | None = None
        self.rate = 8000
        servers = [
            RTCIceServer(urls=s.urls, username=s.username, credential=s.credential) for s in ice_servers
        ]
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=servers))
        self.player = PlayerTrack()
        self.pc.addTransceiver(self.player, direction="sendrecv")
        self._play_path = play
        self._play_loop = play_loop
        self._record_template = record
        self._play_samples: Samples | None = None
        self.recorder: WavRecorder | None = None
        self.talking = False
        self.connected = asyncio.Event()
        self.finished = asyncio.Event()  # failed or closed
        self._reader: asyncio.Task[None] | None = None
        self._closed = False
        self.pc.on("track", self._on_track)
        self.pc.on("connectionstatechange", self._on_state)

    @property
    def state(self) -> str:
        return str(self.pc.connectionState)

    async def create_offer(self) -> str:
        # aiortc gathers every candidate inside setLocalDescription: the SDP is complete (no trickle).
        await self.pc.setLocalDescription(await self.pc.createOffer())
        return str(self.pc.localDescription.sdp)

    async def accept_answer(self, leg_id: str, sdp: str) -> None:
        self.leg_id = leg_id
        self.rate = answer_clock_rate(sdp)
        self.player.set_rate(self.rate)
        if self._play_path is not None:
            # Decoded off the event loop: a long file must not stall other legs' audio.
            self._play_samples = await asyncio.to_thread(load_audio, self._play_path, self.rate)
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=sdp, type="answer"))

    async def wait_connected(self, timeout: float = LEG_TIMEOUT_S) -> bool:
        waiters = {asyncio.ensure_future(self.connected.wait()), asyncio.ensure_future(self.finished.wait())}
        try:
            await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self.connected.is_set() and not self.finished.is_set()

    def start(self) -> None:
        """The conversation begins (the contact is connected): play the file and start recording."""
        if self.talking or self._closed:
            return
        self.talking = True
        if self._play_samples is not None:
            self.player.play(self._play_samples, loop=self._play_loop)
        if self._record_template is not None:
            self.recorder = WavRecorder(record_path(self._record_template, self.contact_id), self.rate)

    def _on_track(self, track: MediaStreamTrack) -> None:
        if track.kind == "audio" and self._reader is None:
            self._reader = asyncio.ensure_future(self._read(track))

    async def _read(self, track: MediaStreamTrack) -> None:
        resampler: Any = None
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            recorder = self.recorder
            if recorder is None or self._closed:
                continue  # read anyway: aiortc keeps unread frames in an unbounded queue
            if resampler is None:
                resampler = av.AudioResampler(format="s16", layout="mono", rate=recorder.rate)
            for out in resampler.resample(frame):
                recorder.write(out.to_ndarray().reshape(-1))

    def _on_state(self) -> None:
        state = self.pc.connectionState
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.finished.set()

    async def close(self) -> WavRecorder | None:
        """End the leg; the finished recording (if any) is returned once."""
        if self._closed:
            return None
        self._closed = True
        self.finished.set()
        self.player.stop()
        try:
            await asyncio.wait_for(self.pc.close(), 5)
        except (TimeoutError, Exception):
            pass  # aiortc's close can hang on a dead transport; the leg is gone either way
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        recorder, self.recorder = self.recorder, None
        if recorder is not None:
            recorder.close()
        return recorder
