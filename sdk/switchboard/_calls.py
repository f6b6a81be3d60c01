"""Every API operation as a `Call` value: the one place that knows routes, bodies and result types.

Client and AsyncClient only run these, so the sync and async surfaces cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import quote

from msgspec import UNSET, UnsetType

from ._core import Call
from .models import (
    AgentStateSet,
    AgentToken,
    AlertPolicies,
    AlertPolicy,
    Contact,
    ContactMoved,
    ContactPrioritized,
    ContactSummary,
    Conversation,
    DeskSettings,
    Invite,
    Me,
    MonitorSession,
    Page,
    Queue,
    Recording,
    RecordingUrl,
    Seats,
    Signout,
    SignupResult,
    Site,
    SupervisorScope,
    TenantSettings,
    Usage,
    WidgetToken,
)

__all__ = [
    "UNSET",
    "UnsetType",
    "agent_dial",
    "agent_signout",
    "agent_state",
    "agent_token",
    "alert_policy_clear",
    "alert_policy_get",
    "alert_policy_put",
    "calling_settings_get",
    "calling_settings_put",
    "contact_front",
    "contact_get",
    "contact_monitor",
    "contact_move",
    "contact_pull",
    "contacts_export",
    "contacts_page",
    "create",
    "delete",
    "desk_settings_get",
    "desk_settings_put",
    "do_not_call_add",
    "do_not_call_list",
    "do_not_call_remove",
    "fields",
    "get",
    "invite",
    "list_page",
    "me",
    "queue_rules",
    "realtime",
    "realtime_feed_url",
    "recording_conversation",
    "recording_delete",
    "recording_get",
    "recording_hold",
    "recording_key_rotate",
    "recording_pause",
    "recording_settings_get",
    "recording_settings_put",
    "recording_url",
    "recordings_page",
    "report",
    "seats_change",
    "seats_get",
    "signup",
    "site_drain",
    "supervisor_scope",
    "supervisor_site_scope",
    "tenant_settings_get",
    "tenant_settings_patch",
    "update",
    "usage",
    "webhook_create",
    "webhook_delete",
    "webhook_deliveries",
    "webhook_list",
    "webhook_replay",
    "widget_token",
]


def _id(value: str) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("an id must not be empty")
    # Quoted whole, so an id can never reach another route ("../keys").
    return quote(text, safe="")


def fields(**values: Any) -> dict[str, Any]:
    """A request body from keyword arguments, leaving out the ones not given (UNSET)."""
    return {name: value for name, value in values.items() if value is not UNSET}


def _timestamp(value: datetime | str) -> str:
    if isinstance(value, datetime):
        # A naive datetime is taken as UTC, the API's zone for usage periods.
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return value


def signup(company: str, email: str) -> Call[SignupResult]:
    return Call[SignupResult](
        "POST", "/v1/signup", SignupResult, body={"company": company, "email": email}, auth=False
    )


def me() -> Call[Me]:
    return Call[Me]("GET", "/v1/me", Me)


def seats_get() -> Call[Seats]:
    return Call[Seats]("GET", "/v1/seats", Seats)


def seats_change(action: str, count: int, idempotency_key: str | None) -> Call[Seats]:
    return Call[Seats](
        "POST", f"/v1/seats/{action}", Seats, body={"count": count}, idempotency_key=idempotency_key
    )


def usage(start: datetime | str | None, end: datetime | str | None) -> Call[Usage]:
    params: dict[str, str] = {}
    if start is not None:
        params["from"] = _timestamp(start)
    if end is not None:
        params["to"] = _timestamp(end)
    return Call[Usage]("GET", "/v1/usage", Usage, params=params or None)


def list_page(path: str, model: Any, limit: int | None, cursor: str | None) -> Call[Page[Any]]:
    params: dict[str, str] = {}
    if limit is not None:
        params["limit"] = str(limit)
    if cursor:
        params["cursor"] = cursor
    return Call[Page[Any]]("GET", path, Page[model], params=params or None)


def get(path: str, model: Any, id: str) -> Call[Any]:
    return Call[Any]("GET", f"{path}/{_id(id)}", model)


def create(path: str, model: Any, body: dict[str, Any], idempotency_key: str | None = None) -> Call[Any]:
    return Call[Any]("POST", path, model, body=body, idempotency_key=idempotency_key)


def update(path: str, model: Any, id: str, body: dict[str, Any]) -> Call[Any]:
    return Call[Any]("PATCH", f"{path}/{_id(id)}", model, body=body)


def delete(path: str, id: str, *, force: bool = False) -> Call[None]:
    return Call[None]("DELETE", f"{path}/{_id(id)}", params={"force": "true"} if force else None)


def queue_rules(id: str, rules: dict[str, Any]) -> Call[Queue]:
    """Change a queue's routing rules: only the ones given (UNSET left out; None clears where allowed)."""
    return Call[Queue]("PATCH", f"/v1/queues/{_id(id)}", Queue, body=fields(**rules))


def site_drain(id: str, drained: bool) -> Call[Site]:
    return Call[Site]("POST", f"/v1/sites/{_id(id)}/{'drain' if drained else 'restore'}", Site)


def agent_token(agent_id: str) -> Call[AgentToken]:
    return Call[AgentToken]("POST", f"/v1/agents/{_id(agent_id)}/token", AgentToken)


def invite(email: str, role: str) -> Call[Invite]:
    return Call[Invite]("POST", "/v1/invites", Invite, body={"email": email, "role": role})


def agent_signout(agent_id: str) -> Call[Signout]:
    return Call[Signout]("POST", f"/v1/agents/{_id(agent_id)}/signout", Signout)


def agent_state(agent_id: str, state: str, reason: str | None) -> Call[AgentStateSet]:
    body: dict[str, Any] = {"state": state}
    if reason is not None:
        body["reason"] = reason
    return Call[AgentStateSet]("POST", f"/v1/agents/{_id(agent_id)}/state", AgentStateSet, body=body)


def supervisor_scope(account_id: str, queue_ids: list[str] | None) -> Call[SupervisorScope]:
    return Call[SupervisorScope](
        "PUT", f"/v1/supervisors/{_id(account_id)}/queues", SupervisorScope, body={"queue_ids": queue_ids}
    )


def supervisor_site_scope(
    account_id: str, queue_ids: list[str] | None, site_ids: list[str] | None
) -> Call[SupervisorScope]:
    return Call[SupervisorScope](
        "PUT",
        f"/v1/supervisors/{_id(account_id)}/scope",
        SupervisorScope,
        body={"queue_ids": queue_ids, "site_ids": site_ids},
    )


def alert_policy_get() -> Call[AlertPolicies]:
    return Call[AlertPolicies]("GET", "/v1/alert-policy", AlertPolicies)


def alert_policy_put(queue_id: str | None, policy: AlertPolicy) -> Call[AlertPolicy]:
    path = "/v1/alert-policy" if queue_id is None else f"/v1/alert-policy/queues/{_id(queue_id)}"
    body = {
        "longest_wait_seconds": policy.longest_wait_seconds,
        "service_level_below_percent": policy.service_level_below_percent,
        "waiting_over": policy.waiting_over,
        "away_over_percent": policy.away_over_percent,
    }
    return Call[AlertPolicy]("PUT", path, AlertPolicy, body=body)


def alert_policy_clear(queue_id: str) -> Call[None]:
    return Call[None]("DELETE", f"/v1/alert-policy/queues/{_id(queue_id)}")


def contact_front(contact_id: str) -> Call[ContactPrioritized]:
    return Call[ContactPrioritized]("POST", f"/v1/contacts/{_id(contact_id)}/front", ContactPrioritized)


def contact_pull(contact_id: str, agent: str | None) -> Call[ContactPrioritized]:
    body = {} if agent is None else {"agent": agent}
    return Call[ContactPrioritized](
        "POST", f"/v1/contacts/{_id(contact_id)}/pull", ContactPrioritized, body=body
    )


def contact_move(contact_id: str, queue: str) -> Call[ContactMoved]:
    return Call[ContactMoved](
        "POST", f"/v1/contacts/{_id(contact_id)}/queue", ContactMoved, body={"queue": queue}
    )


def desk_settings_get() -> Call[DeskSettings]:
    return Call[DeskSettings]("GET", "/v1/desk-settings", DeskSettings)


def desk_settings_put(settings: DeskSettings) -> Call[DeskSettings]:
    body = {
        "dispositions": [{"code": c.code, "label": c.label} for c in settings.dispositions],
        "away_reasons": [{"code": c.code, "label": c.label} for c in settings.away_reasons],
        "wrap_up_form_extends": settings.wrap_up_form_extends,
    }
    return Call[DeskSettings]("PUT", "/v1/desk-settings", DeskSettings, body=body)


def tenant_settings_get() -> Call[TenantSettings]:
    return Call[TenantSettings]("GET", "/v1/me/settings", TenantSettings)


def tenant_settings_patch(
    *,
    agent_grace_seconds: int | None = None,
    timezone: str | None = None,
    language: str | None = None,
    monitor_notice: str | None = None,
) -> Call[TenantSettings]:
    body = {
        k: v
        for k, v in (
            ("agent_grace_seconds", agent_grace_seconds),
            ("timezone", timezone),
            ("language", language),
            ("monitor_notice", monitor_notice),
        )
        if v is not None
    }
    return Call[TenantSettings]("PATCH", "/v1/me/settings", TenantSettings, body=body)


def contacts_page(
    *,
    since: datetime | str | None,
    queue: str | None,
    agent: str | None,
    caller: str | None,
    limit: int | None,
    cursor: str | None,
) -> Call[Page[ContactSummary]]:
    params: dict[str, str] = {}
    if since is not None:
        params["since"] = _timestamp(since)
    for name, value in (("queue", queue), ("agent", agent), ("caller", caller)):
        if value is not None:
            params[name] = value
    if limit is not None:
        params["limit"] = str(limit)
    if cursor:
        params["cursor"] = cursor
    return Call[Page[ContactSummary]]("GET", "/v1/contacts", Page[ContactSummary], params=params or None)


def contacts_export(start: datetime | str | None, end: datetime | str | None) -> Call[bytes]:
    """The CSV export (streamed by the clients, not decoded)."""
    params: dict[str, str] = {}
    if start is not None:
        params["from"] = _timestamp(start)
    if end is not None:
        params["to"] = _timestamp(end)
    return Call[bytes]("GET", "/v1/exports/contacts.csv", None, params=params or None)


def contact_get(contact_id: str) -> Call[Contact]:
    return Call[Contact]("GET", f"/v1/contacts/{_id(contact_id)}", Contact)


def recordings_page(
    *,
    since: datetime | str | None,
    until: datetime | str | None,
    queue: str | None,
    agent: str | None,
    number: str | None,
    contact: str | None,
    limit: int | None,
    cursor: str | None,
    kind: str | None = None,
) -> Call[Page[Recording]]:
    params: dict[str, str] = {}
    for name, when in (("since", since), ("until", until)):
        if when is not None:
            params[name] = _timestamp(when)
    pairs = (("queue", queue), ("agent", agent), ("number", number), ("contact", contact), ("kind", kind))
    for name, value in pairs:
        if value is not None:
            params[name] = value
    if limit is not None:
        params["limit"] = str(limit)
    if cursor:
        params["cursor"] = cursor
    return Call[Page[Recording]]("GET", "/v1/recordings", Page[Recording], params=params or None)


def recording_get(recording_id: str) -> Call[Recording]:
    return Call[Recording]("GET", f"/v1/recordings/{_id(recording_id)}", Recording)


def recording_conversation(recording_id: str) -> Call[Conversation]:
    return Call[Conversation]("GET", f"/v1/recordings/{_id(recording_id)}/conversation", Conversation)


def recording_url(recording_id: str, format: str = "wav") -> Call[RecordingUrl]:
    query = "" if format == "wav" else f"?format={format}"
    return Call[RecordingUrl]("GET", f"/v1/recordings/{_id(recording_id)}/url{query}", RecordingUrl)


def recording_delete(recording_id: str) -> Call[None]:
    return Call[None]("DELETE", f"/v1/recordings/{_id(recording_id)}")


def contact_monitor(
    contact_id: str, mode: str, leg_id: str | None, phone: str | None = None
) -> Call[MonitorSession]:
    body: dict[str, str] = {"mode": mode}
    if leg_id is not None:
        body["leg_id"] = leg_id
    if phone is not None:
        body["phone"] = phone
    return Call[MonitorSession]("POST", f"/v1/contacts/{_id(contact_id)}/monitor", MonitorSession, body=body)


def recording_pause(recording_id: str, pause: bool) -> Call[Recording]:
    action = "pause" if pause else "resume"
    return Call[Recording]("POST", f"/v1/recordings/{_id(recording_id)}/{action}", Recording)


def agent_dial(id: str, to: str, caller_id: str | None, queue: str | None) -> Call[dict[str, Any]]:
    body: dict[str, Any] = {"to": to}
    if caller_id is not None:
        body["caller_id"] = caller_id
    if queue is not None:
        body["queue"] = queue
    return Call[dict[str, Any]]("POST", f"/v1/agents/{_id(id)}/dial", dict[str, Any], body=body)


def do_not_call_list() -> Call[dict[str, Any]]:
    return Call[dict[str, Any]]("GET", "/v1/do-not-call", dict[str, Any])


def do_not_call_add(e164: str, note: str) -> Call[dict[str, Any]]:
    return Call[dict[str, Any]]("POST", "/v1/do-not-call", dict[str, Any], body={"e164": e164, "note": note})


def do_not_call_remove(e164: str) -> Call[None]:
    return Call[None]("DELETE", f"/v1/do-not-call/{quote(e164, safe='')}")


def calling_settings_get() -> Call[dict[str, Any]]:
    return Call[dict[str, Any]]("GET", "/v1/calling-settings", dict[str, Any])


def calling_settings_put(settings: dict[str, Any]) -> Call[dict[str, Any]]:
    return Call[dict[str, Any]]("PUT", "/v1/calling-settings", dict[str, Any], body=settings)


def recording_settings_get() -> Call[dict[str, Any]]:
    return Call[dict[str, Any]]("GET", "/v1/recording-settings", dict[str, Any])


def recording_settings_put(
    recording_percent: int,
    retention_days: int | None,
    opus_copy: bool = False,
    announcement: str | None = None,
) -> Call[dict[str, Any]]:
    body = {
        "recording_percent": recording_percent,
        "retention_days": retention_days,
        "opus_copy": opus_copy,
        "announcement": announcement,
    }
    return Call[dict[str, Any]]("PUT", "/v1/recording-settings", dict[str, Any], body=body)


def recording_key_rotate() -> Call[dict[str, Any]]:
    return Call[dict[str, Any]]("POST", "/v1/recording-settings/rotate-key", dict[str, Any])


def recording_hold(recording_id: str, hold: bool) -> Call[Recording]:
    return Call[Recording](
        "POST" if hold else "DELETE", f"/v1/recordings/{_id(recording_id)}/hold", Recording
    )


def widget_token(public_key: str, queue: str) -> Call[WidgetToken]:
    # Public: the widget key is the credential, no API key is sent.
    return Call[WidgetToken](
        "POST", "/v1/widget/token", WidgetToken, body={"key": public_key, "queue": queue}, auth=False
    )


def realtime(kind: str) -> Call[dict[str, Any]]:
    """`queues` or `agents`: the real-time view (docs/reporting.md)."""
    if kind not in ("queues", "agents"):
        raise ValueError("realtime views are 'queues' and 'agents'")
    return Call[dict[str, Any]]("GET", f"/v1/realtime/{kind}", dict[str, Any])


def realtime_feed_url(base_url: str) -> str:
    """The websocket URL of the live feed for an http(s) API URL."""
    scheme, _, rest = base_url.rstrip("/").partition("://")
    ws = {"http": "ws", "https": "wss"}.get(scheme)
    if ws is None:
        raise ValueError(f"the API URL {base_url!r} must start with http:// or https://")
    return f"{ws}://{rest}/v1/realtime/feed"


def report(
    kind: str,
    *,
    start: datetime | str | None,
    end: datetime | str | None,
    interval: str,
    ids: list[str] | None,
    cursor: str | None = None,
    limit: int | None = None,
) -> Call[dict[str, Any]]:
    """An interval report: `queues`, `agents`, `ivr` or `sites` (docs/reporting.md). The agent report comes a
    page of agents at a time: `cursor` is the previous page's `page.next_cursor`, `limit` its size."""
    if kind not in ("queues", "agents", "ivr", "sites"):
        raise ValueError("reports are 'queues', 'agents', 'ivr' and 'sites'")
    if (cursor is not None or limit is not None) and kind != "agents":
        raise ValueError("only the agent report is paged")
    params: dict[str, Any] = {"interval": interval}
    if cursor is not None:
        params["cursor"] = cursor
    if limit is not None:
        params["limit"] = limit
    if start is not None:
        params["from"] = _timestamp(start)
    if end is not None:
        params["to"] = _timestamp(end)
    if ids:
        params["ids"] = ",".join(ids)
    return Call[dict[str, Any]]("GET", f"/v1/reports/{kind}", dict[str, Any], params=params)


def agents_csv(
    *, start: datetime | str | None, end: datetime | str | None, interval: str, ids: list[str] | None
) -> Call[bytes]:
    """The whole agent report as CSV (streamed by the clients, not decoded)."""
    call = report("agents", start=start, end=end, interval=interval, ids=ids)
    return Call[bytes]("GET", "/v1/reports/agents.csv", None, params=call.params)


def forecast(
    queue_id: str,
    *,
    first_day: date | str | None,
    days: int,
    interval: str,
    weeks: int,
    target: tuple[int, int] | None,
    shrinkage: float,
) -> Call[dict[str, Any]]:
    params: dict[str, Any] = {"queue": queue_id, "days": days, "interval": interval, "weeks": weeks}
    if first_day is not None:
        params["from"] = first_day.isoformat() if isinstance(first_day, date) else first_day
    if target is not None:
        params["target"] = f"{target[0]}/{target[1]}"
    if shrinkage:
        params["shrinkage"] = shrinkage
    return Call[dict[str, Any]]("GET", "/v1/reports/forecast", dict[str, Any], params=params)


def replay(
    queue_id: str, *, agents: list[int], start: datetime | str | None, end: datetime | str | None
) -> Call[dict[str, Any]]:
    params: dict[str, Any] = {"queue": queue_id, "agents": ",".join(str(n) for n in agents)}
    if start is not None:
        params["from"] = _timestamp(start)
    if end is not None:
        params["to"] = _timestamp(end)
    return Call[dict[str, Any]]("GET", "/v1/reports/replay", dict[str, Any], params=params)


def webhook_create(url: str, events: list[str] | None) -> Call[dict[str, Any]]:
    body: dict[str, Any] = {"url": url}
    if events:
        body["events"] = events
    return Call[dict[str, Any]]("POST", "/v1/webhooks", dict[str, Any], body=body)


def webhook_list() -> Call[dict[str, Any]]:
    return Call[dict[str, Any]]("GET", "/v1/webhooks", dict[str, Any])


def webhook_delete(webhook_id: str) -> Call[None]:
    return Call[None]("DELETE", f"/v1/webhooks/{_id(webhook_id)}")


def webhook_deliveries(status: str | None, limit: int | None) -> Call[dict[str, Any]]:
    params = {k: str(v) for k, v in (("status", status), ("limit", limit)) if v is not None}
    return Call[dict[str, Any]]("GET", "/v1/webhooks/deliveries", dict[str, Any], params=params or None)


def webhook_replay(delivery_id: str) -> Call[dict[str, Any]]:
    return Call[dict[str, Any]]("POST", f"/v1/webhooks/deliveries/{_id(delivery_id)}/replay", dict[str, Any])
