"""The deployment config: defaults shared with the chart, validation with clear messages, Pulumi's strings."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml
from infra_support import CHART_DIR, EXTERNAL_NATS_URLS, NATS_URLS_REFUSED, REQUIRED
from switchboard_infra.config import (
    DEFAULTS,
    PULUMI_ONLY_KEYS,
    SERVICES,
    ConfigError,
    coerce_like_defaults,
    parse_config,
)


def with_required(**changes: Any) -> dict[str, Any]:
    return {**REQUIRED, **changes}


def problems_of(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(raw)
    return caught.value.problems


def test_defaults_are_the_charts_values() -> None:
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    assert {k: v for k, v in DEFAULTS.items() if k not in PULUMI_ONLY_KEYS} == values


def test_required_values_are_enough() -> None:
    cfg = parse_config(REQUIRED)
    assert list(cfg.services) == list(SERVICES)
    assert cfg.internal_nats
    assert cfg.services["media"].autoscaling.enabled and cfg.services["api"].autoscaling.enabled
    assert cfg.sip.service_type == "LoadBalancer"
    assert cfg.nats.sync_interval == "always"


def test_nothing_given_lists_every_missing_secret() -> None:
    found = problems_of({})
    for key in ("databaseUrl", "databaseAdminUrl", "tokenSecret", "natsToken"):
        assert any(p.startswith(f"{key}: is required") for p in found), (key, found)
    assert len(found) == 4


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"databaseUrl": "mysql://x@db/sb"}, "databaseUrl: must start with postgresql:// or postgres://"),
        ({"databaseUrl": "postgresql://db.internal/sb"}, "databaseUrl: must name the application role"),
        (
            {"databaseUrl": "postgresql://SB-App:pw@db/Switchboard"},
            "databaseUrl: role and database must be lower-case",
        ),
        ({"databaseUrl": "postgresql://sb_app:pw@db"}, "databaseUrl: role and database must be lower-case"),
        ({"tokenSecret": "short"}, "tokenSecret: is required, at least 32 characters"),
        ({"natsUrl": "http://nats:4222", "natsToken": ""}, "natsUrl: must start with nats:// or tls://"),
        ({"natsUrl": "nats://nats.internal:4222"}, "natsToken: only for the bundled NATS"),
        ({"natsToken": "has spaces in it!!"}, "natsToken: use only letters, digits"),
        *NATS_URLS_REFUSED,
        (
            {"natsUrls": {**EXTERNAL_NATS_URLS, "ivr": ""}, "natsToken": ""},
            "natsUrls: every service needs its own URL, or leave natsUrls empty; missing: ivr",
        ),
        (
            {"natsUrls": {**EXTERNAL_NATS_URLS, "billing": "nats://b:pw@n:4222"}, "natsToken": ""},
            "natsUrls: unknown service(s) billing",
        ),
        (
            {"natsUrls": {**EXTERNAL_NATS_URLS, "api": "http://api:pw@n:4222"}, "natsToken": ""},
            "natsUrls.api: must start with nats:// or tls://",
        ),
        ({"sip": {"serviceType": "ClusterIP"}}, "sip.serviceType: must be one of LoadBalancer, NodePort"),
        ({"sip": {"nodePort": 5060}}, "sip.nodePort: must be 0 (any) or in 30000-32767"),
        ({"sip": {"rtpPortStart": 20000, "rtpPortEnd": 10000}}, "sip: rtpPortEnd is below rtpPortStart"),
        ({"sip": {"loadBalancerSourceRanges": ["not-a-cidr"]}}, "sip.loadBalancerSourceRanges: 'not-a-cidr'"),
        ({"nats": {"replicas": 2}}, "nats.replicas: must be one of 1, 3, 5"),
        ({"nats": {"syncInterval": "sometimes"}}, "nats.syncInterval: must be 'always' or a duration"),
        ({"nats": {"storageSize": "lots"}}, "nats.storageSize: 'lots' is not a size"),
        ({"services": {"medias": {}}}, "services.medias: unknown key"),
        ({"services": {"media": {"replicas": "two"}}}, "services.media.replicas: must be an integer"),
        ({"services": {"media": {"replicas": -1}}}, "services.media.replicas: must be >= 0"),
        (
            {"services": {"api": {"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}}},
            "services.api.autoscaling: maxReplicas is below minReplicas",
        ),
        (
            {"services": {"api": {"resources": {"limits": {"cpu": 2}}}}},
            "services.api.resources.limits.cpu: 2 is not a quantity string",
        ),
        (
            {"services": {"api": {"readinessProbe": {"tcpSocket": {"port": "http"}}}}},
            "services.api.readinessProbe: needs exactly one of",
        ),
        ({"services": {"api": {"livenessProbe": {"httpGets": {}}}}}, "unknown probe key(s) httpGets"),
        ({"logLevel": "loud"}, "logLevel: must be one of debug, info, warning, error"),
        ({"httpPort": 70000}, "httpPort: must be 1-65535"),
        ({"dataDir": "relative/dir"}, "dataDir: must be an absolute path"),
        ({"name": "Switchboard_Prod"}, "name: 'Switchboard_Prod' is not a DNS label"),
        ({"migrations": {"enabled": "yes"}}, "migrations.enabled: must be true or false"),
        ({"networkPolicy": {"databaseCidrs": ["10.0.0.0/33"]}}, "networkPolicy.databaseCidrs: '10.0.0.0/33'"),
        ({"networkPolicy": None}, "networkPolicy: must not be null"),
        ({"podDisruptionBudget": {"maxUnavailable": 0}}, "podDisruptionBudget.maxUnavailable: must be >= 1"),
    ],
)
def test_each_bad_value_is_named_with_its_key(change: dict[str, Any], expected: str) -> None:
    found = problems_of(with_required(**change))
    assert any(expected in p for p in found), found


def test_the_error_message_lists_every_problem() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(with_required(logLevel="loud", nats={"replicas": 4}))
    message = str(caught.value)
    assert "2 problem(s)" in message
    assert "  - logLevel:" in message and "  - nats.replicas:" in message


def test_overrides_merge_into_defaults_like_helm() -> None:
    cfg = parse_config(with_required(services={"media": {"resources": {"limits": {"cpu": "2"}}}}))
    media = cfg.services["media"].resources
    assert media["limits"] == {"cpu": "2", "memory": "1Gi"}
    assert media["requests"] == DEFAULTS["services"]["media"]["resources"]["requests"]
    # As in Helm, null removes a key inside a free-form map: here, swapping a probe's handler.
    cfg = parse_config(
        with_required(services={"api": {"readinessProbe": {"httpGet": None, "tcpSocket": {"port": "http"}}}})
    )
    assert "httpGet" not in cfg.services["api"].readiness_probe
    assert cfg.services["api"].readiness_probe["tcpSocket"] == {"port": "http"}
    # And a null probe means no probe.
    assert (
        parse_config(with_required(services={"api": {"livenessProbe": None}})).services["api"].liveness_probe
        == {}
    )


def test_external_nats_needs_no_token_and_migrations_can_be_left_to_the_operator() -> None:
    raw = {k: v for k, v in REQUIRED.items() if k not in ("natsToken", "databaseAdminUrl")}
    cfg = parse_config(
        {**raw, "natsUrl": "tls://user:pw@nats.example.internal:4222", "migrations": {"enabled": False}}
    )
    assert not cfg.internal_nats
    assert cfg.database_admin_url == ""


def test_parse_config_does_not_touch_its_input() -> None:
    raw = with_required(services={"media": {"replicas": 3}})
    before = copy.deepcopy(raw)
    parse_config(raw)
    assert raw == before
    assert DEFAULTS["services"]["media"]["replicas"] == 2


def test_pulumi_strings_become_the_types_of_the_defaults() -> None:
    raw = {
        "httpPort": "9090",
        "migrations": json.dumps({"enabled": False}),
        "services": json.dumps({"media": {"replicas": 4}}),
        "logLevel": "debug",
        "databaseUrl": "postgresql://a:b@c/d",
    }
    coerced = coerce_like_defaults(raw)
    assert coerced == {
        "httpPort": 9090,
        "migrations": {"enabled": False},
        "services": {"media": {"replicas": 4}},
        "logLevel": "debug",
        "databaseUrl": "postgresql://a:b@c/d",
    }
    # What does not convert stays, for parse_config to report with its key.
    assert coerce_like_defaults({"httpPort": "eighty"}) == {"httpPort": "eighty"}


def test_load_config_reads_the_stack_and_refuses_unknown_keys() -> None:
    import pulumi
    from switchboard_infra.platform import load_config

    stack = {f"switchboard:{k}": v for k, v in REQUIRED.items()}
    pulumi.runtime.set_all_config(
        {**stack, "switchboard:sipPort": "5080", "switchboard:sip": '{"serviceType": "NodePort"}'}
    )
    cfg = load_config()
    assert cfg.sip_port == 5080 and cfg.sip.service_type == "NodePort"

    pulumi.runtime.set_all_config(
        {**stack, "switchboard:databaseURL": "postgresql://x@y/z", "kubernetes:context": "kind"}
    )
    with pytest.raises(ConfigError) as caught:
        load_config()
    assert caught.value.problems[0].startswith("databaseURL: unknown config key")
    assert len(caught.value.problems) == 1  # other projects' keys (kubernetes:*) are not ours to judge


# The chart's schema and the program's validation must refuse the same things (those a schema can express).
SCHEMA_CASES: list[dict[str, Any]] = [
    {"sip": {"serviceType": "ClusterIP"}},
    {"sip": {"nodePort": 5060}},
    {"nats": {"replicas": 2}},
    {"nats": {"syncInterval": "sometimes"}},
    {"nats": {"storageSize": "lots"}},
    {"services": {"medias": {}}},
    {"services": {"media": {"replicas": -1}}},
    {"services": {"api": {"resources": {"limits": {"cpu": 2}}}}},
    {"services": {"api": {"livenessProbe": {"httpGets": {}}}}},
    {"services": {"api": {"readinessProbe": {"tcpSocket": {"port": "http"}}}}},
    {"logLevel": "loud"},
    {"httpPort": 70000},
    {"dataDir": "relative/dir"},
    {"databaseUrl": "mysql://x@db/sb"},
    {"natsUrl": "http://nats:4222", "natsToken": ""},
    {"natsToken": "has spaces in it!!"},
    {"natsPasswordHashes": {"api": "not-a-hash"}},
    {"natsUrls": {**EXTERNAL_NATS_URLS, "billing": "nats://b:pw@n:4222"}, "natsToken": ""},
    {"natsUrls": {**EXTERNAL_NATS_URLS, "api": "http://api:pw@n:4222"}, "natsToken": ""},
    {"migrations": {"enabled": "yes"}},
    {"image": {"pullPolicy": "Sometimes"}},
    {"podDisruptionBudget": {"maxUnavailable": 0}},
    {"unknownTopLevel": 1},
]


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merge(base.get(k), v) if k in base else v for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    return over


@pytest.mark.parametrize("change", SCHEMA_CASES, ids=lambda c: next(iter(c)))
def test_the_chart_schema_and_the_program_refuse_the_same_values(change: dict[str, Any]) -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    values = _merge(yaml.safe_load((CHART_DIR / "values.yaml").read_text()), {**REQUIRED, **change})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(values, schema)
    with pytest.raises(ConfigError):
        parse_config(with_required(**change))


def test_the_example_stack_file_is_valid() -> None:
    from infra_support import INFRA_DIR

    stack = yaml.safe_load((INFRA_DIR / "Pulumi.example.yaml").read_text())["config"]
    raw = {key.removeprefix("switchboard:"): value for key, value in stack.items()}
    cfg = parse_config({**REQUIRED, **raw})
    assert cfg.nats.replicas == 3 and cfg.services["media"].autoscaling.max_replicas == 40
