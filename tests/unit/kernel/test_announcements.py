"""What the platform says to waiting callers (services/kernel/announcements.py), in each language."""

from __future__ import annotations

import uuid

import pytest

from services.kernel.announcements import LANGUAGES, closed_play, position_play, position_text


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_language_says_position_wait_thanks_and_closed(language: str) -> None:
    one = position_text(1, 30.0, language)
    many = position_text(4, 250.0, language)
    assert "1" in one and "4" in many and "4" in many.split(".")[1]  # the 4 minutes are said
    assert position_text(None, None, language) != position_text(1, None, language)
    closed = closed_play(
        tenant_id=uuid.uuid4(), call_id=uuid.uuid4(), message=None, language=language, id=uuid.uuid4(), ts=0
    )
    assert closed.text and closed.voice == LANGUAGES[language]


def test_unknown_language_falls_back_to_english_and_the_queue_message_wins() -> None:
    play = position_play(
        tenant_id=uuid.uuid4(),
        call_id=uuid.uuid4(),
        position=2,
        expected_wait_s=None,
        language="xx",
        id=uuid.uuid4(),
        ts=0,
    )
    assert play.text == "You are number 2 in line." and play.voice == "en-us" and not play.loop
    own = closed_play(
        tenant_id=uuid.uuid4(),
        call_id=uuid.uuid4(),
        message="Back at 9.",
        language="fr",
        id=uuid.uuid4(),
        ts=0,
    )
    assert own.text == "Back at 9." and own.voice == "fr-fr"
