"""One NATS user per platform service, each refused the subjects that belong to other services.

`switchboard up` writes these users into the embedded server's config (passwords bcrypt-hashed, derived from
the data dir's random NATS secret) and gives each service its own URL (SB_NATS_URL). What is refused, for
every service but the owner (docs/security.md, "The bus"):

- recordings' audio: publishing or reading `sb.*.rec.>` and the chunk stream's JetStream API (media only
  publishes it, the recording service only reads it), and the voicemail bucket (`$O.sb_voicemails.>` and
  its stream's reads: media's and the recording service's only);
- another service's commands: subscribing to `sb.*.cmd.<service>.>` (nobody can answer in its place) and,
  for routing, to the partition-mapped `sb.sys.routing.>` (its journal and mapped commands);
- routing's decisions: publishing contact, agent, queue and routing events (the services that do publish
  some of them: routing, contacts, the API, reporting), or routing's journal (`sb.sys.routing.journal.>`).

Everything else is allowed (a deny list, not an allow list): a complete allow list per service needs each
service's JetStream API calls per stream and consumer, which is the next step (docs/security.md).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable

import bcrypt

__all__ = ["ADMIN_USER", "BUS_SERVICES", "authorization_block", "denials", "service_password"]

ADMIN_USER = "sb_admin"  # the runtime's own user (tests, CLI tools on this machine): no restriction
BUS_SERVICES = ("api", "media", "routing", "ivr", "contacts", "recording", "reporting")

REC_STREAM = "SB_RECORDING_CHUNKS"
# Voicemails on their way from media to the recording service (services/recording/voicemail_bucket.py):
# a JetStream object store, whose stream is OBJ_<bucket> and whose messages are $O.<bucket>.>.
VOICEMAIL_STREAM = "OBJ_sb_voicemails"
VOICEMAIL_SUBJECTS = "$O.sb_voicemails.>"


def _reads(stream: str) -> tuple[str, ...]:
    """The JetStream API calls that read (or empty) `stream`."""
    return (
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.API.STREAM.PURGE.{stream}",
        f"$JS.API.STREAM.DELETE.{stream}",
        f"$JS.API.STREAM.UPDATE.{stream}",
    )


_REC_READS = _reads(REC_STREAM)
# Events that carry routing's decisions and the commands routing acts on, and who may publish them.
_DECISION_EVENTS = ("sb.*.evt.contact.>", "sb.*.evt.agent.>", "sb.*.evt.queue.>", "sb.*.evt.routing.>")
_DECIDERS = ("routing", "contacts", "api", "reporting")


def denials(service: str) -> tuple[list[str], list[str]]:
    """(publish, subscribe) subjects refused to `service`."""
    if service not in BUS_SERVICES:
        raise ValueError(f"no NATS user for {service!r}")
    publish: list[str] = []
    subscribe: list[str] = []
    if service != "recording":
        subscribe.append("sb.*.rec.>")
        publish += _REC_READS
        if service != "media":
            publish.append("sb.*.rec.>")
            # Voicemails: media writes and reads back its object, the recording service reads and removes it.
            publish += [VOICEMAIL_SUBJECTS, *_reads(VOICEMAIL_STREAM)]
            subscribe.append(VOICEMAIL_SUBJECTS)
    for other in BUS_SERVICES:
        if other != service:
            subscribe.append(f"sb.*.cmd.{other}.>")
    if service != "routing":
        # Publish permissions apply after the server's subject mapping: sb.<tenant>.cmd.routing.<command>
        # arrives as sb.sys.routing.cmd.<partition>..., which every service may send; the journal is routing's.
        publish.append("sb.sys.routing.journal.>")
        subscribe.append("sb.sys.routing.>")
    if service not in _DECIDERS:
        publish += _DECISION_EVENTS
    return publish, subscribe


def service_password(secret: str, service: str) -> str:
    """A service's password: derived from the data dir's random NATS secret, so nothing new to store."""
    return hmac.new(secret.encode(), f"nats-user|{service}".encode(), hashlib.sha256).hexdigest()


def authorization_block(secret: str, services: Iterable[str] = BUS_SERVICES, *, rounds: int = 10) -> str:
    """nats-server's `authorization { users: [...] }`: the admin user (password `secret`, as the old token
    was) and one bcrypt-hashed user per service with its denials."""
    users = [f"    {{user: {ADMIN_USER}, password: {json.dumps(secret)}}}"]
    for service in services:
        hashed = bcrypt.hashpw(service_password(secret, service).encode(), bcrypt.gensalt(rounds, b"2a"))
        publish, subscribe = denials(service)
        permissions = {
            "publish": {"allow": [">"], "deny": publish},
            "subscribe": {"allow": [">"], "deny": subscribe},
        }
        users.append(
            f"    {{user: {service}, password: {json.dumps(hashed.decode())}, "
            f"permissions: {json.dumps(permissions)}}}"
        )
    return "authorization {\n  users: [\n" + "\n".join(users) + "\n  ]\n}\n"
