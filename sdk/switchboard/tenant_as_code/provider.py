"""The dynamic providers behind `switchboard.tenant_as_code`: each turns Pulumi's create, read, diff, update
and delete of one kind of tenant object into calls of the Python SDK (nothing here knows the platform's
internals). Every resource's properties carry the connection (`api_url`, `api_key`); of the others, only
those the program sets are managed: an unset property keeps whatever the API holds, and read compares only
the managed ones, so a value changed by hand shows as drift on `pulumi refresh` / `pulumi preview
--refresh`."""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)

from ..client import Client
from ..errors import ApiError, NotFoundError

CONNECTION = ("api_url", "api_key")


class RefusedError(Exception):
    """The API refused an operation; the message names the object and carries the API's own words."""


def refused(kind: str, label: str, action: str, exc: ApiError) -> RefusedError:
    return RefusedError(f"Switchboard refused to {action} {kind} {label!r}: {exc.message}")


def whole_numbers(value: Any) -> Any:
    """Pulumi carries every number as a float (a protobuf Struct); the API's counts and seconds are ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: whole_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [whole_numbers(v) for v in value]
    return value


def client_for(props: dict[str, Any]) -> Client:
    return _client(props["api_url"], props["api_key"])


@functools.lru_cache(maxsize=8)
def _client(api_url: str, api_key: str) -> Client:
    # One per connection for the provider host's life: a new httpx client costs ~50 ms (its TLS context),
    # and a program's `up` makes one call or more per resource.
    return Client(api_key=api_key, base_url=api_url, max_retries=1)


class TenantObjectProvider(ResourceProvider):
    """What every kind shares: checking inputs, the diff (which properties replace, which update in place),
    and turning the API's refusals into one readable error. Subclasses say which properties they manage and
    talk to the SDK in `_create`, `_read`, `_update`, `_delete` (each returns the managed properties as the
    API holds them)."""

    kind: ClassVar[str]
    fields: ClassVar[tuple[str, ...]]
    required: ClassVar[tuple[str, ...]] = ()
    # Changing one of these makes a new object (a number's E.164: another number; a flow's name).
    replaces: ClassVar[frozenset[str]] = frozenset()
    # The API never returns these (a trunk's password): read keeps the last value given.
    write_only: ClassVar[frozenset[str]] = frozenset()

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        news = whole_numbers(news)
        failures = [
            CheckFailure(name, f"{self.kind} needs {name}")
            for name in (*CONNECTION, *self.required)
            if news.get(name) in (None, "")
        ]
        return CheckResult(news, failures + self._check(news))

    def _check(self, news: dict[str, Any]) -> list[CheckFailure]:
        """What a kind refuses before any call (`pulumi preview` shows it)."""
        return []

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        olds, news = whole_numbers(olds), whole_numbers(news)
        # The connection is how, not what: a rotated key or a new URL changes no object.
        changed = [
            name
            for name in self.fields
            if (name in news or name in olds) and news.get(name) != olds.get(name)
        ]
        replaces = [name for name in changed if name in self.replaces]
        stables = [name for name in self.replaces if name not in changed]
        return DiffResult(
            changes=bool(changed), replaces=replaces, stables=stables, delete_before_replace=False
        )

    def create(self, props: dict[str, Any]) -> CreateResult:
        props = whole_numbers(props)
        client = client_for(props)
        try:
            id_, current = self._create(client, managed(self.fields, props))
        except ApiError as exc:
            raise refused(self.kind, label(props), "create", exc) from exc
        return CreateResult(id_, self._outs(props, current))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        props = whole_numbers(props)
        client = client_for(props)
        try:
            current = self._read(client, id_, props)
        except NotFoundError:
            return ReadResult("", {})  # gone: Pulumi drops it from the state and plans to create it again
        except ApiError as exc:
            raise refused(self.kind, label(props), "read", exc) from exc
        return ReadResult(id_, self._outs(props, current))

    def update(self, id_: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        olds, news = whole_numbers(olds), whole_numbers(news)
        changed = {name: news.get(name) for name in self.fields if news.get(name) != olds.get(name)}
        client = client_for(news)
        try:
            current = self._update(client, id_, changed, news)
        except ApiError as exc:
            raise refused(self.kind, label(news), "update", exc) from exc
        return UpdateResult(self._outs(news, current))

    def delete(self, id_: str, props: dict[str, Any]) -> None:
        props = whole_numbers(props)
        client = client_for(props)
        try:
            self._delete(client, id_, props)
        except NotFoundError:
            return  # already gone (deleted by hand): nothing left to do
        except ApiError as exc:
            raise refused(self.kind, label(props), "delete", exc) from exc

    def _outs(self, props: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
        """The connection and the managed properties as the API holds them (write-only ones as given)."""
        outs = {name: props[name] for name in CONNECTION}
        for name in self.fields:
            if name in self.write_only:
                if name in props:
                    outs[name] = props[name]
            elif name in props:
                outs[name] = current.get(name, props[name])
        return outs

    def _create(self, client: Client, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        raise NotImplementedError

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def _update(
        self, client: Client, id_: str, changed: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        raise NotImplementedError


def managed(fields: tuple[str, ...], props: dict[str, Any]) -> dict[str, Any]:
    return {name: props[name] for name in fields if name in props}


def label(props: dict[str, Any]) -> str:
    return str(props.get("name") or props.get("e164") or props.get("email") or "")


def picked(obj: Any, fields: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in fields if hasattr(obj, name)}


class TenantProvider(TenantObjectProvider):
    """The tenant the key belongs to, and its settings. There is no tenant to create or delete with a
    tenant's key: create adopts it (its id is the tenant's), delete leaves it and its settings as they are."""

    kind = "tenant"
    fields = ("agent_grace_seconds", "timezone", "language", "monitor_notice")

    def _create(self, client: Client, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        tenant_id = client.me().tenant.id
        return tenant_id, self._update(client, tenant_id, values, values)

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        other = client.me().tenant.id
        if other != id_:
            # Not "gone": that would make Pulumi adopt the key's tenant and re-create everything there.
            raise RefusedError(f"the API key belongs to tenant {other}, not to this stack's tenant {id_}")
        return picked(client.settings.get(), self.fields)

    def _update(
        self, client: Client, id_: str, changed: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        settings = client.settings.update(**changed) if changed else client.settings.get()
        return picked(settings, self.fields)

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        return None


class SeatsProvider(TenantObjectProvider):
    """The seats the tenant holds (`count`): create and update purchase or release the difference; the API
    refuses to release seats agents are logged in on. Delete leaves the seats held (releasing them all would
    sign agents out of a live contact center)."""

    kind = "seats"
    fields = ("count",)
    required = ("count",)

    def _create(self, client: Client, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return f"{client.me().tenant.id}/seats", self._update(client, "", values, values)

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        return {"count": client.seats.get().purchased}

    def _update(
        self, client: Client, id_: str, changed: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        want = int(news["count"])
        have = client.seats.get().purchased
        if want > have:
            have = client.seats.purchase(want - have).purchased
        elif want < have:
            have = client.seats.release(have - want).purchased
        return {"count": have}

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        return None


SITE_FIELDS = ("name", "timezone", "kind")


class SiteProvider(TenantObjectProvider):
    kind = "site"
    fields = SITE_FIELDS
    required = ("name",)

    def _create(self, client: Client, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        site = client.sites.create(**values)
        return site.id, picked(site, self.fields)

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        return picked(client.sites.get(id_), self.fields)

    def _update(
        self, client: Client, id_: str, changed: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        return picked(client.sites.update(id_, **changed), self.fields)

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        client.sites.delete(id_)


AGENT_FIELDS = (
    "name",
    "email",
    "site_id",
    "skills",
    "languages",
    "endpoint",
    "can_dial",
    "voicemail_capacity",
)


class AgentProvider(TenantObjectProvider):
    kind = "agent"
    fields = AGENT_FIELDS
    required = ("name", "email")

    def _create(self, client: Client, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        agent = client.agents.create(**values)
        return agent.id, picked(agent, self.fields)

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        return picked(client.agents.get(id_), self.fields)

    def _update(
        self, client: Client, id_: str, changed: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        return picked(client.agents.update(id_, **changed), self.fields)

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        client.agents.delete(id_)


QUEUE_SETTINGS = (
    "name",
    "skills",
    "priority",
    "sl_percent",
    "sl_seconds",
    "short_abandon_seconds",
    "wrap_up_seconds",
    "offer_timeout_seconds",
    "recording_percent",
    "recording_retention_days",
    "recording_announcement",
    "site_id",
)
# Routing rules go through their own call (Queues.set_rules; docs/routing.md, "Queue rules").
QUEUE_RULES = (
    "strategy",
    "overflow",
    "hours",
    "holidays",
    "closed_treatment",
    "closed_message",
    "closed_queue_id",
    "closed_flow_id",
    "survey_flow_id",
    "priority_rules",
    "spill_after_seconds",
    "spill_expected_wait_seconds",
    "announce_seconds",
)


class QueueProvider(TenantObjectProvider):
    """A queue and its routing rules. Delete never forces: while numbers or flows use the queue the API
    refuses, and so does `pulumi destroy`, with the API's words naming them."""

    kind = "queue"
    fields = QUEUE_SETTINGS + QUEUE_RULES
    required = ("name",)

    def _create(self, client: Client, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        queue = client.queues.create(**{k: v for k, v in values.items() if k in QUEUE_SETTINGS})
        rules = {k: v for k, v in values.items() if k in QUEUE_RULES}
        if rules:
            queue = client.queues.set_rules(queue.id, **rules)
        return queue.id, picked(queue, self.fields)

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        return picked(client.queues.get(id_), self.fields)

    def _update(
        self, client: Client, id_: str, changed: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        settings = {k: v for k, v in changed.items() if k in QUEUE_SETTINGS}
        rules = {k: v for k, v in changed.items() if k in QUEUE_RULES}
        queue = client.queues.update(id_, **settings) if settings or not rules else None
        if rules:
            queue = client.queues.set_rules(id_, **rules)
        assert queue is not None
        return picked(queue, self.fields)

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        client.queues.delete(id_)


class FlowProvider(TenantObjectProvider):
    """An IVR flow by `name`, its file's text in `source` (YAML or JSON, docs/ivr.md). A changed source
    deploys a new version (the API keeps the old ones for rollback); a new name is another flow."""

    kind = "flow"
    fields = ("name", "source")
    required = ("name", "source")
    replaces = frozenset({"name"})

    def _create(self, client: Client, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        deployed = client.flows.deploy(values["source"], name=values["name"])
        return deployed.flow.id, {"name": deployed.flow.name, "source": values["source"]}

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        current = client.flows.get(props["name"])
        return {"name": current.flow, "source": current.source}

    def _update(
        self, client: Client, id_: str, changed: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        deployed = client.flows.deploy(news["source"], name=news["name"])
        return {"name": deployed.flow.name, "source": news["source"]}

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        client.flows.delete(props["name"])


class NumberProvider(TenantObjectProvider):
    """A claimed number, pointed at a queue (`queue_id`) or an IVR flow (`flow`, its name), or at nothing.
    A new `e164` is another number: Pulumi claims it and then releases the old one."""

    kind = "number"
    fields = ("e164", "queue_id", "flow")
    required = ("e164",)
    replaces = frozenset({"e164"})

    def _create(self, client: Client, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        number = client.numbers.claim(values["e164"])
        try:
            return number.id, self._route(client, number.id, values)
        except ApiError:
            client.numbers.release(number.id)  # not half made: the next `up` claims it again
            raise

    def _check(self, news: dict[str, Any]) -> list[CheckFailure]:
        if news.get("flow") and news.get("queue_id"):
            return [CheckFailure("flow", "a number goes to a queue (queue_id) or to a flow, not both")]
        return []

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        number = client.numbers.get(id_)
        return {"e164": number.e164, "queue_id": number.queue_id, "flow": flow_name(client, number.flow_id)}

    def _update(
        self, client: Client, id_: str, changed: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        return self._route(client, id_, news)

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        client.numbers.release(id_)

    def _route(self, client: Client, id_: str, values: dict[str, Any]) -> dict[str, Any]:
        flow, queue_id = values.get("flow"), values.get("queue_id")
        number = (
            client.flows.route(id_, flow, queue=queue_id) if flow or queue_id else client.numbers.get(id_)
        )
        return {"e164": number.e164, "queue_id": number.queue_id, "flow": flow_name(client, number.flow_id)}


def flow_name(client: Client, flow_id: str | None) -> str | None:
    if flow_id is None:
        return None
    page = client.flows.list(limit=200)
    return next((flow.name for flow in page.items if flow.id == flow_id), None)


TRUNK_FIELDS = (
    "name",
    "allowed_ips",
    "username",
    "password",
    "realm",
    "outbound_host",
    "outbound_port",
    "outbound_transport",
)


class TrunkProvider(TenantObjectProvider):
    """A SIP trunk. Its password is write-only: the API never returns it, so read cannot see it changed by
    hand; a new username or realm sends the password again (the API needs it to derive the digest)."""

    kind = "trunk"
    fields = TRUNK_FIELDS
    required = ("name",)
    write_only = frozenset({"password"})

    def _create(self, client: Client, values: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        trunk = client.trunks.create(**values)
        return trunk.id, picked(trunk, self.fields)

    def _read(self, client: Client, id_: str, props: dict[str, Any]) -> dict[str, Any]:
        return picked(client.trunks.get(id_), self.fields)

    def _update(
        self, client: Client, id_: str, changed: dict[str, Any], news: dict[str, Any]
    ) -> dict[str, Any]:
        if {"username", "realm"} & changed.keys() and news.get("password"):
            changed = changed | {"password": news["password"]}
        return picked(client.trunks.update(id_, **changed), self.fields)

    def _delete(self, client: Client, id_: str, props: dict[str, Any]) -> None:
        client.trunks.delete(id_)
