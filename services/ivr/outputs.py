"""What the interpreter hands its adapter: bus commands to send, analytics events to publish, and lookups to
perform. One closed union, so the adapter's dispatch and the tests know every kind there is."""

from __future__ import annotations

from typing import TypeAlias

from services.kernel.events import (
    IvrCallbackRequested,
    IvrCompleted,
    IvrNodeEntered,
    IvrNodeExited,
    IvrSurveyAnswered,
    MediaCollect,
    MediaHangup,
    MediaPlay,
    MediaRecord,
    MediaTransfer,
    RoutingCallback,
    RoutingTask,
)

from .lookup import LookupRequest

__all__ = ["Output"]

Output: TypeAlias = (
    MediaPlay
    | MediaCollect
    | MediaRecord
    | MediaHangup
    | MediaTransfer
    | RoutingCallback
    | RoutingTask
    | IvrNodeEntered
    | IvrNodeExited
    | IvrCompleted
    | IvrSurveyAnswered
    | IvrCallbackRequested
    | LookupRequest
)
