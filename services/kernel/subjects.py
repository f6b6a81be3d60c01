"""NATS subject scheme (ARCHITECTURE.md): every subject for tenant data carries the tenant id.

sb.<tenant>.evt.<domain>.<event>     facts, persisted in the JetStream stream SB_EVENTS
sb.<tenant>.evt.<domain>.<event>.<addressee>
                                     an addressed fact (Event.addressed: a desk push for one agent), so
                                     that only the API process holding that agent's sockets receives it
sb.<tenant>.cmd.<service>.<command>  commands, request/reply
sb.sys.>                             platform-level traffic (health, worker registry)
sb.<tenant>.rec.<call>.chunk|end     a call's recording audio on its way to the recording service
                                     (JetStream stream SB_RECORDING_CHUNKS)
$O.sb_voicemails.>                   voicemails on their way to the recording service (a JetStream object
                                     store; the tenant is in each object's name, recording/voicemail_bucket.py)
"""

from __future__ import annotations

import hashlib
import re
import uuid

__all__ = [
    "EVENTS_STREAM",
    "EVENTS_SUBJECTS",
    "HEALTH_BUCKET",
    "REC_STREAM",
    "REC_SUBJECTS",
    "addressee_token",
    "cmd_subject",
    "evt_subject",
    "inbox_prefix",
    "rec_subject",
    "sys_subject",
    "tenant_of",
]

EVENTS_STREAM = "SB_EVENTS"
EVENTS_SUBJECTS = "sb.*.evt.>"
HEALTH_BUCKET = "sb_health"
REC_STREAM = "SB_RECORDING_CHUNKS"
REC_SUBJECTS = "sb.*.rec.>"

_TOKEN = re.compile(r"^[a-z0-9_\-]+$")


def _token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise ValueError(f"{what} {value!r} is not a valid subject token")
    return value


def evt_subject(tenant_id: uuid.UUID | str, domain: str, event: str, addressee: str | None = None) -> str:
    """An event's subject; with `addressee` (an addressed kind's reader), that reader's own subject."""
    subject = f"sb.{_tenant_token(tenant_id)}.evt.{_token(domain, 'domain')}.{_token(event, 'event')}"
    return subject if addressee is None else f"{subject}.{addressee_token(addressee)}"


def addressee_token(addressee: str) -> str:
    """The subject token of an event's reader: an agent id (a UUID) as it is; anything else (a widget
    caller's or a supervisor's leg owner, with ':') as a digest, so that it can never widen a subscription
    nor collide with an agent id."""
    if _TOKEN.match(addressee) and not addressee.startswith("h-"):
        return addressee
    return "h-" + hashlib.sha256(addressee.encode()).hexdigest()[:32]


def cmd_subject(tenant_id: uuid.UUID | str, service: str, command: str) -> str:
    return f"sb.{_tenant_token(tenant_id)}.cmd.{_token(service, 'service')}.{_token(command, 'command')}"


def rec_subject(tenant_id: uuid.UUID | str, call_id: uuid.UUID | str, part: str) -> str:
    """A call's recording chunks (`part` "chunk") or their end marker ("end"); "*" for both."""
    if part not in ("chunk", "end", "*"):
        raise ValueError(f"recording subject part {part!r} is not chunk, end or *")
    return f"sb.{_tenant_token(tenant_id)}.rec.{uuid.UUID(str(call_id))}.{part}"


def sys_subject(*tokens: str) -> str:
    return ".".join(["sb", "sys", *(_token(t, "token") for t in tokens)])


def inbox_prefix(user: str | None) -> str:
    """The inbox prefix of a connection as NATS user `user`: replies to one service's requests (and its
    JetStream deliveries) go to subjects only that service's user may subscribe to
    (services/runtime/bususers.py). The plain `_INBOX` without a user name (a token, an external server)."""
    if user and _TOKEN.match(user):
        return f"_INBOX.{user}"
    return "_INBOX"


def tenant_of(subject: str) -> uuid.UUID | None:
    """The tenant a subject belongs to, or None for platform subjects and malformed ones."""
    parts = subject.split(".")
    if len(parts) < 3 or parts[0] != "sb" or parts[1] == "sys":
        return None
    try:
        return uuid.UUID(parts[1])
    except ValueError:
        return None


def _tenant_token(tenant_id: uuid.UUID | str) -> str:
    # Parsing guarantees the token has no '.', '*' or '>' that could widen a subscription.
    return str(uuid.UUID(str(tenant_id)))
