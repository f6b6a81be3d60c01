# The suite runs with --import-mode=importlib, which leaves sys.path alone: let test_consult.py use the
# lifecycle's helpers from test_lifecycle.py by name.
from __future__ import annotations

import sys
from pathlib import Path

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
