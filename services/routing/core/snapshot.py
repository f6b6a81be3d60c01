# Snapshot and restore of a tenant's routing state: bytes (msgpack) for JetStream KV, or plain dicts.
from __future__ import annotations

from typing import Any

import msgspec

from .state import STATE_VERSION, RoutingState

__all__ = ["SnapshotError", "from_bytes", "from_dict", "to_bytes", "to_dict"]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(RoutingState)


class SnapshotError(ValueError):
    pass


def _check(state: RoutingState) -> RoutingState:
    if state.version != STATE_VERSION:
        raise SnapshotError(f"snapshot version {state.version} is not supported (expected {STATE_VERSION})")
    return state


def to_bytes(state: RoutingState) -> bytes:
    return _encoder.encode(state)


def from_bytes(data: bytes) -> RoutingState:
    try:
        return _check(_decoder.decode(data))
    except msgspec.DecodeError as exc:
        raise SnapshotError(f"routing snapshot is unreadable: {exc}") from exc


def to_dict(state: RoutingState) -> dict[str, Any]:
    out = msgspec.to_builtins(state)
    assert isinstance(out, dict)
    return out


def from_dict(data: dict[str, Any]) -> RoutingState:
    try:
        return _check(msgspec.convert(data, RoutingState))
    except msgspec.ValidationError as exc:
        raise SnapshotError(f"routing snapshot is invalid: {exc}") from exc
