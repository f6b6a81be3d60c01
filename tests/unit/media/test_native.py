"""The media path's per-packet modules compiled with mypyc (services/media/native.py, native_build.py): which
code this run uses (also in pytest's header), that a build older than its sources is refused, and that the
set-up never fails for want of a compiler."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from services.media import native
from services.media.rtp import jitter_buffer, stats

ROOT = Path(__file__).resolve().parents[3]
# A compiled module's file, and what it computes: one packet through the jitter buffer, as a leg plays it.
PROBE = (
    "import services.media.rtp.jitter_buffer as j, services.media.native as n; "
    "b = j.JitterBuffer(); b.push(7, 1120, b'x' * 160, 0.0, samples=160); "
    "print(n.status()); print(j.__file__); print(b.pop(1.0), b.stats)"
)


def _probe(**env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("SB_MEDIA_PURE", "SB_MEDIA_NATIVE_DIR")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=environ | env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def _pure_played() -> str:
    return _probe(SB_MEDIA_PURE="1")[2]


def _built() -> Path:
    if native.Manifest.read() is None:
        pytest.skip(f"no mypyc build here ({native.status()}): `make setup` with a C compiler makes one")
    return native.NATIVE_DIR


def test_this_run_says_whether_the_media_modules_are_compiled(record_property: pytest.RecordProperty) -> None:
    status = native.status()
    record_property("media_modules", status)
    print(f"media per-packet modules: {status}")
    modules = [importlib.import_module(name) for name in native.COMPILED]
    if status.startswith("compiled"):
        assert all(str(m.__file__).endswith(native.EXT_SUFFIX) for m in modules)
        assert hasattr(jitter_buffer.JitterBuffer, "__mypyc_attrs__")
        assert hasattr(stats.ReceiverStats, "__mypyc_attrs__")
    else:
        assert status.startswith("pure: ")
        assert all(str(m.__file__).endswith(".py") for m in modules)
        assert not hasattr(jitter_buffer.JitterBuffer, "__mypyc_attrs__")
    # CI states what it built (SB_MEDIA_EXPECT=compiled on a machine with gcc): a silent fallback fails here.
    expected = os.environ.get("SB_MEDIA_EXPECT")
    if expected:
        assert status.split(":")[0] == expected, status


def _copy_of_build(tmp_path: Path, **manifest_changes: object) -> Path:
    """A copy of this checkout's build, its manifest changed as given (the real build is left alone)."""
    copy = tmp_path / "native"
    shutil.copytree(_built(), copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    for key, value in manifest_changes.items():
        manifest[key] = value if not isinstance(value, dict) else manifest[key] | value
    (copy / "manifest.json").write_text(json.dumps(manifest))
    return copy


def test_a_fresh_build_loads_compiled_and_computes_like_the_source(tmp_path: Path) -> None:
    copy = _copy_of_build(tmp_path)
    status, file, played = _probe(SB_MEDIA_NATIVE_DIR=str(copy))
    assert status.startswith("compiled: ")
    assert file.startswith(str(copy)) and file.endswith(native.EXT_SUFFIX)
    assert played == _pure_played()
    assert "AUDIO" in played


def test_a_build_older_than_its_source_is_refused_whole(tmp_path: Path) -> None:
    # As if stats.py had been edited after the build: every module runs from source, not only stats.
    copy = _copy_of_build(tmp_path, sources={"services.media.rtp.stats": "0" * 64})
    status, file, played = _probe(SB_MEDIA_NATIVE_DIR=str(copy))
    assert status.startswith("pure: stale build, refused (services.media.rtp.stats changed")
    assert file == str(ROOT / "services/media/rtp/jitter_buffer.py")
    assert played == _pure_played()


def test_a_build_for_another_interpreter_is_refused(tmp_path: Path) -> None:
    copy = _copy_of_build(tmp_path, ext_suffix=".cpython-399-x86_64-linux-gnu.so")
    status, file, _ = _probe(SB_MEDIA_NATIVE_DIR=str(copy))
    assert status.startswith("pure: built for .cpython-399")
    assert file.endswith("jitter_buffer.py")


def test_sb_media_pure_runs_the_sources(tmp_path: Path) -> None:
    status, file, _ = _probe(SB_MEDIA_PURE="1")
    assert status == "pure: SB_MEDIA_PURE is set"
    assert file == str(ROOT / "services/media/rtp/jitter_buffer.py")
    status, _, _ = _probe(SB_MEDIA_NATIVE_DIR=str(tmp_path / "nothing"))
    assert status.startswith("pure: not built")


def test_the_build_without_a_compiler_is_one_line_and_no_failure(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "SB_MEDIA_PURE"}
    env |= {"CC": "/nonexistent/cc", "SB_MEDIA_NATIVE_DIR": str(tmp_path / "native")}
    done = subprocess.run(
        [sys.executable, "-m", "services.media.native_build"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0
    assert done.stdout.splitlines() == [
        "media: no C compiler (/nonexistent/cc): the per-packet modules run as pure Python"
        " (slower per packet; docs/media.md)"
    ]
    assert not (tmp_path / "native").exists()
