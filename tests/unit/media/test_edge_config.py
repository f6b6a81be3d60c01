"""Media settings from the environment (services/media/app.py's edge_config)."""

from __future__ import annotations

import pytest

from services.kernel.config import Settings
from services.media.app import edge_config
from services.media.prompts import APOLOGY


def test_the_unrouted_message_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SB_UNROUTED_MESSAGE", raising=False)
    assert edge_config(Settings()).unrouted_message == APOLOGY
    monkeypatch.setenv("SB_UNROUTED_MESSAGE", "  Acme is closed today. Goodbye.  ")
    assert edge_config(Settings()).unrouted_message == "Acme is closed today. Goodbye."
    monkeypatch.setenv("SB_UNROUTED_MESSAGE", "   ")  # blank: the default, never silence
    assert edge_config(Settings()).unrouted_message == APOLOGY
