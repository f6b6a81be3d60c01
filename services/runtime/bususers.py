"""One NATS user per platform service, allowed only its own subjects (docs/security.md, "On the bus").

`switchboard up` writes these users into the embedded server's config (passwords bcrypt-hashed, derived from
the data dir's random NATS secret) and gives each service its own URL (SB_NATS_URL); the Helm chart and the
Pulumi program render the same users from the same `permissions` (charts/switchboard, infra/). Each user may
publish and subscribe only what `GRANTS` lists for its service, everything else is refused by the server:

- events: publishing only its own domains (media cannot publish a contact offer), listening only to what it
  reacts to;
- commands: sending only to the services it drives, serving only its own (`sb.*.cmd.<service>.>`);
- JetStream: the API of the streams, key-value buckets and object stores it uses, per stream; reading a
  stream (consumers, message gets, acks) only where it reads it: recordings' audio and voicemails are
  readable by the recording service alone (media writes them), routing's journal by routing alone;
- replies: it reads only its own inbox (`_INBOX.<service>.>`, the prefix `services.kernel.bus.connect` sets
  from the user name), never another service's replies or JetStream deliveries; it may publish to any
  inbox (the replies to the requests it serves).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, field

import bcrypt

from services.kernel.subjects import inbox_prefix

__all__ = [
    "ADMIN_USER",
    "BUS_SERVICES",
    "GRANTS",
    "Grants",
    "authorization_block",
    "inbox_prefix",
    "permissions",
    "service_password",
    "users",
]

ADMIN_USER = "sb_admin"  # the runtime's own user (tests, CLI tools on this machine): no restriction
BUS_SERVICES = ("api", "media", "routing", "ivr", "contacts", "recording", "reporting")

EVENTS = "SB_EVENTS"
_ROUTING_MAPPED = "sb.sys.routing.cmd.>"
REC_STREAM = "SB_RECORDING_CHUNKS"
# Voicemails on their way from media to the recording service (services/recording/voicemail_bucket.py).
VOICEMAIL_BUCKET = "sb_voicemails"
VOICEMAIL_STREAM = f"OBJ_{VOICEMAIL_BUCKET}"
VOICEMAIL_SUBJECTS = f"$O.{VOICEMAIL_BUCKET}.>"


@dataclass(frozen=True)
class Grants:
    """What one service does on the bus; `permissions` turns it into the server's allow lists."""

    emits: tuple[str, ...] = ()  # event domains it publishes (sb.<tenant>.evt.<domain>...)
    hears: tuple[str, ...] = ()  # event domains it subscribes to live (Bus.listen)
    commands: tuple[str, ...] = ()  # services it sends commands to
    writes: tuple[str, ...] = ()  # streams it creates and keeps, without reading them
    reads: tuple[str, ...] = ()  # streams it reads (consumers, gets, acks) and creates
    purges: tuple[str, ...] = ()  # streams it removes messages from (of those it reads)
    buckets: tuple[str, ...] = ()  # key-value buckets it reads and writes
    watches: tuple[str, ...] = ()  # key-value buckets it only reads
    objects: tuple[str, ...] = ()  # object stores it reads and writes
    publish: tuple[str, ...] = field(default=())  # other subjects it publishes
    subscribe: tuple[str, ...] = field(default=())  # other subjects it subscribes to


GRANTS: dict[str, Grants] = {
    "api": Grants(
        emits=("config", "seats", "session", "call", "recording"),  # call.arrived: a web caller
        hears=("*",),  # desk pushes, supervisors' and reports' live feeds, webhooks' tests
        commands=("contacts", "media", "routing"),
        reads=(EVENTS,),
        watches=("sb_health",),  # /healthz: every service's health
    ),
    "media": Grants(
        emits=("call", "webrtc", "recording"),  # recording.chunks_end: the spool shipped a call's audio
        hears=("agent", "config"),
        writes=(REC_STREAM,),
        buckets=("sb_slots", "sb_media_workers"),
        objects=(VOICEMAIL_BUCKET,),
        publish=("sb.*.rec.>", "sb.sys.media.>", "$KV.sb_health.media_front.>"),  # the SIP front's health
        subscribe=("sb.sys.media.>",),
    ),
    "routing": Grants(
        emits=("agent", "contact", "queue", "routing"),
        hears=("config", "seats"),
        commands=("routing",),  # the partition mapping's self-check (sb.<probe>.cmd.routing.check)
        reads=("SB_ROUTING",),
        purges=("SB_ROUTING",),
        buckets=("sb_routing_owners",),
        objects=("sb_routing_snapshots",),
        publish=("sb.sys.routing.journal.>",),
        subscribe=(_ROUTING_MAPPED,),  # its commands, as the server's mapping delivers them
    ),
    "ivr": Grants(
        emits=("ivr",),
        hears=("config",),
        commands=("media", "routing"),
        reads=(EVENTS, "SBP_ivr"),  # its partitions' work queue under the default name (SB_IVR_DURABLE)
        buckets=("sb_ivr_calls", "sb_ivr_flows", "sb_partition_owners"),
    ),
    "contacts": Grants(
        # call.ended and sb.sys.media.worker_lost: the end of a lost single media process's calls;
        # ivr.callback_requested: a flow queue's callback offer taken in the coordinator's wait
        emits=("contact", "desk", "call", "ivr"),
        hears=("config",),
        commands=("ivr", "media", "routing"),
        reads=(EVENTS, "SBP_contacts"),  # its partitions' work queue under the default name
        buckets=("sb_contacts", "sb_partition_owners"),
        watches=("sb_health", "sb_media_workers"),  # media processes' health and loss (reconcile, loss.py)
        publish=("sb.sys.media.worker_lost",),
    ),
    "recording": Grants(
        emits=("recording",),
        hears=("config",),
        reads=(EVENTS, REC_STREAM),
        purges=(REC_STREAM,),
        objects=(VOICEMAIL_BUCKET,),
        # The end marker of a call whose media worker died: the recording seals what was shipped, partial.
        publish=("sb.*.rec.*.end",),
    ),
    "reporting": Grants(
        emits=("queue", "webhook"),  # queue.alert_raised and alert_cleared; webhook.due, its own hand-over
        hears=("config",),
        reads=(EVENTS,),
    ),
}


def _stream_keeping(stream: str) -> list[str]:
    """Opening a stream: its info, and creating or updating it (every service ensures what it uses)."""
    return [f"$JS.API.STREAM.{verb}.{stream}" for verb in ("INFO", "CREATE", "UPDATE")]


def _stream_reading(stream: str) -> list[str]:
    """Reading a stream: consumers (ephemeral, named, durable), fetching, gets, acks and flow control."""
    return [
        f"$JS.API.CONSUMER.CREATE.{stream}",
        f"$JS.API.CONSUMER.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.API.CONSUMER.INFO.{stream}.>",
        f"$JS.API.CONSUMER.DELETE.{stream}.>",
        f"$JS.API.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.API.CONSUMER.NAMES.{stream}",
        f"$JS.API.CONSUMER.LIST.{stream}",
        f"$JS.API.STREAM.MSG.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}",
        f"$JS.API.DIRECT.GET.{stream}.>",
        f"$JS.ACK.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def permissions(service: str) -> dict[str, object]:
    """nats-server's `permissions` for `service`: publish and subscribe allow lists, and replies to what
    it was asked."""
    grants = GRANTS.get(service)
    if grants is None:
        raise ValueError(f"no NATS user for {service!r}")
    publish = ["$JS.API.INFO", "$JS.API.STREAM.NAMES", f"$KV.sb_health.{service}.>"]
    subscribe = [f"{inbox_prefix(service)}.>", f"sb.*.cmd.{service}.>"]
    publish += [f"sb.*.evt.{domain}.>" for domain in grants.emits]
    subscribe += ["sb.*.evt.>"] if "*" in grants.hears else [f"sb.*.evt.{d}.>" for d in grants.hears]
    # Permissions apply after the server's subject mapping: sb.<tenant>.cmd.routing.<command> is checked as
    # sb.sys.routing.cmd.<partition>.<tenant>.<command> (services/routing/partitions.py).
    publish += [_ROUTING_MAPPED if t == "routing" else f"sb.*.cmd.{t}.>" for t in grants.commands]
    streams = {EVENTS, "KV_sb_health", *grants.writes, *grants.reads}
    streams |= {f"KV_{b}" for b in (*grants.buckets, *grants.watches)} | {f"OBJ_{o}" for o in grants.objects}
    for stream in sorted(streams):
        publish += _stream_keeping(stream)
    reading = [*grants.reads, *(f"KV_{b}" for b in (*grants.buckets, *grants.watches))]
    reading += [f"OBJ_{o}" for o in grants.objects]
    for stream in reading:
        publish += _stream_reading(stream)
    # Removing: an object store's delete and a key-value bucket's purge of old deletes purge their stream.
    purging = [*grants.purges, *(f"KV_{b}" for b in grants.buckets), *(f"OBJ_{o}" for o in grants.objects)]
    publish += [f"$JS.API.STREAM.PURGE.{stream}" for stream in purging]
    publish += [f"$KV.{b}.>" for b in grants.buckets] + [f"$O.{o}.>" for o in grants.objects]
    publish += grants.publish
    subscribe += grants.subscribe
    # Replies to the requests it serves. Inboxes are random (nuid) and only their owner may subscribe, so
    # another service's pending requests cannot be learnt, only guessed. (nats-server 2.15.1's
    # `allow_responses`, replies to requests received only, refused every reply in a trial: docs/security.md.)
    publish.append("_INBOX.>")
    return {"publish": {"allow": _unique(publish)}, "subscribe": {"allow": _unique(subscribe)}}


def _unique(subjects: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(subjects))


def service_password(secret: str, service: str) -> str:
    """A service's password: derived from the data dir's random NATS secret, so nothing new to store."""
    return hmac.new(secret.encode(), f"nats-user|{service}".encode(), hashlib.sha256).hexdigest()


def users(
    secret: str, services: Iterable[str] = BUS_SERVICES, *, rounds: int = 10
) -> list[dict[str, object]]:
    """The service users (bcrypt-hashed passwords) with their permissions, as nats-server's config takes them."""
    out: list[dict[str, object]] = []
    for service in services:
        hashed = bcrypt.hashpw(service_password(secret, service).encode(), bcrypt.gensalt(rounds, b"2a"))
        out.append({"user": service, "password": hashed.decode(), "permissions": permissions(service)})
    return out


def authorization_block(secret: str, services: Iterable[str] = BUS_SERVICES, *, rounds: int = 10) -> str:
    """nats-server's `authorization { users: [...] }`: the admin user (password `secret`, as the old token
    was) and one bcrypt-hashed user per service with its allow lists."""
    lines = [f"    {{user: {ADMIN_USER}, password: {json.dumps(secret)}}}"]
    lines += [f"    {json.dumps(user)}" for user in users(secret, services, rounds=rounds)]
    return "authorization {\n  users: [\n" + "\n".join(lines) + "\n  ]\n}\n"
