"""Concealment of missing slots: the last frame heard, fading, then silence; a packet starts it afresh."""

from __future__ import annotations

import numpy as np

from services.media.rtp.concealment import FADE, Concealer


def tone() -> np.ndarray:
    return (8000 * np.sin(2 * np.pi * 1000 * np.arange(160) / 8000)).astype(np.int16)


def peak(samples: np.ndarray | None) -> int:
    assert samples is not None
    return int(np.abs(samples.astype(np.int32)).max())


def test_nothing_is_made_up_before_anything_was_heard() -> None:
    assert Concealer().conceal() is None


def test_a_gap_repeats_the_last_frame_at_a_falling_level_then_goes_silent() -> None:
    concealer = Concealer()
    concealer.heard(tone())
    levels = [peak(concealer.conceal()) for _ in FADE]
    assert levels == sorted(levels, reverse=True) and levels[0] > 0.8 * peak(tone())
    assert levels[-1] < 0.3 * peak(tone())
    assert concealer.conceal() is None and concealer.concealed == len(FADE)
    # The next packet heard starts a new run at full level.
    concealer.heard(tone())
    assert peak(concealer.conceal()) == levels[0]
