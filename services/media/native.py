# The media path's per-packet modules compiled with mypyc (built by services/media/native_build.py in
# `make setup`; docs/media.md "Compiled per-packet Python"). The compiled modules live apart from the
# sources, in services/media/_native/, and are loaded only through the finder below, which services.media's
# __init__ installs before any of them is imported, and only when the build's manifest says every compiled
# source still has the SHA-256 it was built from and this interpreter's extension suffix: a changed source
# (or one stale module) makes the whole set run as pure Python, never a compiled module older than its
# source. SB_MEDIA_PURE=1 runs pure Python on purpose. It is read here, at import, not in kernel/config.py:
# it decides which code runs, before any Settings exist.
from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType

__all__ = ["COMPILED", "MANIFEST", "NATIVE_DIR", "Manifest", "install", "source_hashes", "status"]

# Only code that runs per packet or per 20 ms tick, typed and free of asyncio and monkeypatching, and only what
# measured faster compiled (tests/bench/bench_media_packet.py; docs/media.md "Compiled per-packet Python"):
# the jitter buffer's push and pop 1.65x, the receive statistics 1.9x. Not the others tried: RTP parse and
# serialise, G.711 and concealment are calls into C (struct, numpy) either way, the relay's rewrite and
# anything building a dataclass got slower (mypyc leaves a dataclass's __init__ as Python), RTCP (1.4x)
# runs once in 5 s per leg. The set is one mypyc group.
COMPILED: tuple[str, ...] = (
    "services.media.rtp.jitter_buffer",
    "services.media.rtp.stats",
)
GROUP_LIB = "services_media_native__mypyc"  # mypyc's shared library for the group (group_name + "__mypyc")

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory that holds services/
NATIVE_DIR = Path(os.environ.get("SB_MEDIA_NATIVE_DIR") or Path(__file__).resolve().parent / "_native")
MANIFEST = NATIVE_DIR / "manifest.json"
EXT_SUFFIX: str = importlib.machinery.EXTENSION_SUFFIXES[0]

_status = "pure: not installed"


def _source(module: str) -> Path:
    return PACKAGE_ROOT / (module.replace(".", "/") + ".py")


def source_hashes(modules: Sequence[str] = COMPILED) -> dict[str, str]:
    return {m: hashlib.sha256(_source(m).read_bytes()).hexdigest() for m in modules}


@dataclass(frozen=True)
class Manifest:
    """What a build was made from: each compiled module's source hash and the extension suffix (which
    names the interpreter and platform the .so files load into)."""

    sources: dict[str, str]
    ext_suffix: str

    @classmethod
    def of(cls, sources: dict[str, str]) -> Manifest:
        return cls(sources=dict(sources), ext_suffix=EXT_SUFFIX)

    @classmethod
    def read(cls, path: Path = MANIFEST) -> Manifest | None:
        try:
            raw = json.loads(path.read_text())
            return cls(sources=dict(raw["sources"]), ext_suffix=str(raw["ext_suffix"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, path: Path = MANIFEST) -> None:
        path.write_text(json.dumps({"sources": self.sources, "ext_suffix": self.ext_suffix}, indent=1) + "\n")

    def stale(self, current: dict[str, str]) -> list[str]:
        """The modules whose source differs from the build (or that the build lacks), in COMPILED order."""
        return [m for m, digest in current.items() if self.sources.get(m) != digest]

    def matches(self, current: dict[str, str]) -> bool:
        return self.ext_suffix == EXT_SUFFIX and set(self.sources) == set(current) and not self.stale(current)


class _NativeFinder:
    """Finds the compiled modules (and mypyc's group library) in NATIVE_DIR; every other name falls
    through to the normal finders, so nothing but COMPILED is ever taken from there."""

    def __init__(self, modules: Sequence[str]) -> None:
        self._files = {m: NATIVE_DIR / (m.replace(".", "/") + EXT_SUFFIX) for m in modules}
        self._files[GROUP_LIB] = NATIVE_DIR / (GROUP_LIB + EXT_SUFFIX)

    def find_spec(
        self, name: str, path: object = None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        file = self._files.get(name)
        if file is None:
            return None
        loader = importlib.machinery.ExtensionFileLoader(name, str(file))
        return importlib.util.spec_from_file_location(name, file, loader=loader)


def _decide() -> tuple[bool, str]:
    if os.environ.get("SB_MEDIA_PURE", "") not in ("", "0"):
        return False, "pure: SB_MEDIA_PURE is set"
    manifest = Manifest.read()
    if manifest is None:
        return False, f"pure: not built ({MANIFEST} missing; `make setup` builds it)"
    if manifest.ext_suffix != EXT_SUFFIX:
        return False, f"pure: built for {manifest.ext_suffix}, this interpreter loads {EXT_SUFFIX}"
    current = source_hashes()
    stale = manifest.stale(current)
    if stale or set(manifest.sources) != set(current):
        names = ", ".join(stale) or "the module list"
        return False, f"pure: stale build, refused ({names} changed since; `make setup` rebuilds)"
    missing = [m for m in (*COMPILED, GROUP_LIB) if not _NativeFinder(COMPILED)._files[m].exists()]
    if missing:
        return False, f"pure: incomplete build ({', '.join(missing)} missing)"
    return True, f"compiled: {len(COMPILED)} modules (mypyc)"


def install() -> None:
    """Puts the finder in front of the import system when the build is fresh; otherwise leaves the import
    system alone (pure Python). Idempotent. Must run before any COMPILED module is imported."""
    global _status
    if any(isinstance(f, _NativeFinder) for f in sys.meta_path) or _status != "pure: not installed":
        return
    already = [m for m in COMPILED if m in sys.modules]
    if already:
        _status = f"pure: {', '.join(already)} imported before the finder"
        return
    use, _status = _decide()
    if use:
        sys.meta_path.insert(0, _NativeFinder(COMPILED))


def status() -> str:
    """ "compiled: N modules (mypyc)" or "pure: <why>" (for start-up logs, the test header, the tests)."""
    return _status
