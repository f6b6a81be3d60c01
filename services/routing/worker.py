"""The routing worker: which tenants it owns (partitions), the bus subscriptions, one TenantRunner each.

Partitioning is done by the NATS server (partitions.py): its subject mapping delivers a command published to
sb.<tenant>.cmd.routing.<command> on sb.sys.routing.cmd.<partition>.<tenant>.<command>, the partition
being the server's `partition(N, 1)` over the tenant token (N = `SB_ROUTING_PARTITION_COUNT`). A worker is
configured with the partitions it serves (`SB_ROUTING_PARTITIONS`, e.g. "0-7" or "all") and owns a
partition only while it holds its lease: the key `n<N>.p<k>` in the JetStream KV bucket `sb_routing_owners`
(TTL 3 s), refreshed every second with a compare-and-set on the revision (services/kernel/partitioned.py's
Leases). It subscribes to a partition's mapped subject when it wins the lease and unsubscribes when it loses
or releases it, so it receives only its own tenants' commands and each tenant's engine lives in exactly one
worker. When the owner dies its lease expires and another worker configured with the partition takes it,
recovers those tenants from SB_ROUTING (snapshot + journal) and answers from then on.

Which worker takes what: without SB_WORKER_COUNT every configured partition is the worker's home (a standby
with the same partitions waits for the leases). With SB_WORKER_COUNT=n and SB_WORKER_INDEX=i (`switchboard
up --workers routing=n`, the chart's replicas) worker i's home is the partitions k with k % n == i: the
workers share the tenants, each takes over the others' partitions when they die and gives them back when
they return; with SB_WORKER_INDEX=auto, i and n come from the live workers (the chart's Deployment). A worker
restarted under the same `SB_ROUTING_WORKER_ID` takes its home leases back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import asyncpg
from nats.aio.subscription import Subscription

from services.kernel import events as ev
from services.kernel.bus import Bus
from services.kernel.log import get_logger
from services.kernel.messages import Command, Reply, ReplyCode
from services.kernel.metrics import figure_gauge, read_before_beats
from services.kernel.partitioned import Leases
from services.kernel.serving import Later, Listener, Server

from .core.agent import AgentState
from .core.contact import ContactState
from .journal import Journal
from .partitions import MAPPED_PREFIX, parse_mapped, partition_of, partition_subject, token_partition
from .tenant import TenantRunner
from .translate import BUS_COMMANDS

__all__ = ["RoutingWorker", "parse_partitions", "partition_of"]

OWNERS_BUCKET = "sb_routing_owners"


def parse_partitions(spec: str, count: int) -> list[int]:
    """ "all", "3", "0-7" or "0,2,5-6" -> sorted partition numbers; ValueError when out of range."""
    spec = spec.strip()
    if spec in ("", "all"):
        return list(range(count))
    out: set[int] = set()
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        first, last = int(lo), int(hi or lo)
        if not 0 <= first <= last < count:
            raise ValueError(f"partition range {part!r} is outside 0-{count - 1}")
        out.update(range(first, last + 1))
    return sorted(out)


AGENTS = figure_gauge(
    "routing_agents", "Signed-in agents of the tenants this process routes, by state", ("state",)
)
CONTACTS = figure_gauge(
    "routing_contacts", "Contacts in the queues of the tenants this process routes, by state", ("state",)
)
TENANTS = figure_gauge("routing_tenants", "Tenants whose routing state this process holds")


class RoutingWorker:
    def __init__(
        self,
        bus: Bus,
        pool: asyncpg.Pool,
        *,
        worker_id: str,
        partitions: list[int],
        partition_count: int,
        runner_options: dict[str, Any] | None = None,
        home: set[int] | None = None,
        auto_home: bool = False,
    ) -> None:
        self.bus = bus
        self.pool = pool
        self.worker_id = worker_id
        self.partitions = partitions
        self.partition_count = partition_count
        self.runner_options = runner_options or {}
        self.journal = Journal(bus.js)
        self.runners: dict[uuid.UUID, TenantRunner] = {}
        self.log = get_logger()
        self._config: Listener | None = None
        self._partition_subs: dict[int, Subscription] = {}
        self._listing: asyncio.Future[set[uuid.UUID]] | None = None
        self._unread: Callable[[], None] | None = None
        # Commands come on the partitions' mapped subjects, subscribed while their leases are ours.
        self.server: Server[Command] = Server(bus, "routing", dict.fromkeys(BUS_COMMANDS, self._handle))
        self.leases = Leases(
            bus,
            name="routing",
            worker_id=worker_id,
            partitions=partitions,
            # auto_home: worker i of the n live ones (SB_WORKER_INDEX=auto); no home: all configured ones.
            home=None if auto_home else set(partitions) if home is None else home & set(partitions),
            on_gain=self._gain,
            on_lose=self._lose,
            count=partition_count,
            bucket=OWNERS_BUCKET,
            # The partition count is part of the key: workers configured with another count never collide.
            key=lambda p: f"n{partition_count}.p{p}",
        )

    def _read_figures(self) -> None:
        agents = dict.fromkeys(AgentState, 0)
        contacts = dict.fromkeys(ContactState, 0)
        for runner in self.runners.values():
            if runner.engine is None:
                continue
            for agent in runner.engine.state.agents.values():
                agents[agent.state] += 1
            for contact in runner.engine.state.contacts.values():
                contacts[contact.state] += 1
        for agent_state, n in agents.items():
            if agent_state is not AgentState.LOGGED_OUT:  # signed-out agents have no record
                AGENTS.labels(agent_state.value).set(n)
        for contact_state, n in contacts.items():
            CONTACTS.labels(contact_state.value).set(n)
        TENANTS.set(len(self.runners))

    @property
    def owned(self) -> dict[int, int]:
        """The partitions whose leases are ours (-> the lease's revision)."""
        return self.leases.owned

    @property
    def serving(self) -> set[int]:
        """The partitions whose commands this worker answers: a lease is owned first, then subscribed."""
        return set(self._partition_subs)

    async def start(self) -> None:
        await self.journal.ensure()
        await self._check_mapping()
        self._config = await self.bus.listen([ev.ConfigChanged, ev.SeatsChanged], self._on_config)
        self._unread = read_before_beats(self._read_figures)
        await self.leases.start()

    async def stop(self) -> None:
        # Bounded waits throughout: stopping must finish even when NATS is slow or gone.
        if self._unread is not None:
            self._unread()
        await self.leases.freeze()
        for p in list(self._partition_subs):
            await self._unsubscribe(p)
        await self.server.stop()
        if self._config is not None:
            await self._config.stop()
        for runner in self.runners.values():
            await runner.stop()
        # Hand the partitions over at once instead of letting the leases expire.
        await self.leases.stop()

    async def _check_mapping(self) -> None:
        """Warn loudly when the server does not map routing commands as this worker expects (an external
        NATS without the mapping, or another partition count): commands would then reach no worker."""
        probe = f"mapping-check-{uuid.uuid4().hex}"  # not a tenant id: workers drop it
        expected = f"{MAPPED_PREFIX}.{token_partition(probe, self.partition_count)}.{probe}.check"
        sub = await self.bus.nc.subscribe(f"{MAPPED_PREFIX}.*.{probe}.check", max_msgs=1)
        try:
            await self.bus.nc.publish(f"sb.{probe}.cmd.routing.check", b"")
            msg = await sub.next_msg(timeout=2.0)
            ok = msg.subject == expected
        except TimeoutError:
            ok = False
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        if not ok:
            self.log.error(
                "routing_mapping_missing",
                error="NATS does not map sb.*.cmd.routing.* onto the routing partitions"
                f" ({self.partition_count}); configure the mapping (docs/operators.md)",
            )

    # -- ownership ------------------------------------------------------------------------------------

    async def _gain(self, p: int) -> None:
        if p not in self._partition_subs:
            # Commands arriving before the partition's tenants are recovered wait in their runners' inboxes.
            self._partition_subs[p] = await self.server.subscribe(
                partition_subject(p),
                queue=None,
                accept=lambda subject, data: self._accept(subject, data),
                parse=_tenant_command,
            )
        self.log.debug("routing_partition_owned", partition=p, worker=self.worker_id)
        await self._recover_partitions({p})

    async def _unsubscribe(self, p: int) -> None:
        sub = self._partition_subs.pop(p, None)
        if sub is not None:
            await self.server.unsubscribe(sub)

    async def _journal_tenants(self) -> set[uuid.UUID]:
        """The journaled tenants; partitions taken together (at start, a dead worker's) share one listing."""
        if self._listing is None or self._listing.done():
            self._listing = asyncio.ensure_future(self.journal.tenants())
        return await asyncio.shield(self._listing)

    async def _recover_partitions(self, parts: set[int]) -> None:
        tenants = [t for t in await self._journal_tenants() if partition_of(t, self.partition_count) in parts]
        for tenant_id in tenants:
            self._runner(tenant_id)
        try:
            # One after the other rather than a gather: a gather under wait_for, cancelled by a stop, ends
            # with a CancelledError that nobody retrieves (logged by asyncio when it is collected).
            await asyncio.wait_for(_all_set([self.runners[t].ready for t in tenants]), 10.0)
        except TimeoutError:
            # The runners keep retrying by themselves; their commands wait in their inboxes meanwhile.
            self.log.warning("routing_recovery_slow", partitions=sorted(parts))

    async def _lose(self, p: int) -> None:
        await self._unsubscribe(p)
        self.log.warning("routing_partition_lost", partition=p, worker=self.worker_id)
        for tenant_id in [t for t in self.runners if partition_of(t, self.partition_count) == p]:
            await self.runners.pop(tenant_id).stop()

    # -- bus ------------------------------------------------------------------------------------------

    def _runner(self, tenant_id: uuid.UUID) -> TenantRunner:
        runner = self.runners.get(tenant_id)
        if runner is None:
            runner = TenantRunner(tenant_id, self.bus, self.journal, self.pool, **self.runner_options)
            self.runners[tenant_id] = runner
            runner.start()
        return runner

    def _owns(self, tenant_id: uuid.UUID) -> bool:
        return partition_of(tenant_id, self.partition_count) in self.owned

    def _accept(self, subject: str, data: bytes) -> bool:
        mapped = parse_mapped(subject)
        if mapped is None:
            return (
                False  # published straight to the mapped namespace with a malformed tenant: nobody serves it
            )
        partition, tenant_id, _ = mapped
        # Not ours: in flight when the partition was lost (its new owner answers the retry), or published
        # straight to the mapped namespace under the wrong partition.
        return partition in self.owned and partition_of(tenant_id, self.partition_count) == partition

    async def _handle(self, command: Command) -> Reply | Later:
        """Into the tenant's inbox; the reply comes when its batch is applied."""
        reply = self._runner(command.tenant_id).submit(command)
        if reply is None:
            error = "too many routing commands pending for this tenant; retry"
            return Reply(ok=False, code=ReplyCode.BUSY, error=error)
        return Later(reply)

    async def _on_config(self, change: ev.ConfigChanged | ev.SeatsChanged) -> None:
        if self._owns(change.tenant_id):
            self._runner(change.tenant_id).reload_config()


def _tenant_command(subject: str) -> tuple[uuid.UUID | None, str] | None:
    mapped = parse_mapped(subject)
    return None if mapped is None else (mapped[1], mapped[2])


async def _all_set(events: list[asyncio.Event]) -> None:
    for event in events:
        await event.wait()
