"""`switchboard up --workers contacts=2,ivr=2,routing=2`: N supervised processes per service, each told its
place (SB_WORKER_COUNT, SB_WORKER_INDEX, a stable worker id) in the form the services read it; bad values
are refused with a message; without the flag, one process each as before. Plus the lease assignment's pure
parts (home partitions, the environment a worker reads)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from services.kernel.partitioned import Partitioning, home_partitions, token_partition
from services.runtime import cli
from services.runtime.runtime import Options, child_names, worker_specs


def test_worker_specs_give_each_process_its_index_and_a_stable_id() -> None:
    env = {"SB_NATS_URL": "nats://127.0.0.1:4222", "SB_CONTACTS_DURABLE": "contacts"}
    specs = worker_specs("contacts", env, 3)
    assert [s.name for s in specs] == ["contacts-1", "contacts-2", "contacts-3"]
    placed = [Partitioning.from_env("contacts", s.env) for s in specs]
    assert [(p.index, p.workers, p.count, p.worker_id) for p in placed if p] == [
        (0, 3, 16, "contacts-1"),
        (1, 3, 16, "contacts-2"),
        (2, 3, 16, "contacts-3"),
    ]
    assert all(s.argv == [sys.executable, "-m", "services.contacts"] for s in specs)
    routing = worker_specs("routing", env, 2)
    assert [s.env["SB_ROUTING_WORKER_ID"] for s in routing] == ["routing-1", "routing-2"]
    assert env == {"SB_NATS_URL": "nats://127.0.0.1:4222", "SB_CONTACTS_DURABLE": "contacts"}


def test_child_names_expand_only_the_services_given_workers() -> None:
    opts = Options(
        data_dir=Path("/tmp/x"),
        services=("api", "routing", "ivr", "contacts"),
        workers=(("contacts", 2), ("routing", 2), ("ivr", 1)),
    )
    assert child_names(opts) == ["api", "routing-1", "routing-2", "ivr", "contacts-1", "contacts-2"]


def test_workers_option(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Options] = []
    monkeypatch.setattr(cli, "run", lambda opts: seen.append(opts) or 0)
    runner = CliRunner()
    result = runner.invoke(cli.up, ["--workers", "contacts=2,ivr=3,routing=2"])
    assert result.exit_code == 0, result.output
    assert seen[-1].workers == (("contacts", 2), ("ivr", 3), ("routing", 2))
    assert runner.invoke(cli.up, []).exit_code == 0 and seen[-1].workers == ()
    for bad, says in [
        ("media=2", "NAME one of contacts, ivr, routing"),
        ("contacts", "NAME=N"),
        ("contacts=two", "whole number"),
        ("ivr=0", "1 to 16"),
        ("routing=17", "1 to 16"),
    ]:
        result = runner.invoke(cli.up, ["--workers", bad])
        assert result.exit_code == 2 and says in result.output, (bad, result.output)


def test_home_partitions_cover_every_partition_once() -> None:
    for workers in (1, 2, 3, 5):
        homes = [home_partitions(i, workers, 16) for i in range(workers)]
        assert sorted(p for h in homes for p in h) == list(range(16))
        assert max(map(len, homes)) - min(map(len, homes)) <= 1


def test_partitioning_from_env_is_off_by_default_and_refuses_nonsense() -> None:
    assert Partitioning.from_env("contacts", {}) is None
    part = Partitioning.from_env("contacts", {"SB_WORKER_COUNT": "2", "SB_WORKER_INDEX": "1"})
    assert part is not None and part.stream() == "SBP_contacts"
    tenant = "6f1c1f4e-8d8e-4c4e-9a53-3c1d1f3f0e11"
    assert part.owner_of(tenant) == token_partition(tenant, 16)
    for env in (
        {"SB_WORKER_COUNT": "2", "SB_WORKER_INDEX": "2"},
        {"SB_WORKER_COUNT": "0"},
        {"SB_WORKER_COUNT": "4", "SB_PARTITION_COUNT": "2"},
        {"SB_WORKER_COUNT": "x"},
    ):
        with pytest.raises(ValueError):
            Partitioning.from_env("contacts", env)
    with pytest.raises(ValueError, match="letters, digits"):
        Partitioning.from_env("con.tacts", {"SB_WORKER_COUNT": "1"})
