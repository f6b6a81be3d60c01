"""G.711 tables: known code points, round trips, transcoding, and a cross-check against the codec
aiortc uses (ffmpeg's pcm_mulaw/pcm_alaw through aiortc.codecs.g711)."""

from __future__ import annotations

import fractions

import numpy as np
import pytest
from aiortc.codecs.g711 import PcmaDecoder, PcmaEncoder, PcmuDecoder, PcmuEncoder
from aiortc.jitterbuffer import JitterFrame
from av import AudioFrame

from services.media.rtp.g711 import (
    ALAW_DECODE,
    ALAW_TO_ULAW,
    G711,
    ULAW_DECODE,
    ULAW_TO_ALAW,
    alaw_decode,
    alaw_encode,
    ulaw_decode,
    ulaw_encode,
)

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


def test_known_mu_law_values() -> None:
    assert ulaw_encode([0]) == b"\xff"  # mu-law of 0 is 0xFF
    assert ulaw_encode([-1]) == b"\x7f"
    assert ulaw_encode([32767, -32768]) == b"\x80\x00"  # clipped to the largest codes
    assert ulaw_decode(b"\xff\x7f\x80\x00").tolist() == [0, 0, 32124, -32124]
    # The 0 dBm0 "digital milliwatt" sequence of G.711 (mu-law): peaks +-8828 and +-20860.
    assert ulaw_decode(bytes.fromhex("1e0b0b1e9e8b8b9e")).tolist() == [
        -8828,
        -20860,
        -20860,
        -8828,
        8828,
        20860,
        20860,
        8828,
    ]


def test_known_a_law_values() -> None:
    assert alaw_encode([0, -1]) == b"\xd5\x55"
    assert alaw_encode([32767, -32768]) == b"\xaa\x2a"
    assert alaw_decode(b"\xd5\x55\xaa\x2a").tolist() == [8, -8, 32256, -32256]


def test_every_code_survives_decode_then_encode() -> None:
    codes = np.arange(256, dtype=np.uint8).tobytes()
    assert alaw_encode(alaw_decode(codes)) == codes
    # mu-law has two codes for zero (0x7F and 0xFF); 0 encodes as 0xFF.
    again = ulaw_encode(ulaw_decode(codes))
    assert again[:127] == codes[:127] and again[127] == 0xFF and again[128:] == codes[128:]


def test_quantisation_error_is_bounded_by_the_segment_step() -> None:
    for table, encode in ((ULAW_DECODE, ulaw_encode), (ALAW_DECODE, alaw_encode)):
        decoded = table[np.frombuffer(encode(ALL_SAMPLES), dtype=np.uint8)].astype(np.int32)
        error = np.abs(decoded - ALL_SAMPLES)
        assert error.max() <= 644  # the clipping at full scale (32767 -> 32124) is the worst
        assert error[np.abs(ALL_SAMPLES.astype(np.int32)) < 256].max() <= 8  # fine steps near zero


def test_float_and_wide_integer_input_is_rounded_and_clipped() -> None:
    assert ulaw_encode(np.array([0.4, -0.4, 1e6, -1e6])) == ulaw_encode(
        np.array([0, 0, 32767, -32768], np.int16)
    )
    assert alaw_encode(np.array([40000, -40000])) == alaw_encode(np.array([32767, -32768], np.int16))
    with pytest.raises(TypeError, match="integer or float"):
        ulaw_encode(np.array(["a"]))


def test_transcoding_tables_map_each_code_to_the_nearest_other_law_code() -> None:
    codes = np.arange(256, dtype=np.uint8).tobytes()
    assert codes.translate(ULAW_TO_ALAW) == alaw_encode(ulaw_decode(codes))
    assert codes.translate(ALAW_TO_ULAW) == ulaw_encode(alaw_decode(codes))
    silence = bytes([0xFF]) * 160
    assert G711.PCMU.transcode_to(G711.PCMA, silence) == bytes([0xD5]) * 160
    assert G711.PCMA.transcode_to(G711.PCMA, silence) is silence
    assert (G711.PCMU.payload_type, G711.PCMA.payload_type) == (0, 8)
    assert (G711.PCMU.silence, G711.PCMA.silence) == (0xFF, 0xD5)


def test_decode_tables_equal_aiortcs_codec() -> None:
    codes = np.arange(256, dtype=np.uint8).tobytes()
    for decoder, ours in ((PcmuDecoder(), ULAW_DECODE), (PcmaDecoder(), ALAW_DECODE)):
        frames = decoder.decode(JitterFrame(data=codes, timestamp=0))
        theirs = np.concatenate([frame.to_ndarray().ravel() for frame in frames])  # type: ignore[attr-defined]
        assert theirs.tolist() == ours.tolist()
    assert G711.PCMU.decode(codes).tolist() == ULAW_DECODE.tolist()


def _aiortc_encode(encoder: PcmuEncoder | PcmaEncoder, samples: np.ndarray) -> bytes:
    out = b""
    padded = np.concatenate([samples, np.zeros(160 + (-len(samples)) % 160, dtype=np.int16)])
    for start in range(0, len(padded), 160):
        frame = AudioFrame.from_ndarray(
            padded[start : start + 160].reshape(1, -1), format="s16", layout="mono"
        )
        frame.sample_rate = 8000
        frame.pts = start
        frame.time_base = fractions.Fraction(1, 8000)
        payloads, _ = encoder.encode(frame)
        out += b"".join(payloads)
    return out[: len(samples)]


@pytest.mark.parametrize("law", [G711.PCMU, G711.PCMA])
def test_encoder_agrees_with_aiortcs_codec_except_on_decision_boundaries(law: G711) -> None:
    # ffmpeg picks the nearest reconstruction level in a 14-bit domain; G.191 (ours) truncates. They
    # differ only on inputs within a few LSB of a decision level, by one code.
    encoder = PcmuEncoder() if law is G711.PCMU else PcmaEncoder()
    theirs = np.frombuffer(_aiortc_encode(encoder, ALL_SAMPLES), dtype=np.uint8)
    ours = np.frombuffer(law.encode(ALL_SAMPLES), dtype=np.uint8)
    table = ULAW_DECODE if law is G711.PCMU else ALAW_DECODE
    differ = np.nonzero(ours != theirs)[0]
    assert len(differ) < 0.02 * len(ALL_SAMPLES)
    ours_level = table[ours[differ]].astype(np.int32)
    theirs_level = table[theirs[differ]].astype(np.int32)
    sample = ALL_SAMPLES[differ].astype(np.int32)
    # The two levels bracket the sample: adjacent codes on either side of the decision level.
    assert np.all(
        (np.minimum(ours_level, theirs_level) <= sample) & (sample <= np.maximum(ours_level, theirs_level))
    )
    mean_ours = np.abs(table[ours].astype(np.int32) - ALL_SAMPLES).mean()
    mean_theirs = np.abs(table[theirs].astype(np.int32) - ALL_SAMPLES).mean()
    assert mean_ours == pytest.approx(mean_theirs, rel=0.01)
