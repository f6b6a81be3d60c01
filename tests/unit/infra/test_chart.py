"""The Helm chart (charts/switchboard) without a Helm binary: schema, template structure, and renderings."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from helm_lite import TemplateError, parse, render_chart, render_objects
from infra_support import CHART_DIR, EXTERNAL_NATS_URLS, NATS_URLS_REFUSED, REQUIRED

TEMPLATES = sorted((CHART_DIR / "templates").iterdir())
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())


def objects(values: dict[str, Any] | None = None, **kw: Any) -> dict[tuple[str, str], dict[str, Any]]:
    rendered = render_objects(CHART_DIR, {**REQUIRED, **(values or {})}, **kw)
    return {(o["kind"], o["metadata"]["name"]): o for o in rendered}


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "switchboard" and chart["type"] == "application"
    assert re.fullmatch(r"\d+\.\d+\.\d+", chart["version"])
    assert chart["appVersion"] == VALUES["image"]["tag"]
    names = {p.name for p in TEMPLATES}
    assert {
        "_helpers.tpl",
        "NOTES.txt",
        "deployments.yaml",
        "services.yaml",
        "configmap.yaml",
        "secret.yaml",
    } <= names
    assert {"nats.yaml", "nats-config.yaml", "hpa.yaml", "pdb.yaml", "networkpolicy.yaml"} <= names


def test_values_validate_against_the_schema() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    jsonschema.validate(VALUES, SCHEMA)
    jsonschema.validate({**VALUES, **REQUIRED}, SCHEMA)


def test_the_schema_refuses_a_misspelt_key() -> None:
    with pytest.raises(jsonschema.ValidationError, match="databaseURL"):
        jsonschema.validate({**VALUES, "databaseURL": "postgresql://x@y/z"}, SCHEMA)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_template_has_balanced_actions_and_blocks(path: Path) -> None:
    text = path.read_text()
    assert text.count("{{") == text.count("}}"), path.name
    # No action opens inside another one.
    assert not re.search(r"\{\{(?:(?!\}\}).)*\{\{", text, re.S), path.name
    # if/range/with/define each closed by an end, in order (the parser refuses anything else).
    parse(text, path.name)


def _value_paths(text: str) -> set[str]:
    """Every .Values.x.y (and $svc.x / $np.x, which stand for a service / networkPolicy) a template reads."""
    found = {m.group(1) for m in re.finditer(r"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text)}
    found |= {
        ".services.api" + m.group(1) for m in re.finditer(r"\$svc((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text)
    }
    found |= {
        ".networkPolicy" + m.group(1) for m in re.finditer(r"\$np((?:\.[A-Za-z_][A-Za-z0-9_]*)+)", text)
    }
    return found


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_templates_read_only_keys_that_values_yaml_has(path: Path) -> None:
    for dotted in _value_paths(path.read_text()):
        node: Any = VALUES
        for part in dotted.strip(".").split("."):
            assert isinstance(node, dict) and part in node, (
                f"{path.name} reads .Values{dotted}, not in values.yaml"
            )
            node = node[part]
    # Every service has the same keys, so $svc.<key> holds for all of them.
    assert len({tuple(sorted(s)) for s in VALUES["services"].values()}) == 1


def test_templates_with_directives_stripped_are_plausible_yaml() -> None:
    # Where a template is plain YAML around its actions, it must stay YAML with each action replaced by a
    # scalar (or dropped where it stands alone on a line).
    for path in TEMPLATES:
        if path.suffix != ".yaml":
            continue
        lines = []
        text = re.sub(r"\{\{-?\s*/\*.*?\*/\s*-?\}\}", "", path.read_text(), flags=re.S)
        for line in text.splitlines():
            if re.fullmatch(r"\s*\{\{.*\}\}\s*", line):
                continue
            lines.append(re.sub(r"\{\{.*?\}\}", "x", line))
        try:
            list(yaml.safe_load_all("\n".join(lines)))
        except yaml.YAMLError as exc:
            pytest.fail(f"{path.name}: {exc}")


VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "nats-cluster": {"nats": {"replicas": 3, "storageClass": "fast-ssd", "syncInterval": "30s"}},
    "external-nats": {"natsUrl": "tls://sb:pw@nats.example.internal:4222", "natsToken": ""},
    "node-port": {"sip": {"serviceType": "NodePort", "nodePort": 30560, "annotations": {"a.example/b": "c"}}},
    "lean": {
        "migrations": {"enabled": False},
        "databaseAdminUrl": "",
        "podDisruptionBudget": {"enabled": False},
        "networkPolicy": {"enabled": False},
        "imagePullSecrets": ["registry-creds"],
        "services": {"api": {"autoscaling": {"enabled": False}, "replicas": 3}},
    },
}


@pytest.mark.parametrize("variant", VARIANTS, ids=str)
def test_the_chart_renders_valid_kubernetes_objects(variant: str) -> None:
    rendered = render_objects(CHART_DIR, {**REQUIRED, **VARIANTS[variant]}, namespace="contact")
    assert rendered
    for obj in rendered:
        assert {"apiVersion", "kind", "metadata"} <= set(obj), obj
        assert obj["metadata"]["namespace"] == "contact"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["metadata"]["name"]), obj["metadata"][
            "name"
        ]
        assert len(obj["metadata"]["name"]) <= 63


def test_one_deployment_per_service_from_the_range() -> None:
    rendered = objects()
    deployments = {name: obj for (kind, name), obj in rendered.items() if kind == "Deployment"}
    assert sorted(deployments) == sorted(f"switchboard-{s}" for s in VALUES["services"])
    media = deployments["switchboard-media"]["spec"]["template"]["spec"]["containers"][0]
    assert media["command"] == ["python", "-m", "services.media"]
    assert "replicas" not in deployments["switchboard-media"]["spec"]
    assert deployments["switchboard-routing"]["spec"]["replicas"] == 1
    assert isinstance(deployments["switchboard-routing"]["spec"]["replicas"], int)


def test_several_pods_of_a_partitioned_service_share_its_tenants() -> None:
    """contacts, ivr and routing with more than one pod (or an autoscaler) get SB_WORKER_COUNT (the most pods
    there can be) and SB_WORKER_INDEX=auto; one pod, or another service, gets neither (one process)."""
    services = {
        "contacts": {"replicas": 3},
        "ivr": {"autoscaling": {"enabled": True, "minReplicas": 1, "maxReplicas": 4}},
        "reporting": {"replicas": 2},
    }
    rendered = objects({"services": services})

    def env(name: str) -> dict[str, str]:
        spec = rendered[("Deployment", f"switchboard-{name}")]["spec"]["template"]["spec"]
        return {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}

    assert env("contacts")["SB_WORKER_COUNT"] == "3" and env("contacts")["SB_WORKER_INDEX"] == "auto"
    assert env("ivr")["SB_WORKER_COUNT"] == "4" and env("ivr")["SB_WORKER_INDEX"] == "auto"
    assert "SB_WORKER_COUNT" not in env("routing") and "SB_WORKER_COUNT" not in env("reporting")


def test_external_nats_renders_no_statefulset() -> None:
    rendered = objects(VARIANTS["external-nats"])
    assert not [key for key in rendered if "nats" in key[1]]
    assert rendered[("Secret", "switchboard-secrets")]["stringData"]["SB_NATS_URL"].startswith("tls://")


def test_settings_changes_roll_the_pods() -> None:
    def sums(values: dict[str, Any]) -> dict[str, str]:
        dep = objects(values)[("Deployment", "switchboard-ivr")]
        return dep["spec"]["template"]["metadata"]["annotations"]

    base = sums({})
    assert sums({"logLevel": "debug"})["checksum/config"] != base["checksum/config"]
    assert sums({"tokenSecret": "u" * 40})["checksum/secret"] != base["checksum/secret"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"databaseUrl": ""}, "databaseUrl: is required"),
        ({"databaseAdminUrl": ""}, "databaseAdminUrl: is required"),
        ({"tokenSecret": "short"}, "tokenSecret: is required, at least 32 characters"),
        ({"natsToken": ""}, "natsToken: is required"),
        ({"natsUrl": "nats://n:4222"}, "natsToken: only for the bundled NATS"),
        *NATS_URLS_REFUSED,
        (
            {"natsUrls": {**EXTERNAL_NATS_URLS, "ivr": ""}, "natsToken": ""},
            "values don't meet the schema: '' does not match '^(nats|tls)://' at ['natsUrls', 'ivr']",
        ),
        ({"natsUrls": {"billing": "nats://b:pw@n:4222"}, "natsToken": ""}, "values don't meet the schema"),
        ({"sip": {"rtpPortStart": 20000, "rtpPortEnd": 10000}}, "sip: rtpPortEnd is below rtpPortStart"),
        (
            {"services": {"media": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}},
            "services.media.autoscaling: maxReplicas is below minReplicas",
        ),
        ({"sip": {"serviceType": "ClusterIP"}}, "values don't meet the schema"),
    ],
)
def test_missing_or_inconsistent_values_fail_with_the_programs_message(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(TemplateError, match=re.escape(message)):
        render_chart(CHART_DIR, {**REQUIRED, **values})


def test_a_long_release_name_is_refused() -> None:
    with pytest.raises(TemplateError, match="at most 40 characters"):
        render_chart(CHART_DIR, REQUIRED, release="r" * 41)


def test_notes_render() -> None:
    notes = render_chart(CHART_DIR, REQUIRED, namespace="contact")["templates/NOTES.txt"]
    assert "svc/switchboard-api 8080:8080" in notes
    assert "UDP and TCP 5060" in notes and "sync_interval always" in notes
    node_port = render_chart(CHART_DIR, {**REQUIRED, **VARIANTS["node-port"]})["templates/NOTES.txt"]
    assert "Kamailio" in node_port
