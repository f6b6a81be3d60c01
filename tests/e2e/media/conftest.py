"""The media fixtures are shared with tests/integration/media (loaded by path: tests is not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_path = Path(__file__).resolve().parents[2] / "integration" / "media" / "conftest.py"
_spec = importlib.util.spec_from_file_location("_media_fixtures", _path)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules["_media_fixtures"] = _module
_spec.loader.exec_module(_module)

media_edge = _module.media_edge
MediaEdge = _module.MediaEdge
