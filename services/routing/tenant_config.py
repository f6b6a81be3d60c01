"""Load a tenant's routing configuration (sites, queues, agents, seats) from PostgreSQL for the core.

Ids are the control-plane UUIDs as strings. An agent is a member of every queue whose required skills it
has at all (the core then applies the minimum proficiency); a queue without skills takes every agent.
Languages become the agent attribute `language`, so a contact can require {"language": "es"}.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

import asyncpg

from services.kernel.db import tenant_tx

from .core import AgentProfile, QueueConfig, SiteConfig, TenantConfig
from .core.model import PROFICIENCY_MAX

__all__ = ["LoadedConfig", "load_tenant_config"]


@dataclass
class LoadedConfig:
    config: TenantConfig
    queue_ids_by_name: dict[str, str] = field(default_factory=dict)
    default_priority: dict[str, int] = field(default_factory=dict)  # queue id -> priority of its contacts
    exists: bool = True  # False: the tenant is unknown (deleted, or never created)


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


async def load_tenant_config(pool: asyncpg.Pool, tenant_id: uuid.UUID) -> LoadedConfig:
    async with tenant_tx(pool, tenant_id, readonly=True) as conn:
        tenant = await conn.fetchrow(
            "SELECT seats_purchased, agent_grace_seconds FROM tenants WHERE id = $1", tenant_id
        )
        site_rows = await conn.fetch("SELECT id, name FROM sites ORDER BY id")
        queue_rows = await conn.fetch(
            "SELECT id, name, skills, priority, wrap_up_seconds, offer_timeout_seconds, site_id FROM queues ORDER BY id"
        )
        agent_rows = await conn.fetch("SELECT id, site_id, skills, languages FROM agents ORDER BY id")
    if tenant is None:
        return LoadedConfig(config=TenantConfig(seats=0), exists=False)
    sites = [SiteConfig(site_id=str(r["id"]), name=r["name"]) for r in site_rows]
    queues: list[QueueConfig] = []
    names: dict[str, str] = {}
    priorities: dict[str, int] = {}
    for r in queue_rows:
        qid = str(r["id"])
        queues.append(
            QueueConfig(
                queue_id=qid,
                skills=_skills(r["skills"]),
                wrap_up_s=float(r["wrap_up_seconds"]),
                offer_timeout_s=float(r["offer_timeout_seconds"]),
                preferred_site_id=str(r["site_id"]) if r["site_id"] else None,
            )
        )
        names[r["name"]] = qid
        priorities[qid] = int(r["priority"])
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
            )
        )
    config = TenantConfig(
        seats=int(tenant["seats_purchased"]),
        link_grace_s=float(tenant["agent_grace_seconds"]),
        sites=sites,
        queues=queues,
        agents=agents,
    )
    return LoadedConfig(config=config, queue_ids_by_name=names, default_priority=priorities)
