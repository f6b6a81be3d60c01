"""Fixtures for the deployment artefacts: the Pulumi program (infra/) and the Helm chart (charts/switchboard)."""

from __future__ import annotations

import sys
from pathlib import Path

# The helpers next to this file (infra_support, helm_lite) and the Pulumi program's package (infra/).
HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parents[2] / "infra"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
