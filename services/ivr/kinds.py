"""The tables the interpreter dispatches by node type through:
how a node starts (RUN), what it does with the digits it asked for (ANSWERED), and what follows its own
prompt (AFTER_PROMPT, the `Continue` continuation). The kinds themselves are in services/ivr/nodes/, one module
each; inputs that only one kind waits for (queue timers, lookup answers, recordings) go to its module by
the call's phase (interpreter.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from switchboard.flowdef.flow import (
    Branch,
    Callback,
    Collect,
    DynamicMenu,
    Hangup,
    Lookup,
    Menu,
    Node,
    Play,
    QueueNode,
    SetNode,
    Subflow,
    Survey,
    Transfer,
    Voicemail,
)

from .call import Call, Run
from .nodes import (
    branch,
    callback,
    collect,
    hangup,
    lookup,
    menu,
    play,
    queue,
    set_node,
    subflow,
    survey,
    transfer,
    voicemail,
)

__all__ = ["AFTER_PROMPT", "ANSWERED", "RUN"]

RUN: Mapping[type[Node], Run] = {
    Play: play.run,
    Menu: menu.run,
    DynamicMenu: menu.run,
    Collect: collect.run,
    SetNode: set_node.run,
    Branch: branch.run,
    Lookup: lookup.run,
    QueueNode: queue.run,
    Callback: callback.run,
    Voicemail: voicemail.run,
    Transfer: transfer.run,
    Survey: survey.run,
    Subflow: subflow.run,
    Hangup: hangup.run,
}

ANSWERED: Mapping[type[Node], Callable[[Call, Any, str, float], None]] = {
    Menu: menu.answered,
    DynamicMenu: menu.answered,
    Collect: collect.answered,
    Survey: survey.answered,
    Callback: callback.answered,
}

AFTER_PROMPT: Mapping[type[Node], Run] = {
    Voicemail: voicemail.after_prompt,
    Transfer: transfer.after_prompt,
    Hangup: hangup.after_prompt,
}
