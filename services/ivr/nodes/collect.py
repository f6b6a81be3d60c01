"""collect: digits into an attribute, checked by length and pattern."""

from __future__ import annotations

import re

from switchboard.flowdef.flow import Collect

from ..call import Call

__all__ = ["answered", "run"]


def run(call: Call, node: Collect, now: float) -> None:
    call.collect(
        node.prompt,
        now,
        min_digits=node.min_digits,
        max_digits=node.max_digits,
        terminator=node.terminator,
        first=node.first_digit_timeout,
        inter=node.inter_digit_timeout,
    )


def answered(call: Call, node: Collect, digits: str, now: float) -> None:
    ok = len(digits) >= node.min_digits and (
        node.pattern is None or re.fullmatch(node.pattern, digits) is not None
    )
    if ok:
        call.state.attributes[node.into] = digits
        call.go(node.next, "collected", now)
        return
    call.retry(node, node.invalid_prompt, bool(digits), now)
