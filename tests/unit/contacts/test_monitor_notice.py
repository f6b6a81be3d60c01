"""Who is told when a supervisor steps into a call, by the tenant's `monitor_notice` policy."""

from __future__ import annotations

import pytest

from services.contacts.monitor_notice import POLICIES, Notice, caller_text, notice_for


def test_by_default_nobody_is_told_of_any_change() -> None:
    for previous, mode in [
        ("none", "listen"),
        ("listen", "whisper"),
        ("whisper", "barge"),
        ("barge", "none"),
    ]:
        assert notice_for("none", previous, mode) == Notice(agent=False, caller=False)


@pytest.mark.parametrize("policy", ["agent", "both"])
def test_the_agent_is_told_of_every_change_of_mode_and_of_the_leaving(policy: str) -> None:
    for previous, mode in [
        ("none", "listen"),
        ("listen", "whisper"),
        ("whisper", "barge"),
        ("barge", "none"),
    ]:
        assert notice_for(policy, previous, mode).agent


@pytest.mark.parametrize("policy", ["caller", "both"])
def test_the_caller_is_told_once_when_a_supervisor_joins(policy: str) -> None:
    assert notice_for(policy, "none", "whisper").caller
    assert not notice_for(policy, "listen", "barge").caller
    assert not notice_for(policy, "barge", "none").caller


def test_the_agent_policy_never_tells_the_caller_nor_the_caller_policy_the_agent() -> None:
    assert notice_for("agent", "none", "listen") == Notice(agent=True, caller=False)
    assert notice_for("caller", "none", "listen") == Notice(agent=False, caller=True)


def test_the_same_mode_again_tells_nobody_and_an_unknown_policy_tells_nobody() -> None:
    for policy in POLICIES:
        assert notice_for(policy, "listen", "listen") == Notice(agent=False, caller=False)
    assert notice_for("everyone", "none", "listen") == Notice(agent=False, caller=False)


def test_the_callers_announcement_is_in_the_tenants_language() -> None:
    assert caller_text("fr") != caller_text("en")
    assert caller_text("xx") == caller_text("en")
