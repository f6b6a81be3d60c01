# Test harness for the routing core: a hand-stepped clock, automatic command ids, and helpers to read
# what the engine said. No mocks: the engine is the real one.
from __future__ import annotations

import itertools
from typing import Any, TypeVar

from services.routing.core import (
    AgentLogin,
    AgentProfile,
    Channel,
    Configure,
    Engine,
    Enqueue,
    Output,
    QueueConfig,
    Result,
    TenantConfig,
)

T = TypeVar("T", bound=Output)
START = 1_700_000_000.0  # a Tuesday, 22:13 UTC


class Harness:
    def __init__(
        self, config: TenantConfig | None = None, now: float = START, position_interval_s: float = 0.0
    ) -> None:
        # Positions are published at the end of every call here unless a test asks for batching.
        self.engine = Engine(position_interval_s=position_interval_s)
        self.now = now
        self._ids = itertools.count(1)
        self.log: list[Output] = []
        if config is not None:
            self.configure(config)

    def cmd(self, cls: type, **fields: Any) -> Result:
        command = cls(id=fields.pop("id", f"c{next(self._ids)}"), **fields)
        result = self.engine.handle(command, self.now)
        self.log.extend(result.outputs)
        return result

    def ok(self, cls: type, **fields: Any) -> Result:
        result = self.cmd(cls, **fields)
        assert result.ok, result.reply
        return result

    def configure(self, config: TenantConfig) -> Result:
        return self.ok(Configure, config=config)

    def login(self, *agent_ids: str) -> None:
        for agent_id in agent_ids:
            self.ok(AgentLogin, agent_id=agent_id)

    def enqueue(self, contact_id: str, queue_id: str = "q", **fields: Any) -> Result:
        return self.ok(Enqueue, contact_id=contact_id, queue_id=queue_id, **fields)

    def tick(self, seconds: float) -> list[Output]:
        """Advance the clock, firing every timer due on the way at its own time."""
        end = self.now + seconds
        out: list[Output] = []
        while (t := self.engine.next_timer()) is not None and t <= end:
            self.now = max(self.now, t)
            out.extend(self.engine.handle_timer(self.now))
        self.now = end
        out.extend(self.engine.handle_timer(self.now))
        self.log.extend(out)
        return out

    def offers(self, contact_id: str | None = None) -> dict[str, str]:
        """Outstanding offers: contact id -> agent id."""
        st = self.engine.state
        return {
            o.contact_id: o.agent_id
            for o in st.offers.values()
            if contact_id is None or o.contact_id == contact_id
        }

    def where(self, contact_id: str) -> dict[str, Any]:
        found = self.engine.position(contact_id)
        assert found is not None, f"{contact_id} is not routed"
        return found

    def pos(self, contact_id: str) -> int:
        position = self.where(contact_id).get("position")
        assert isinstance(position, int), f"{contact_id} is not in line"
        return position

    def status(self, queue_id: str) -> dict[str, Any]:
        found = self.engine.queue_status(queue_id)
        assert found is not None
        return found

    def offer_id(self, contact_id: str) -> str:
        c = self.engine.state.contacts[contact_id]
        assert c.offer_id is not None, f"{contact_id} is {c.state}"
        return c.offer_id


def of_type(outputs: list[Output], kind: type[T]) -> list[T]:
    return [o for o in outputs if isinstance(o, kind)]


def simple_config(
    agents: list[str] | None = None,
    *,
    seats: int = 100,
    queue: QueueConfig | None = None,
    queues: list[QueueConfig] | None = None,
    profiles: list[AgentProfile] | None = None,
    **tenant: Any,
) -> TenantConfig:
    qs = queues if queues is not None else [queue or QueueConfig(queue_id="q")]
    ps = (
        profiles
        if profiles is not None
        else [
            AgentProfile(agent_id=a, queues=[qs[0].queue_id], capacity={Channel.VOICE: 1, Channel.CHAT: 3})
            for a in (agents or [])
        ]
    )
    return TenantConfig(seats=seats, queues=qs, agents=ps, **tenant)
