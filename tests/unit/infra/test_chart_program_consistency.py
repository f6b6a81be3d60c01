"""The Helm chart and the Pulumi program deploy the same thing: same objects, names, ports, env, probes.

The chart is rendered by helm_lite (no Helm binary here) and compared object by object with the program's
manifests for the same settings; only what must differ (who manages the object, the checksum inputs)
is set aside.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import bcrypt
import pytest
import yaml
from helm_lite import render_objects
from infra_support import CHART_DIR, EXTERNAL_NATS_URLS, GIVEN_HASHES, REQUIRED, nats_users, service_passwords
from switchboard_infra.config import SERVICES, parse_config
from switchboard_infra.manifests import build_manifests
from switchboard_infra.workloads import MIGRATE_SCRIPT, SECRET_ENV

from services.kernel.config import Settings, to_env
from services.runtime.bususers import BUS_SERVICES, permissions

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "nats-cluster": {"nats": {"replicas": 5, "storageClass": "fast-ssd", "syncInterval": "500ms"}},
    "external-nats-node-port": {
        "natsUrl": "tls://sb:pw@nats.example.internal:4222",
        "natsToken": "",
        "sip": {
            "serviceType": "NodePort",
            "nodePort": 30560,
            "annotations": {"metallb.universe.tf/allow-shared-ip": "sip"},
        },
        "networkPolicy": {"natsCidrs": ["10.20.0.0/16", "10.21.0.0/16"], "natsPort": 4443},
    },
    "bundled-nats-given-hashes": {"natsPasswordHashes": GIVEN_HASHES},
    "external-nats-per-service": {"natsUrls": EXTERNAL_NATS_URLS, "natsToken": ""},
    "load-balancer-restricted": {
        "sip": {"loadBalancerSourceRanges": ["203.0.113.0/24"], "rtpPortStart": 16384, "rtpPortEnd": 32767},
        "httpPort": 9000,
        "sipPort": 5080,
        "logLevel": "debug",
        "imagePullSecrets": ["registry-a", "registry-b"],
        "image": {"repository": "registry.example/sb", "tag": "1.2.3", "pullPolicy": "Always"},
    },
    "partitioned": {
        "services": {
            "contacts": {"replicas": 3},
            "ivr": {"replicas": 2},
            "routing": {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}},
        }
    },
    "lean": {
        "migrations": {"enabled": False},
        "databaseAdminUrl": "",
        "podDisruptionBudget": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "services": {
            "api": {"autoscaling": {"enabled": False}, "replicas": 3, "livenessProbe": {}},
            "routing": {
                "autoscaling": {"enabled": True, "minReplicas": 2, "maxReplicas": 4},
                "livenessProbe": {"exec": {"command": ["python", "-c", "pass"]}, "periodSeconds": 60},
            },
            "media": {"resources": {"limits": {"cpu": "3"}}, "terminationGracePeriodSeconds": 1800},
        },
    },
}

_NOT_COMPARED_LABELS = ("app.kubernetes.io/managed-by", "helm.sh/chart")


def _normalise(obj: Any) -> Any:
    """Leave out what must differ between the two tools."""
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            if key == "labels" and isinstance(value, dict):
                value = {k: v for k, v in value.items() if k not in _NOT_COMPARED_LABELS}
            elif key == "annotations" and isinstance(value, dict):
                # Both hash the settings, from different texts; their presence is compared, not their value.
                value = {k: ("<sum>" if k.startswith("checksum/") else v) for k, v in value.items()}
            out[key] = _normalise(value)
        return out
    if isinstance(obj, list):
        return [_normalise(v) for v in obj]
    return obj


def _keyed(objects: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    keyed: dict[tuple[str, str], Any] = {}
    for obj in objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in keyed, f"{key} twice"
        keyed[key] = _normalise(obj)
    return keyed


@functools.cache
def _checks(password: str, hashed: str) -> bool:
    # The program's hashes are the same on every render (cost 10, ~70 ms a check): each is checked once.
    return bcrypt.checkpw(password.encode(), hashed.encode())


def _checked_users(side: dict[tuple[str, str], Any], release: str) -> None:
    """Helm salts bcrypt at random: each user's hash is compared by checking it against the password in that
    service's URL (bcrypt.checkpw), and replaced by the outcome."""
    users_key = ("Secret", f"{release}-nats-users")
    if users_key not in side:
        return
    passwords = service_passwords(side[("Secret", f"{release}-secrets")])
    users = nats_users(side[users_key]["stringData"]["users.conf"])
    assert sorted(users) == sorted(passwords)
    for name, user in users.items():
        user["password"] = "<checks>" if _checks(passwords[name], user["password"]) else "<does not check>"
    side[users_key]["stringData"]["users.conf"] = users


def both(variant: dict[str, Any], release: str = "sb-prod", namespace: str = "contact") -> tuple[dict, dict]:
    values = {**REQUIRED, **copy.deepcopy(variant)}
    chart = _keyed(render_objects(CHART_DIR, values, release=release, namespace=namespace))
    cfg = parse_config({**values, "name": release, "namespace": namespace})
    program = _keyed(build_manifests(cfg, with_namespace=False))
    _checked_users(chart, release)
    _checked_users(program, release)
    return chart, program


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_chart_and_program_render_the_same_objects(variant: str) -> None:
    chart, program = both(VARIANTS[variant])
    assert sorted(chart) == sorted(program)
    for key in program:
        assert chart[key] == program[key], f"{key} differs between chart and program"


def test_same_services_ports_env_and_probes() -> None:
    # The direct facts, said once more in plain terms (the test above compares whole objects).
    chart, program = both({})
    for side in (chart, program):
        deployments = {name: obj for (kind, name), obj in side.items() if kind == "Deployment"}
        assert sorted(deployments) == sorted(f"sb-prod-{s}" for s in SERVICES)
        api = deployments["sb-prod-api"]["spec"]["template"]["spec"]
        assert api["initContainers"][0]["command"] == ["python", "-c", MIGRATE_SCRIPT]
        container = api["containers"][0]
        assert [e["name"] for e in container["env"]] == ["SB_SERVICE_NAME", "SB_ADVERTISE_HOST", *SECRET_ENV]
        assert container["readinessProbe"]["httpGet"]["path"] == "/metrics"
        sip = side[("Service", "sb-prod-sip")]["spec"]["ports"]
        assert [(p["port"], p["protocol"]) for p in sip] == [(5060, "UDP"), (5060, "TCP")]
        config = side[("ConfigMap", "sb-prod-config")]["data"]
        assert {k for k in config if k.startswith("SB_")} <= set(to_env(Settings()))


def test_service_list_matches_values_yaml() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert list(values["services"]) == list(SERVICES)


def _secret_keys(pod_spec: dict[str, Any]) -> list[str]:
    containers = [*pod_spec.get("initContainers", []), *pod_spec["containers"]]
    return [
        e["valueFrom"]["secretKeyRef"]["key"]
        for c in containers
        for e in c["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    ]


@pytest.mark.parametrize("side_name", ["chart", "program"])
def test_each_service_is_its_own_nats_user_with_the_grants_of_switchboard_up(side_name: str) -> None:
    chart, program = both({})
    side = chart if side_name == "chart" else program
    secret = side[("Secret", "sb-prod-secrets")]["stringData"]
    assert "SB_NATS_URL" not in secret  # no shared credential with the bundled NATS
    passwords = service_passwords(side[("Secret", "sb-prod-secrets")])
    assert sorted(passwords) == sorted(BUS_SERVICES) and len(set(passwords.values())) == len(BUS_SERVICES)
    users = side[("Secret", "sb-prod-nats-users")]["stringData"]["users.conf"]
    for service in BUS_SERVICES:
        assert users[service]["password"] == "<checks>"  # its bcrypt hash takes the password in its URL
        assert users[service]["permissions"] == permissions(service)  # services/runtime/bususers.py GRANTS
        pod = side[("Deployment", f"sb-prod-{service}")]["spec"]["template"]["spec"]
        keys = _secret_keys(pod)
        url_keys = [k for k in keys if k.startswith("SB_NATS_URL") or k == "NATS_TOKEN"]
        assert url_keys == [f"SB_NATS_URL_{service.upper()}"], f"{service} reads {url_keys}"
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        assert env["SB_NATS_URL"]["valueFrom"]["secretKeyRef"]["key"] == f"SB_NATS_URL_{service.upper()}"
    nats_pod = side[("StatefulSet", "sb-prod-nats")]["spec"]["template"]["spec"]
    assert _secret_keys(nats_pod) == ["NATS_TOKEN"]  # the admin's password; the services' are only hashed


@pytest.mark.parametrize("side_name", ["chart", "program"])
def test_external_nats_with_natsurls_gives_each_service_only_its_own_url(side_name: str) -> None:
    chart, program = both(VARIANTS["external-nats-per-service"])
    side = chart if side_name == "chart" else program
    assert not any("-nats" in name for _, name in side)  # no bundled NATS, users or config
    secret = side[("Secret", "sb-prod-secrets")]["stringData"]
    nats_keys = sorted(k for k in secret if "NATS" in k)
    assert nats_keys == sorted(f"SB_NATS_URL_{s.upper()}" for s in BUS_SERVICES)  # no shared URL, no token
    for service in BUS_SERVICES:
        assert secret[f"SB_NATS_URL_{service.upper()}"] == EXTERNAL_NATS_URLS[service]
        pod = side[("Deployment", f"sb-prod-{service}")]["spec"]["template"]["spec"]
        assert [k for k in _secret_keys(pod) if "NATS" in k] == [f"SB_NATS_URL_{service.upper()}"], service
    # The services reach the operator's NATS through natsCidrs, as with one natsUrl.
    egress = side[("NetworkPolicy", "sb-prod-services")]["spec"]["egress"]
    assert any("ipBlock" in str(rule.get("to")) for rule in egress)


def test_given_hashes_keep_the_users_secret_the_same_on_every_render() -> None:
    """natsPasswordHashes (from `chart_permissions --nats-hashes`) are the users' hashes, so the chart's users
    Secret is the same on every render (no GitOps drift); without them Helm's random salt changes it."""
    values = {**REQUIRED, "natsPasswordHashes": GIVEN_HASHES}

    def users_secret(values: dict[str, Any]) -> dict[str, Any]:
        objects = {(o["kind"], o["metadata"]["name"]): o for o in render_objects(CHART_DIR, values)}
        return objects[("Secret", "switchboard-nats-users")]

    first = users_secret(values)
    assert users_secret(values) == first
    assert users_secret(REQUIRED) != users_secret(REQUIRED)  # the random salt, for contrast
    users = nats_users(first["stringData"]["users.conf"])
    assert {name: user["password"] for name, user in users.items()} == GIVEN_HASHES
    program = build_manifests(parse_config({**values, "name": "switchboard", "namespace": "default"}))
    (program_users,) = [o for o in program if o["metadata"]["name"] == "switchboard-nats-users"]
    assert nats_users(program_users["stringData"]["users.conf"]) == users  # the same hashes in the program


def test_external_nats_keeps_the_given_url_for_every_service() -> None:
    for side in both(VARIANTS["external-nats-node-port"]):
        assert not any(name.endswith("-nats-users") for _, name in side)
        for service in BUS_SERVICES:
            pod = side[("Deployment", f"sb-prod-{service}")]["spec"]["template"]["spec"]
            assert [k for k in _secret_keys(pod) if "NATS" in k] == ["SB_NATS_URL"]
