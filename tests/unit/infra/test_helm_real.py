"""The chart under real Helm (v4, from the pinned helm-sdkpy wheel: tests/unit/infra/helm_real.py): `helm lint`
for the default and the production values, the schema refusing bad values, and the rendered objects, for
every configuration the consistency test uses and for values-production.yaml, equal to what helm_lite
renders and to the Pulumi program's, and valid against the Kubernetes API's JSON schemas (the
kubernetes-validate package: kubeconform's schemas, strict) for the oldest and newest versions it has
that the chart supports."""

from __future__ import annotations

import copy
import json
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import helm_real
import jsonschema
import kubernetes_validate
import pytest
import yaml
from helm_lite import render_objects
from infra_support import CHART_DIR, EXTERNAL_NATS_URLS, REQUIRED
from switchboard_infra.config import parse_config
from switchboard_infra.manifests import build_manifests
from test_chart_program_consistency import VARIANTS, _checked_users, _keyed

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64",
    reason="helm-sdkpy ships Helm's library for linux-amd64 only",
)

PRODUCTION = yaml.safe_load((CHART_DIR / "values-production.yaml").read_text())
VALUES = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
KUBERNETES = ("1.26.0", "1.37.0")  # the chart's kubeVersion floor, and the newest schemas at hand
RELEASE, NAMESPACE = "sb-prod", "contact"


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def _run(*args: str) -> Any:
    done = subprocess.run(
        [sys.executable, str(Path(helm_real.__file__)), *args], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def helm() -> Callable[..., Any]:
    """Real Helm in a subprocess; the library is fetched once into the cache (pinned version and hash)."""
    helm_real.ensure_library()
    return _run


def _chart_with_values(tmp_path: Path, values: dict[str, Any]) -> Path:
    """A copy of the chart whose values.yaml is `values` (the library lints a chart's own values only)."""
    chart = tmp_path / "switchboard"
    shutil.copytree(CHART_DIR, chart)
    (chart / "values.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    return chart


def _problems(lint: dict[str, Any]) -> list[Any]:
    # Severity: 1 info, 2 warning, 3 error (helm.sh/helm/v4/pkg/chart/v2/lint/support).
    return list(lint.get("Errors") or []) + [m for m in lint.get("Messages") or [] if m["Severity"] >= 2]


def test_helm_lint_passes_for_default_and_production_values(helm: Callable[..., Any], tmp_path: Path) -> None:
    assert helm("version") == f"helm-sdkpy-v{helm_real.VERSION}"
    assert _problems(helm("lint", str(CHART_DIR))) == []
    production = _merge(_merge(VALUES, PRODUCTION), REQUIRED)
    assert _problems(helm("lint", str(_chart_with_values(tmp_path, production)))) == []


def test_helm_refuses_values_the_schema_refuses(helm: Callable[..., Any], tmp_path: Path) -> None:
    bad = {"misspelt": {"replicaCount": 3}, "wrong-type": {"nats": {"replicas": "three"}}}
    for name, change in bad.items():
        # helm lint counts the errors (the library's JSON carries no text for them)...
        assert helm("lint", str(_chart_with_values(tmp_path / name, _merge(VALUES, change))))["Errors"], name
    # ... and helm install says which value is wrong, before anything reaches the cluster.
    jobs = [
        {"values": {**REQUIRED, **change}, "release": RELEASE, "namespace": NAMESPACE}
        for change in bad.values()
    ]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    misspelt, wrong_type = helm("render", str(CHART_DIR), str(tmp_path / "jobs.json"))
    assert "replicaCount" in misspelt.get("error", ""), misspelt
    assert "replicas" in wrong_type.get("error", "") and "schema" in wrong_type["error"], wrong_type


def test_production_values_follow_the_schema_and_the_program_accepts_them() -> None:
    jsonschema.validate(_merge(VALUES, PRODUCTION), SCHEMA)
    parse_config({**REQUIRED, **PRODUCTION, "name": RELEASE, "namespace": NAMESPACE})


def test_real_helm_renders_what_helm_lite_and_the_program_render(
    helm: Callable[..., Any], tmp_path: Path
) -> None:
    configs = {**VARIANTS, "production": PRODUCTION}
    jobs = [
        {"values": {**REQUIRED, **copy.deepcopy(variant)}, "release": RELEASE, "namespace": NAMESPACE}
        for variant in configs.values()
    ]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    results = helm("render", str(CHART_DIR), str(tmp_path / "jobs.json"))
    validated: set[str] = set()
    for (name, variant), job, result in zip(configs.items(), jobs, results, strict=True):
        assert "error" not in result, (name, result)
        assert result["chart"]["metadata"]["version"] == VALUES_CHART_VERSION
        objects = [doc for doc in yaml.safe_load_all(result["manifest"]) if doc]
        assert len(objects) >= 15, (name, len(objects))  # 7 Deployments, Services, ConfigMap, Secret...
        for obj in objects:
            text = json.dumps(obj, sort_keys=True)
            if text not in validated:  # most objects are the same in every configuration: checked once
                validated.add(text)
                for version in KUBERNETES:
                    kubernetes_validate.validate(obj, version, strict=True)
        real = _keyed(objects)
        lite = _keyed(render_objects(CHART_DIR, job["values"], release=RELEASE, namespace=NAMESPACE))
        cfg = parse_config({**REQUIRED, **copy.deepcopy(variant), "name": RELEASE, "namespace": NAMESPACE})
        program = _keyed(build_manifests(cfg, with_namespace=False))
        for side in (real, lite, program):
            _checked_users(side, RELEASE)  # bcrypt hashes: checked against each URL's password
        assert sorted(real) == sorted(lite) == sorted(program), name
        for key in real:
            assert real[key] == lite[key], f"{name}: {key} differs between Helm and helm_lite"
            assert real[key] == program[key], f"{name}: {key} differs between Helm and the Pulumi program"


def test_real_helm_stops_on_missing_secrets_with_the_charts_message(
    helm: Callable[..., Any], tmp_path: Path
) -> None:
    half = {"natsToken": "", "natsUrls": {s: EXTERNAL_NATS_URLS[s] for s in ("api", "media")}}
    cases = {
        "tokenSecret: is required": {k: v for k, v in REQUIRED.items() if k != "tokenSecret"},
        # A half-filled natsUrls would leave five services on no user: the chart names them.
        "natsUrls: every service needs its own URL, or leave natsUrls empty; "
        "missing: contacts, ivr, recording, reporting, routing": {**REQUIRED, **half},
        # A service the chart does not have: the schema refuses it.
        "natsUrls": {
            **REQUIRED,
            "natsToken": "",
            "natsUrls": {**EXTERNAL_NATS_URLS, "billing": "nats://b@n"},
        },
    }
    jobs = [{"values": values, "release": RELEASE, "namespace": NAMESPACE} for values in cases.values()]
    (tmp_path / "jobs.json").write_text(json.dumps(jobs))
    results = helm("render", str(CHART_DIR), str(tmp_path / "jobs.json"))
    for message, result in zip(cases, results, strict=True):
        assert message in result.get("error", ""), result
    assert "billing" in results[-1]["error"] and "schema" in results[-1]["error"], results[-1]


VALUES_CHART_VERSION = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())["version"]
