"""menu and dynamic_menu: one digit picks the next node; a dynamic menu first picks its variant (prompt and
options) by the caller's attributes, and keeps it through retries."""

from __future__ import annotations

from switchboard.flowdef.flow import DynamicMenu, Menu, Prompt

from ..call import Call
from ..conditions import evaluate

__all__ = ["answered", "run"]


def _options(call: Call, node: Menu | DynamicMenu) -> tuple[Prompt | str, dict[str, str]]:
    if isinstance(node, DynamicMenu) and call.state.sub > 0:
        variant = node.variants[call.state.sub - 1]
        return variant.prompt, variant.options
    return node.prompt, node.options


def run(call: Call, node: Menu | DynamicMenu, now: float) -> None:
    s = call.state
    if isinstance(node, DynamicMenu) and s.tries == 0 and s.sub == 0:
        for i, variant in enumerate(node.variants):
            if evaluate(call.flow, variant.when, s.attributes, now):
                s.sub = i + 1  # the variant + 1: 0 is "not chosen yet"
                break
    prompt, _ = _options(call, node)
    call.collect(prompt, now, first=node.timeout)


def answered(call: Call, node: Menu | DynamicMenu, digits: str, now: float) -> None:
    _, options = _options(call, node)
    if digits and digits[0] in options:
        call.go(options[digits[0]], digits[0], now)
        return
    call.retry(node, node.invalid_prompt if digits else node.timeout_prompt, bool(digits), now)
