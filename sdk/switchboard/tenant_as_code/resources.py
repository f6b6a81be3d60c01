"""The Pulumi resources a tenant's program declares. `Tenant` carries the connection (the API's URL and the
tenant's API key, kept secret in the state); every other resource takes the tenant and becomes its child, so
`pulumi preview` shows the tenant's objects as one tree. A keyword left at None is not managed: the API keeps
its own value (or its default on create). Names default to the resource's Pulumi name."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import Resource

from . import provider as p

SECRETS = ["api_key", "password"]


def _props(tenant: Tenant | None, values: dict[str, Any]) -> dict[str, Any]:
    props: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    if tenant is not None:
        # Secret again here, not only through the tenant's additional_secret_outputs: the key must stay
        # masked and encrypted in every resource's state whatever the engine does with outputs.
        api_key: pulumi.Output[str] = pulumi.Output.secret(tenant.api_key)
        props |= {"api_url": tenant.api_url, "api_key": api_key}
    return props


def _opts(tenant: Tenant, opts: pulumi.ResourceOptions | None) -> pulumi.ResourceOptions:
    base = pulumi.ResourceOptions(parent=tenant, additional_secret_outputs=SECRETS)
    return pulumi.ResourceOptions.merge(base, opts)


class Tenant(Resource, module="switchboard", name="Tenant"):
    """The tenant `api_key` belongs to (an admin key: `switchboard keys create admin`), and its settings."""

    api_url: pulumi.Output[str]
    api_key: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        api_url: pulumi.Input[str],
        api_key: pulumi.Input[str],
        timezone: pulumi.Input[str] | None = None,
        language: pulumi.Input[str] | None = None,
        agent_grace_seconds: pulumi.Input[int] | None = None,
        monitor_notice: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        values = dict(timezone=timezone, language=language, agent_grace_seconds=agent_grace_seconds)
        props = _props(None, values | {"monitor_notice": monitor_notice, "api_url": api_url})
        props["api_key"] = pulumi.Output.secret(api_key)
        secret = pulumi.ResourceOptions(additional_secret_outputs=SECRETS)
        super().__init__(p.TenantProvider(), name, props, pulumi.ResourceOptions.merge(secret, opts))


class Seats(Resource, module="switchboard", name="Seats"):
    def __init__(
        self,
        name: str,
        tenant: Tenant,
        *,
        count: pulumi.Input[int],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(p.SeatsProvider(), name, _props(tenant, {"count": count}), _opts(tenant, opts))


class Site(Resource, module="switchboard", name="Site"):
    def __init__(
        self,
        name: str,
        tenant: Tenant,
        *,
        site_name: pulumi.Input[str] | None = None,
        timezone: pulumi.Input[str] | None = None,
        kind: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        values = {"name": site_name or name, "timezone": timezone, "kind": kind}
        super().__init__(p.SiteProvider(), name, _props(tenant, values), _opts(tenant, opts))


class Agent(Resource, module="switchboard", name="Agent"):
    def __init__(
        self,
        name: str,
        tenant: Tenant,
        *,
        email: pulumi.Input[str],
        agent_name: pulumi.Input[str] | None = None,
        site_id: pulumi.Input[str] | None = None,
        skills: pulumi.Input[dict[str, int]] | None = None,
        languages: pulumi.Input[list[str]] | None = None,
        endpoint: pulumi.Input[str] | None = None,
        can_dial: pulumi.Input[bool] | None = None,
        voicemail_capacity: pulumi.Input[int] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        values = dict(
            name=agent_name or name,
            email=email,
            site_id=site_id,
            skills=skills,
            languages=languages,
            endpoint=endpoint,
            can_dial=can_dial,
            voicemail_capacity=voicemail_capacity,
        )
        super().__init__(p.AgentProvider(), name, _props(tenant, values), _opts(tenant, opts))


class Queue(Resource, module="switchboard", name="Queue"):
    """Settings and routing rules (docs/routing.md, "Queue rules") as keywords: `skills`, `priority`,
    `sl_percent`, `sl_seconds`, `wrap_up_seconds`, `site_id`, `strategy`, `hours`, `holidays`,
    `closed_treatment`, `closed_flow_id`, `announce_seconds`, ... (switchboard.Client.queues.create and
    set_rules name them all)."""

    def __init__(
        self,
        name: str,
        tenant: Tenant,
        *,
        queue_name: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
        **settings: Any,
    ) -> None:
        unknown = sorted(set(settings) - set(p.QueueProvider.fields))
        if unknown:
            raise TypeError(f"Queue {name!r}: unknown settings {', '.join(unknown)}")
        values = {"name": queue_name or name} | settings
        super().__init__(p.QueueProvider(), name, _props(tenant, values), _opts(tenant, opts))


class Flow(Resource, module="switchboard", name="Flow"):
    """An IVR flow: `source` is its file's text (YAML or JSON, docs/ivr.md), whose `name` it must carry."""

    def __init__(
        self,
        name: str,
        tenant: Tenant,
        *,
        source: pulumi.Input[str],
        flow_name: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        values = {"name": flow_name or name, "source": source}
        super().__init__(p.FlowProvider(), name, _props(tenant, values), _opts(tenant, opts))


class Number(Resource, module="switchboard", name="Number"):
    """A number (E.164) the tenant claims, routed to a queue by id or to a flow by name (not both)."""

    def __init__(
        self,
        name: str,
        tenant: Tenant,
        *,
        e164: pulumi.Input[str],
        queue_id: pulumi.Input[str] | None = None,
        flow: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        values = {"e164": e164, "queue_id": queue_id, "flow": flow}
        super().__init__(p.NumberProvider(), name, _props(tenant, values), _opts(tenant, opts))


class Trunk(Resource, module="switchboard", name="Trunk"):
    def __init__(
        self,
        name: str,
        tenant: Tenant,
        *,
        trunk_name: pulumi.Input[str] | None = None,
        allowed_ips: pulumi.Input[list[str]] | None = None,
        username: pulumi.Input[str] | None = None,
        password: pulumi.Input[str] | None = None,
        realm: pulumi.Input[str] | None = None,
        outbound_host: pulumi.Input[str] | None = None,
        outbound_port: pulumi.Input[int] | None = None,
        outbound_transport: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        values = dict(
            name=trunk_name or name,
            allowed_ips=allowed_ips,
            username=username,
            realm=realm,
            outbound_host=outbound_host,
            outbound_port=outbound_port,
            outbound_transport=outbound_transport,
        )
        props = _props(tenant, values)
        if password is not None:
            props["password"] = pulumi.Output.secret(password)
        super().__init__(p.TrunkProvider(), name, props, _opts(tenant, opts))
