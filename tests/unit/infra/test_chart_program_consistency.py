"""The Helm chart and the Pulumi program deploy the same thing: same objects, names, ports, env, probes.

The chart is rendered by helm_lite (no Helm binary here) and compared object by object with the program's
manifests for the same settings; only what must differ (who manages the object, the checksum inputs)
is set aside.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from helm_lite import render_objects
from infra_support import CHART_DIR, REQUIRED
from switchboard_infra.config import SERVICES, parse_config
from switchboard_infra.manifests import build_manifests
from switchboard_infra.workloads import MIGRATE_SCRIPT, SECRET_ENV

from services.kernel.config import Settings, to_env

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


def both(variant: dict[str, Any], release: str = "sb-prod", namespace: str = "contact") -> tuple[dict, dict]:
    values = {**REQUIRED, **copy.deepcopy(variant)}
    chart = _keyed(render_objects(CHART_DIR, values, release=release, namespace=namespace))
    cfg = parse_config({**values, "name": release, "namespace": namespace})
    program = _keyed(build_manifests(cfg, with_namespace=False))
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
