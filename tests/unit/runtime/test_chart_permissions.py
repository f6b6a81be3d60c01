"""The chart's NATS allow lists are the ones `switchboard up` gives (services/runtime/bususers.py), and
`--nats-conf` prints them as users for an operator's own NATS."""

from __future__ import annotations

import hashlib
import io
import json

import bcrypt
import pytest
import yaml

from services.runtime.bususers import BUS_SERVICES, permissions
from services.runtime.chart_permissions import CHART_PERMISSIONS, main, password_variable, permissions_json


def test_committed_chart_permissions_equal_grants() -> None:
    committed = CHART_PERMISSIONS.read_text()
    assert committed == permissions_json(), (
        "charts/switchboard/files/nats-permissions.json is stale: run `python -m services.runtime.chart_permissions`"
    )
    data = json.loads(committed)
    assert list(data) == list(BUS_SERVICES)
    for service in BUS_SERVICES:
        assert data[service] == permissions(service)
        assert f"sb.*.cmd.{service}.>" in data[service]["subscribe"]["allow"]


def test_nats_conf_prints_every_services_user_with_its_grants_and_writes_nothing(
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = CHART_PERMISSIONS.stat().st_mtime_ns
    assert main(["--nats-conf", "--routing-partitions", "32"]) == 0
    printed = capsys.readouterr().out
    assert CHART_PERMISSIONS.stat().st_mtime_ns == before
    lines = [line.strip() for line in printed.splitlines() if line.strip().startswith('{"user"')]
    assert len(lines) == len(BUS_SERVICES)
    for service, line in zip(BUS_SERVICES, lines, strict=True):
        # The password is a variable the operator defines; the rest is JSON.
        variable = f"${password_variable(service)}"
        user = json.loads(line.replace(variable, json.dumps(variable)))
        assert user == {"user": service, "password": variable, "permissions": permissions(service)}
    assert "{{partition(32,1)}}" in printed


def test_nats_conf_refuses_a_partition_count_routing_would_refuse(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--nats-conf", "--routing-partitions", "0"])
    assert exited.value.code == 2
    assert "--routing-partitions: must be 1-1024, got 0" in capsys.readouterr().err


def test_nats_hashes_prints_values_the_chart_takes_for_the_token_on_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    token = "nats-token-0123456789"
    monkeypatch.setattr("sys.stdin", io.StringIO(token + "\n"))
    assert main(["--nats-hashes"]) == 0
    hashes = yaml.safe_load(capsys.readouterr().out)["natsPasswordHashes"]
    assert list(hashes) == list(BUS_SERVICES)
    # The chart's switchboard.natsPassword derivation; one check (cost 10) is enough for the formula.
    api = hashlib.sha256(f"nats-user|api|{token}".encode()).hexdigest()
    assert bcrypt.checkpw(api.encode(), hashes["api"].encode())
    assert not bcrypt.checkpw(api.encode(), hashes["media"].encode())


def test_nats_hashes_refuses_a_token_the_chart_would_refuse(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("too short\n"))
    with pytest.raises(SystemExit) as exited:
        main(["--nats-hashes"])
    assert exited.value.code == 2
    assert "stdin must hold natsToken" in capsys.readouterr().err
