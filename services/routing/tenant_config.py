"""Load a tenant's routing configuration (sites, queues, agents, seats) from PostgreSQL for the core.

Ids are the control-plane UUIDs as strings. An agent is a member of every queue whose required skills it
has at all (the core then applies the minimum proficiency); a queue without skills takes every agent.
Languages become the agent attribute `language`, so a contact can require {"language": "es"}.
A queue's rules (strategy, overflow, hours and holidays in the tenant's time zone, closed target, priority
rules, spill thresholds) come from its columns as the API stored them (services/api/queue_rules.py); a rule
naming a queue that no longer exists is left out rather than refusing the whole configuration.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from services.kernel.db import tenant_tx

from .core import AgentProfile, QueueConfig, SiteConfig, TenantConfig
from .core.model import PROFICIENCY_MAX, Channel, OverflowRule, PriorityRule, Strategy
from .core.schedule import WEEKDAYS, Schedule, validate_schedule

__all__ = ["LoadedConfig", "load_tenant_config"]

# Per channel; only the voicemail capacity is configured per agent so far (agents.voicemail_capacity).
DEFAULT_CAPACITY = AgentProfile(agent_id="default").capacity


@dataclass
class LoadedConfig:
    config: TenantConfig
    queue_ids_by_name: dict[str, str] = field(default_factory=dict)
    exists: bool = True  # False: the tenant is unknown (deleted, or never created)
    drained_sites: frozenset[str] = frozenset()


def _skills(raw: object) -> dict[str, int]:
    value = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(value, dict):
        return {}
    out: dict[str, int] = {}
    for name, level in value.items():
        if isinstance(level, int) and not isinstance(level, bool):
            # The API allows 0 ("knows of it"); the core's proficiencies are 1-10.
            out[str(name)] = max(1, min(PROFICIENCY_MAX, level))
    return out


def _json(raw: object) -> Any:
    return json.loads(raw) if isinstance(raw, str) else raw


def _schedule(hours: object, holidays: list[object], tz: str) -> Schedule | None:
    """Hours {"mon": ["09:00-17:00"]} and holiday dates as the core's Schedule; no hours (null) but
    holidays: open all day on every other day; {}: never open. None (always open) when neither is set or the stored value is not
    usable (the API refuses such values; a queue is not closed by a bad row)."""
    spans = _json(hours)
    if spans is None and not holidays:
        return None  # {} is not None: no window on any day, closed
    windows: dict[str, list[tuple[str, str]]]
    if isinstance(spans, dict):
        windows = {
            day: [_span(w) for w in ws if isinstance(w, str) and "-" in w]
            for day, ws in spans.items()
            if isinstance(ws, list)
        }
    else:
        windows = {day: [("00:00", "24:00")] for day in WEEKDAYS}
    schedule = Schedule(tz=tz, hours=windows, closed_dates=[str(d) for d in holidays])
    return None if validate_schedule(schedule) else schedule


def _span(window: str) -> tuple[str, str]:
    start, _, end = window.partition("-")
    return start, end


def _queue(r: asyncpg.Record, tz: str, queue_ids: set[str]) -> QueueConfig:
    qid = str(r["id"])
    overflow = [
        OverflowRule(
            target_queue_id=str(rule["target_queue_id"]),
            after_s=rule.get("after_seconds"),
            expected_wait_over_s=rule.get("expected_wait_over_seconds"),
        )
        for rule in _json(r["overflow"]) or []
        if str(rule.get("target_queue_id")) in queue_ids - {qid}
    ]
    priority_rules = [
        PriorityRule(attribute=rule["attribute"], equals=rule["equals"], raise_by=int(rule["raise_by"]))
        for rule in _json(r["priority_rules"]) or []
    ]
    closed = r["closed_queue_id"]
    return QueueConfig(
        queue_id=qid,
        strategy=Strategy(r["strategy"]),
        skills=_skills(r["skills"]),
        overflow=overflow,
        priority_rules=priority_rules,
        schedule=_schedule(r["hours"], list(r["holidays"] or []), tz),
        closed_target_queue_id=str(closed) if r["closed_treatment"] == "queue" and closed else None,
        wrap_up_s=float(r["wrap_up_seconds"]),
        offer_timeout_s=float(r["offer_timeout_seconds"]),
        preferred_site_id=str(r["site_id"]) if r["site_id"] else None,
        site_spill_after_s=r["spill_after_seconds"],
        site_spill_expected_wait_s=r["spill_expected_wait_seconds"],
        default_priority=int(r["priority"]),
    )


async def load_tenant_config(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> LoadedConfig:
    async with tenant_tx(pool, tenant_id, readonly=True) as conn:
        tenant = await conn.fetchrow(
            "SELECT seats_purchased, agent_grace_seconds, timezone FROM tenants WHERE id = $1", tenant_id
        )
        site_rows = await conn.fetch("SELECT id, name, drained_at FROM sites ORDER BY id")
        queue_rows = await conn.fetch(
            """SELECT id, name, skills, priority, wrap_up_seconds, offer_timeout_seconds, site_id, strategy,
                      overflow, hours, holidays, closed_treatment, closed_queue_id, priority_rules,
                      spill_after_seconds, spill_expected_wait_seconds
               FROM queues ORDER BY id"""
        )
        agent_rows = await conn.fetch(
            "SELECT id, site_id, skills, languages, voicemail_capacity FROM agents ORDER BY id"
        )
    if tenant is None:
        return LoadedConfig(config=TenantConfig(seats=0), exists=False)
    sites = [SiteConfig(site_id=str(r["id"]), name=r["name"]) for r in site_rows]
    queue_ids = {str(r["id"]) for r in queue_rows}
    queues = [_queue(r, tenant["timezone"], queue_ids) for r in queue_rows]
    names = {r["name"]: str(r["id"]) for r in queue_rows}
    agents: list[AgentProfile] = []
    for r in agent_rows:
        skills = _skills(r["skills"])
        member_of = [q.queue_id for q in queues if all(s in skills for s in q.skills)]
        languages = list(r["languages"] or [])
        agents.append(
            AgentProfile(
                agent_id=str(r["id"]),
                site_id=str(r["site_id"]) if r["site_id"] else None,
                queues=member_of,
                skills=skills,
                attributes={"language": languages} if languages else {},
                capacity={**DEFAULT_CAPACITY, Channel.VOICEMAIL: int(r["voicemail_capacity"])},
            )
        )
    config = TenantConfig(
        seats=int(tenant["seats_purchased"]),
        link_grace_s=float(tenant["agent_grace_seconds"]),
        sites=sites,
        queues=queues,
        agents=agents,
    )
    drained = frozenset(str(r["id"]) for r in site_rows if r["drained_at"] is not None)
    return LoadedConfig(config=config, queue_ids_by_name=names, drained_sites=drained)
