from __future__ import annotations

import os


def test_service_starts(media_edge) -> None:
    assert os.path.exists(media_edge.log_path)
