"""`switchboard up --media-workers N`: the SIP front and N workers as supervised children, each worker
with its own id and slice of the RTP range; 1 (the default) keeps the single `media` process."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.runtime import cli
from services.runtime.runtime import Options, child_names, media_specs


def test_media_specs_front_and_workers_with_disjoint_rtp_ranges() -> None:
    env = {"SB_SIP_PORT": "5060", "SB_RTP_PORT_MIN": "20000", "SB_RTP_PORT_MAX": "30000"}
    specs = media_specs(env, 3)
    assert [s.name for s in specs] == ["media-front", "media-1", "media-2", "media-3"]
    assert specs[0].argv == [sys.executable, "-m", "services.media.front"]
    assert "SB_MEDIA_WORKER_ID" not in specs[0].env and specs[0].env["SB_SIP_PORT"] == "5060"
    ranges = []
    for k, spec in enumerate(specs[1:], start=1):
        assert spec.argv == [sys.executable, "-m", "services.media"]
        assert spec.env["SB_MEDIA_WORKER_ID"] == f"media-{k}"
        low, high = int(spec.env["SB_RTP_PORT_MIN"]), int(spec.env["SB_RTP_PORT_MAX"])
        assert low % 2 == 0 and 20000 <= low < high <= 30000
        ranges.append((low, high))
    assert all(a[1] < b[0] for a, b in itertools.pairwise(ranges))  # no port shared
    assert env == {"SB_SIP_PORT": "5060", "SB_RTP_PORT_MIN": "20000", "SB_RTP_PORT_MAX": "30000"}


def test_child_names_expand_media_only_when_sharded() -> None:
    one = Options(data_dir=Path("/tmp/x"), services=("api", "media", "routing"))
    assert child_names(one) == ["api", "media", "routing"]
    two = Options(data_dir=Path("/tmp/x"), services=("api", "media"), media_workers=2)
    assert child_names(two) == ["api", "media-front", "media-1", "media-2"]


@pytest.mark.parametrize(("given", "expected"), [("1", 1), ("4", 4), ("auto", "cpu")])
def test_media_workers_option(monkeypatch: pytest.MonkeyPatch, given: str, expected: object) -> None:
    seen: list[Options] = []
    monkeypatch.setattr(cli, "run", lambda opts: seen.append(opts) or 0)
    monkeypatch.setattr(cli.os, "cpu_count", lambda: 6)
    result = CliRunner().invoke(cli.up, ["--media-workers", given, "--data-dir", "/tmp/sb-unused"])
    assert result.exit_code == 0, result.output
    assert seen[0].media_workers == (6 if expected == "cpu" else expected)


def test_media_workers_option_refuses_nonsense() -> None:
    for bad in ("0", "many", "65"):
        result = CliRunner().invoke(cli.up, ["--media-workers", bad, "--data-dir", "/tmp/sb-unused"])
        assert result.exit_code == 2 and "--media-workers" in result.output
