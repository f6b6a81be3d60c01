"""The simplified E-model: reference points of G.107, plausible values, and monotonicity."""

from __future__ import annotations

import itertools

import pytest

from services.media.rtp.mos import Codec, delay_impairment, estimate, loss_impairment, mos_from_r


def test_reference_points() -> None:
    assert mos_from_r(93.2) == pytest.approx(4.41, abs=0.005)  # G.107's default: about 4.4
    assert mos_from_r(50.0) == pytest.approx(2.58, abs=0.005)
    assert mos_from_r(-5.0) == 1.0 and mos_from_r(120.0) == 4.5
    assert delay_impairment(100.0) == pytest.approx(2.4)
    assert delay_impairment(300.0) == pytest.approx(7.2 + 0.11 * 122.7)
    assert loss_impairment(Codec.G711, 0.0) == 0.0
    assert loss_impairment(Codec.G711, 1.0) == pytest.approx(95.0 / 26.1)
    assert loss_impairment(Codec.G711, 1.0, plc=False) == pytest.approx(95.0 / 5.3)


def test_clean_g711_call_is_about_4_4() -> None:
    quality = estimate(one_way_delay_ms=20.0, jitter_ms=0.0, loss_percent=0.0)
    # d = 20 ms network + 20 ms packetization: R = 93.2 - 0.96 = 92.24.
    assert quality.delay_ms == 40.0
    assert quality.r == pytest.approx(92.24)
    assert 4.3 <= quality.mos <= 4.4


@pytest.mark.parametrize(
    ("delay", "jitter", "loss", "low", "high"),
    [
        (40.0, 5.0, 1.0, 4.2, 4.35),  # a good VoIP call
        (80.0, 20.0, 3.0, 3.8, 4.1),  # a congested one
        (150.0, 40.0, 10.0, 2.4, 3.0),  # bad: R about 52
        (400.0, 80.0, 25.0, 1.0, 2.0),  # unusable
    ],
)
def test_plausible_values(delay: float, jitter: float, loss: float, low: float, high: float) -> None:
    assert low <= estimate(one_way_delay_ms=delay, jitter_ms=jitter, loss_percent=loss).mos <= high


def test_mos_never_improves_when_a_figure_gets_worse() -> None:
    delays = [0.0, 50.0, 150.0, 177.3, 250.0, 400.0, 800.0]
    jitters = [0.0, 10.0, 30.0, 60.0]
    losses = [0.0, 0.5, 2.0, 5.0, 20.0, 60.0]
    grid = {
        (d, j, p): estimate(one_way_delay_ms=d, jitter_ms=j, loss_percent=p).mos
        for d, j, p in itertools.product(delays, jitters, losses)
    }
    for (d, j, p), mos in grid.items():
        if d != delays[-1]:
            assert grid[(delays[delays.index(d) + 1], j, p)] <= mos
        if j != jitters[-1]:
            assert grid[(d, jitters[jitters.index(j) + 1], p)] <= mos
        if p != losses[-1]:
            assert grid[(d, j, losses[losses.index(p) + 1])] <= mos
    assert min(grid.values()) >= 1.0 and max(grid.values()) <= 4.5
    # Losing concealment and bursty loss both hurt.
    base = estimate(one_way_delay_ms=40, jitter_ms=5, loss_percent=3)
    assert estimate(one_way_delay_ms=40, jitter_ms=5, loss_percent=3, plc=False).mos < base.mos
    assert estimate(one_way_delay_ms=40, jitter_ms=5, loss_percent=3, burst_ratio=2.0).mos < base.mos


def test_a_measured_jitter_buffer_replaces_the_allowance() -> None:
    allowance = estimate(one_way_delay_ms=30, jitter_ms=25, loss_percent=0)
    measured = estimate(one_way_delay_ms=30, jitter_ms=25, loss_percent=0, jitter_buffer_ms=20)
    assert allowance.delay_ms == 30 + 50 + 20 and measured.delay_ms == 30 + 20 + 20
