"""SIP trunks' request handling without a database (tests/unit/api/harness.py); stored digests, name clashes
and the edge's use of trunks are in tests/integration/api/test_api_trunks.py."""

from __future__ import annotations

import uuid

import pytest

from services.api.auth import Role
from services.api.trunks import TrunkController

from .harness import harness, problem

GOOD = {"name": "carrier", "allowed_ips": ["203.0.113.0/24"]}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "allowed_ips": ["not-an-ip"]}, "allowed_ips[0]"),
        ({**GOOD, "allowed_ips": ["fe80::1%eth0"]}, "allowed_ips[0]"),
        ({**GOOD, "username": "pbx", "password": "short"}, "password"),
        ({**GOOD, "outbound_port": 5070}, "outbound_port"),
        ({**GOOD, "outbound_transport": "carrier-pigeon"}, "outbound_transport"),
        ({"name": "carrier"}, ""),  # neither addresses, credentials nor an outbound host: useless
    ],
)
def test_a_bad_trunk_is_refused_before_any_change(body: dict[str, object], field: str) -> None:
    with harness(TrunkController) as h:
        assert field in str(h.refused(h.client.post("/v1/trunks", json=body), 422))


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": None, "password": "a-long-password"}, "username"),
        ({"username": "pbx"}, "password"),
        ({"realm": "example.com"}, "password"),
    ],
)
def test_credential_changes_that_cannot_be_made_are_refused(body: dict[str, object], field: str) -> None:
    with harness(TrunkController) as h:
        assert field in str(h.refused(h.client.patch(f"/v1/trunks/{uuid.uuid4()}", json=body), 422))


def test_good_trunk_requests_reach_the_change() -> None:
    with harness(TrunkController) as h:
        created = {
            **GOOD,
            "username": "pbx",
            "password": "a-long-password",
            "outbound_host": "sip.example.com",
        }
        assert h.client.post("/v1/trunks", json=created).status_code == 202
        assert h.client.patch(f"/v1/trunks/{uuid.uuid4()}", json={"username": None}).status_code == 202
        assert h.client.delete(f"/v1/trunks/{uuid.uuid4()}").status_code == 202
        assert h.reached() == 3


def test_trunk_ids_and_roles() -> None:
    with harness(TrunkController) as h:
        problem(h.client.get("/v1/trunks/carrier"), 404)
    with harness(TrunkController, role=Role.SUPERVISOR) as h:
        h.refused(h.client.post("/v1/trunks", json=GOOD), 403)
