# The operator's settings for a Switchboard deployment: defaults, validation with clear messages, typed result.
#
# The keys are the same as the Helm chart's values.yaml (charts/switchboard), so one document describes both
# tools (docs/operators.md) and a test keeps DEFAULTS equal to values.yaml. `parse_config` is pure; only
# `load_config` reads Pulumi stack config.

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "DEFAULTS",
    "PULUMI_ONLY_KEYS",
    "SERVICES",
    "Autoscaling",
    "ConfigError",
    "NatsConfig",
    "NetworkPolicyConfig",
    "PlatformConfig",
    "ServiceConfig",
    "SipConfig",
    "coerce_like_defaults",
    "parse_config",
]

# Every service runs the same image as `python -m services.<name>` (ARCHITECTURE.md).
SERVICES: tuple[str, ...] = ("api", "media", "routing", "ivr", "contacts", "recording", "reporting")

LOG_LEVELS = ("debug", "info", "warning", "error")
SIP_SERVICE_TYPES = ("LoadBalancer", "NodePort")
PULL_POLICIES = ("Always", "IfNotPresent", "Never")
# A JetStream cluster needs a quorum: 1 (no replication) or an odd number of servers.
NATS_REPLICAS = (1, 3, 5)

_QUIET_PROBE: dict[str, Any] = {}


def _service(
    replicas: int,
    grace: int,
    requests: tuple[str, str],
    limits: tuple[str, str],
    autoscaling: tuple[bool, int, int, int],
    readiness: dict[str, Any],
    liveness: dict[str, Any],
) -> dict[str, Any]:
    return {
        "replicas": replicas,
        "terminationGracePeriodSeconds": grace,
        "resources": {
            "requests": {"cpu": requests[0], "memory": requests[1]},
            "limits": {"cpu": limits[0], "memory": limits[1]},
        },
        "autoscaling": {
            "enabled": autoscaling[0],
            "minReplicas": autoscaling[1],
            "maxReplicas": autoscaling[2],
            "targetCPUUtilizationPercentage": autoscaling[3],
        },
        "readinessProbe": copy.deepcopy(readiness),
        "livenessProbe": copy.deepcopy(liveness),
    }


_WORKER = dict(
    replicas=1,
    grace=30,
    requests=("100m", "128Mi"),
    limits=("500m", "256Mi"),
    autoscaling=(False, 1, 3, 70),
    # No probe: these services exit on a fatal error (the kubelet restarts them) and report liveness
    # through their heartbeat in the NATS KV bucket sb_health, which the api's /healthz shows.
    readiness=_QUIET_PROBE,
    liveness=_QUIET_PROBE,
)

# Must equal charts/switchboard/values.yaml (tests/unit/infra checks it), plus PULUMI_ONLY_KEYS.
DEFAULTS: dict[str, Any] = {
    "name": "switchboard",
    "namespace": "switchboard",
    "image": {
        "repository": "ghcr.io/switchboard-cc/switchboard",
        "tag": "0.1.0",
        "pullPolicy": "IfNotPresent",
    },
    "imagePullSecrets": [],
    "logLevel": "info",
    "httpPort": 8080,
    "sipPort": 5060,
    "dataDir": "/var/lib/switchboard",
    "signupRatePerMinute": 10,
    "trustedProxies": "",
    "databaseUrl": "",
    "databaseAdminUrl": "",
    "tokenSecret": "",
    "natsUrl": "",
    "natsUrls": {},
    "natsToken": "",
    "natsPasswordHashes": {},
    "migrations": {"enabled": True},
    "services": {
        "api": _service(
            replicas=2,
            grace=30,
            requests=("250m", "256Mi"),
            limits=("1", "512Mi"),
            autoscaling=(True, 2, 10, 70),
            # Not /healthz: it answers 503 while any other service or PostgreSQL is down, and the api pods
            # must neither leave the Service nor restart for that. /metrics answers whenever the process
            # serves HTTP (a /livez and /readyz of the api's own would be better; see docs/operators.md).
            readiness={
                "httpGet": {"path": "/metrics", "port": "http"},
                "periodSeconds": 10,
                "timeoutSeconds": 3,
                "failureThreshold": 3,
            },
            liveness={
                "httpGet": {"path": "/metrics", "port": "http"},
                "initialDelaySeconds": 10,
                "periodSeconds": 20,
                "timeoutSeconds": 5,
                "failureThreshold": 6,
            },
        ),
        # One media process saturates near 1.2 cores at about 40 PCMU calls (STACK-NOTES.md): scale out on
        # CPU well before that, and give calls time to end when a pod is drained.
        "media": _service(
            replicas=2,
            grace=300,
            requests=("500m", "256Mi"),
            limits=("1500m", "1Gi"),
            autoscaling=(True, 2, 20, 60),
            readiness={"tcpSocket": {"port": "sip-tcp"}, "periodSeconds": 10, "failureThreshold": 3},
            liveness=_QUIET_PROBE,
        ),
        "routing": _service(**_WORKER),  # type: ignore[arg-type]
        "ivr": _service(**_WORKER),  # type: ignore[arg-type]
        "contacts": _service(**_WORKER),  # type: ignore[arg-type]
        "recording": _service(**_WORKER),  # type: ignore[arg-type]
        "reporting": _service(**_WORKER),  # type: ignore[arg-type]
    },
    "sip": {
        "serviceType": "LoadBalancer",
        "nodePort": 0,
        "loadBalancerSourceRanges": [],
        "annotations": {},
        "rtpPortStart": 10000,
        "rtpPortEnd": 20000,
    },
    "nats": {
        "image": {"repository": "nats", "tag": "2.15.1-alpine"},
        "replicas": 1,
        "storageSize": "10Gi",
        "storageClass": "",
        "syncInterval": "always",
        "resources": {
            "requests": {"cpu": "250m", "memory": "256Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"},
        },
    },
    "podDisruptionBudget": {"enabled": True, "maxUnavailable": 1},
    "networkPolicy": {
        "enabled": True,
        "databaseCidrs": ["0.0.0.0/0"],
        "databasePort": 5432,
        "natsCidrs": ["0.0.0.0/0"],
        "natsPort": 4222,
    },
}

# Helm takes these from the release (`helm install NAME -n NAMESPACE`); Pulumi needs them as config.
PULUMI_ONLY_KEYS = ("name", "namespace")

# Keys holding free-form maps: their inner keys are not checked against DEFAULTS.
_FREE_FORM = {
    "sip.annotations",
    "natsUrls",
    "natsPasswordHashes",
    "readinessProbe",
    "livenessProbe",
    "resources",
}

_DNS_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
_CPU = re.compile(r"^[0-9]+(\.[0-9]+)?m?$")
_DURATION = re.compile(r"^[0-9]+(ms|s|m|h)$")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_BCRYPT_HASH = re.compile(r"^\$2[aby]\$[0-9]{2}\$[./A-Za-z0-9]{53}$")
_TOKEN_CHARS = re.compile(r"^[A-Za-z0-9._~-]+$")
_PROBE_HANDLERS = ("httpGet", "tcpSocket", "exec", "grpc")
_PROBE_KEYS = {
    *_PROBE_HANDLERS,
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "failureThreshold",
    "successThreshold",
    "terminationGracePeriodSeconds",
}


class ConfigError(ValueError):
    """The deployment settings are invalid; `problems` lists every one found, each naming its key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"invalid Switchboard deployment config ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Autoscaling:
    enabled: bool
    min_replicas: int
    max_replicas: int
    target_cpu_percent: int


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    replicas: int
    termination_grace_seconds: int
    resources: dict[str, Any]
    autoscaling: Autoscaling
    readiness_probe: dict[str, Any]
    liveness_probe: dict[str, Any]


@dataclass(frozen=True)
class SipConfig:
    service_type: str
    node_port: int  # 0: Kubernetes picks one
    load_balancer_source_ranges: tuple[str, ...]
    annotations: dict[str, str]
    rtp_port_start: int
    rtp_port_end: int


@dataclass(frozen=True)
class NatsConfig:
    image: str
    replicas: int
    storage_size: str
    storage_class: str
    sync_interval: str
    resources: dict[str, Any]


@dataclass(frozen=True)
class NetworkPolicyConfig:
    enabled: bool
    database_cidrs: tuple[str, ...]
    database_port: int
    nats_cidrs: tuple[str, ...]
    nats_port: int


@dataclass(frozen=True)
class PlatformConfig:
    name: str
    namespace: str
    image: str
    pull_policy: str
    image_pull_secrets: tuple[str, ...]
    log_level: str
    http_port: int
    sip_port: int
    data_dir: str
    signup_rate_per_minute: int
    trusted_proxies: str
    database_url: str
    database_admin_url: str
    token_secret: str
    nats_url: str
    nats_urls: dict[str, str]  # an external NATS's URL per service (natsUrls), or empty
    nats_token: str
    nats_password_hashes: dict[str, str]  # precomputed bcrypt hashes for the bundled NATS's users, or empty
    migrations_enabled: bool
    services: dict[str, ServiceConfig]
    sip: SipConfig
    nats: NatsConfig
    pdb_enabled: bool
    pdb_max_unavailable: int
    network_policy: NetworkPolicyConfig

    @property
    def internal_nats(self) -> bool:
        """True when the platform runs its own NATS StatefulSet (no external natsUrl or natsUrls given)."""
        return not self.nats_url and not self.nats_urls


def _free_form(path: str) -> bool:
    return path in _FREE_FORM or path.rsplit(".", 1)[-1] in _FREE_FORM


def _merge(base: Any, override: Any, path: str, problems: list[str]) -> Any:
    """`override` laid over `base` as Helm merges values: maps recursively, anything else replaced.

    As in Helm, null removes a key inside a free-form map (a probe's handler, a resource limit); elsewhere
    null and unknown keys are reported rather than kept, so a typo never passes silently.
    """
    if not isinstance(base, dict):
        return copy.deepcopy(override)
    if not isinstance(override, Mapping):
        problems.append(f"{path}: must be a map, got {override!r}")
        return copy.deepcopy(base)
    free = _free_form(path)
    out = copy.deepcopy(base)
    for key, value in override.items():
        where = f"{path}.{key}" if path else str(key)
        if key not in base and not free:
            known = ", ".join(sorted(base))
            problems.append(f"{where}: unknown key (known here: {known})")
        elif value is None and free:
            out.pop(key, None)
        elif value is None and _free_form(where):
            out[key] = {}
        elif value is None:
            problems.append(f"{where}: must not be null")
        elif key in base:
            out[key] = _merge(base[key], value, where, problems)
        else:
            out[key] = copy.deepcopy(value)
    return out


class _Checker:
    """Reads typed values out of the merged settings, collecting a problem per bad key."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.problems: list[str] = []

    def get(self, path: str) -> Any:
        node: Any = self.values
        for part in path.split("."):
            node = node[part]
        return node

    def integer(self, path: str, low: int, high: int | None = None) -> int:
        value = self.get(path)
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.append(f"{path}: must be an integer, got {value!r}")
            return low
        if value < low or (high is not None and value > high):
            bounds = f"{low}-{high}" if high is not None else f">= {low}"
            self.problems.append(f"{path}: must be {bounds}, got {value}")
        return value

    def boolean(self, path: str) -> bool:
        value = self.get(path)
        if not isinstance(value, bool):
            self.problems.append(f"{path}: must be true or false, got {value!r}")
            return False
        return value

    def string(self, path: str, *, pattern: re.Pattern[str] | None = None, what: str = "") -> str:
        value = self.get(path)
        if not isinstance(value, str):
            self.problems.append(f"{path}: must be a string, got {value!r}")
            return ""
        if pattern is not None and value and not pattern.match(value):
            self.problems.append(f"{path}: {value!r} is not {what or 'valid'}")
        return value

    def choice(self, path: str, choices: tuple[Any, ...]) -> Any:
        value = self.get(path)
        if value not in choices:
            self.problems.append(f"{path}: must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value

    def proxies(self, path: str) -> str:
        """SB_TRUSTED_PROXIES: comma-separated addresses or networks (empty: none)."""
        value = self.string(path)
        for item in (p.strip() for p in value.split(",") if p.strip()):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                self.problems.append(f"{path}: {item!r} is not an address or network such as 10.0.0.0/16")
        return value

    def cidrs(self, path: str) -> tuple[str, ...]:
        value = self.get(path)
        if not isinstance(value, list):
            self.problems.append(f"{path}: must be a list of CIDRs, got {value!r}")
            return ()
        for item in value:
            try:
                ipaddress.ip_network(str(item), strict=False)
            except ValueError:
                self.problems.append(f"{path}: {item!r} is not a CIDR such as 10.0.0.0/16")
        return tuple(str(item) for item in value)

    def url(self, path: str, schemes: tuple[str, ...], *, required: bool, hint: str) -> str:
        value = self.string(path)
        if not value:
            if required:
                self.problems.append(f"{path}: is required ({hint})")
            return value
        parts = urlsplit(value)
        if parts.scheme not in schemes:
            shown = " or ".join(f"{s}://" for s in schemes)
            self.problems.append(f"{path}: must start with {shown} ({hint})")
        elif not parts.hostname:
            self.problems.append(f"{path}: has no host ({hint})")
        return value

    def per_service(self, path: str, noun: str, check: Callable[[str], object]) -> dict[str, str]:
        """A value for every service, or none (a half-filled map would leave some services without one);
        `check` is called with each given entry's path."""
        value = self.get(path)
        if not isinstance(value, dict):
            self.problems.append(f"{path}: must be a map of service to {noun}, or {{}}")
            return {}
        if not value:
            return {}
        unknown = sorted(set(value) - set(SERVICES))
        if unknown:
            self.problems.append(f"{path}: unknown service(s) {', '.join(map(str, unknown))}")
        missing = [service for service in sorted(SERVICES) if not value.get(service)]
        if missing:
            self.problems.append(
                f"{path}: every service needs its {noun}, or leave {path} empty; missing: {', '.join(missing)}"
            )
        for service in sorted(set(value) & set(SERVICES)):
            if value[service]:
                check(f"{path}.{service}")
        return {service: value[service] for service in SERVICES if isinstance(value.get(service), str)}

    def resources(self, path: str) -> dict[str, Any]:
        value = self.get(path)
        if not isinstance(value, dict) or not set(value) <= {"requests", "limits"}:
            self.problems.append(f"{path}: must be a map with requests and/or limits")
            return {}
        for kind, amounts in value.items():
            if not isinstance(amounts, dict):
                self.problems.append(f"{path}.{kind}: must be a map of cpu/memory")
                continue
            for resource, amount in amounts.items():
                where = f"{path}.{kind}.{resource}"
                if resource not in ("cpu", "memory", "ephemeral-storage"):
                    self.problems.append(f"{where}: unknown resource (cpu, memory, ephemeral-storage)")
                elif not isinstance(amount, str) or not (_CPU if resource == "cpu" else _QUANTITY).match(
                    amount
                ):
                    self.problems.append(
                        f"{where}: {amount!r} is not a quantity string such as '500m' or '1Gi'"
                    )
        return value

    def probe(self, path: str) -> dict[str, Any]:
        value = self.get(path)
        if not isinstance(value, dict):
            self.problems.append(f"{path}: must be a probe map, or {{}} for none")
            return {}
        if not value:
            return value
        unknown = set(value) - _PROBE_KEYS
        if unknown:
            self.problems.append(f"{path}: unknown probe key(s) {', '.join(sorted(unknown))}")
        handlers = [h for h in _PROBE_HANDLERS if h in value]
        if len(handlers) != 1:
            self.problems.append(f"{path}: needs exactly one of {', '.join(_PROBE_HANDLERS)}")
        return value


def parse_config(raw: Mapping[str, Any]) -> PlatformConfig:
    """Validate `raw` (values.yaml-shaped, only the keys you change) over DEFAULTS; raises ConfigError."""
    problems: list[str] = []
    merged = _merge(DEFAULTS, raw, "", problems)
    c = _Checker(merged)
    c.problems.extend(problems)

    name = c.string("name", pattern=_DNS_LABEL, what="a DNS label (lower-case letters, digits, '-')")
    if len(name) > 40:
        c.problems.append("name: at most 40 characters, so that derived object names stay under 63")
    namespace = c.string("namespace", pattern=_DNS_LABEL, what="a DNS label")
    repository = c.string("image.repository")
    tag = c.string("image.tag")
    if not repository or not tag:
        c.problems.append("image: repository and tag are both required")
    pull_secrets = c.get("imagePullSecrets")
    if not isinstance(pull_secrets, list) or not all(isinstance(s, str) and s for s in pull_secrets):
        c.problems.append("imagePullSecrets: must be a list of Secret names")
        pull_secrets = []
    data_dir = c.string("dataDir")
    if not data_dir.startswith("/"):
        c.problems.append(f"dataDir: must be an absolute path, got {data_dir!r}")

    migrations_enabled = c.boolean("migrations.enabled")
    database_url = c.url(
        "databaseUrl",
        ("postgresql", "postgres"),
        required=True,
        hint="the application role's URL, e.g. postgresql://sb_app:PASSWORD@db.example.internal:5432/switchboard",
    )
    if database_url and not urlsplit(database_url).username:
        c.problems.append("databaseUrl: must name the application role (user@host)")
    if database_url and migrations_enabled:
        # The migration step creates this role and database: PostgreSQL identifiers, lower case.
        app = urlsplit(database_url)
        if not _IDENTIFIER.match(unquote(app.username or "")) or not _IDENTIFIER.match(app.path.lstrip("/")):
            c.problems.append(
                "databaseUrl: role and database must be lower-case identifiers (…://sb_app:PW@host/switchboard)"
            )
    database_admin_url = c.url(
        "databaseAdminUrl",
        ("postgresql", "postgres"),
        required=migrations_enabled,
        hint="the table owner's URL for migrations; or set migrations.enabled to false and migrate yourself",
    )
    token_secret = c.string("tokenSecret")
    if len(token_secret) < 32:
        c.problems.append("tokenSecret: is required, at least 32 characters (signs agent and widget tokens)")
    nats_url = c.url("natsUrl", ("nats", "tls"), required=False, hint="an external NATS with JetStream")
    nats_urls = c.per_service(
        "natsUrls",
        "own URL",
        lambda p: c.url(p, ("nats", "tls"), required=True, hint="its own user's URL"),
    )
    if nats_url and nats_urls:
        c.problems.append(
            "natsUrls: give either natsUrl (one URL for every service) or natsUrls (one per service), not both"
        )
    nats_token = c.string("natsToken")
    if (nats_url or nats_urls) and nats_token:
        c.problems.append(
            "natsToken: only for the bundled NATS; with natsUrl or natsUrls, put credentials in the URLs"
        )
    if not nats_url and not nats_urls:
        if len(nats_token) < 16:
            c.problems.append(
                "natsToken: is required (at least 16 characters) for the bundled NATS; "
                "or set natsUrl or natsUrls to use an external NATS"
            )
        elif not _TOKEN_CHARS.match(nats_token):
            c.problems.append("natsToken: use only letters, digits and . _ ~ - (it goes into a URL)")

    nats_password_hashes = c.per_service(
        "natsPasswordHashes",
        "hash",
        lambda p: c.string(p, pattern=_BCRYPT_HASH, what="a bcrypt hash ($2a$10$...)"),
    )
    if nats_password_hashes and (nats_url or nats_urls):
        c.problems.append(
            "natsPasswordHashes: only for the bundled NATS; create your own NATS's users yourself (--nats-conf)"
        )

    services: dict[str, ServiceConfig] = {}
    for svc in SERVICES:
        p = f"services.{svc}"
        autoscaling = Autoscaling(
            enabled=c.boolean(f"{p}.autoscaling.enabled"),
            min_replicas=c.integer(f"{p}.autoscaling.minReplicas", 1),
            max_replicas=c.integer(f"{p}.autoscaling.maxReplicas", 1),
            target_cpu_percent=c.integer(f"{p}.autoscaling.targetCPUUtilizationPercentage", 1, 100),
        )
        if autoscaling.max_replicas < autoscaling.min_replicas:
            c.problems.append(f"{p}.autoscaling: maxReplicas is below minReplicas")
        services[svc] = ServiceConfig(
            name=svc,
            replicas=c.integer(f"{p}.replicas", 0),
            termination_grace_seconds=c.integer(f"{p}.terminationGracePeriodSeconds", 0),
            resources=c.resources(f"{p}.resources"),
            autoscaling=autoscaling,
            readiness_probe=c.probe(f"{p}.readinessProbe"),
            liveness_probe=c.probe(f"{p}.livenessProbe"),
        )

    annotations = c.get("sip.annotations")
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        c.problems.append("sip.annotations: must be a map of strings")
        annotations = {}
    sip = SipConfig(
        service_type=c.choice("sip.serviceType", SIP_SERVICE_TYPES),
        node_port=c.integer("sip.nodePort", 0, 65535),
        load_balancer_source_ranges=c.cidrs("sip.loadBalancerSourceRanges"),
        annotations=annotations,
        rtp_port_start=c.integer("sip.rtpPortStart", 1024, 65535),
        rtp_port_end=c.integer("sip.rtpPortEnd", 1024, 65535),
    )
    if sip.node_port and not 30000 <= sip.node_port <= 32767:
        c.problems.append(f"sip.nodePort: must be 0 (any) or in 30000-32767, got {sip.node_port}")
    if sip.rtp_port_end < sip.rtp_port_start:
        c.problems.append("sip: rtpPortEnd is below rtpPortStart")

    nats = NatsConfig(
        image=f"{c.string('nats.image.repository')}:{c.string('nats.image.tag')}",
        replicas=c.choice("nats.replicas", NATS_REPLICAS),
        storage_size=c.string("nats.storageSize", pattern=_QUANTITY, what="a size such as 10Gi"),
        storage_class=c.string("nats.storageClass"),
        sync_interval=c.string("nats.syncInterval"),
        resources=c.resources("nats.resources"),
    )
    if nats.sync_interval != "always" and not _DURATION.match(nats.sync_interval):
        c.problems.append(
            f"nats.syncInterval: must be 'always' or a duration such as 2m, got {nats.sync_interval!r}"
        )

    network_policy = NetworkPolicyConfig(
        enabled=c.boolean("networkPolicy.enabled"),
        database_cidrs=c.cidrs("networkPolicy.databaseCidrs"),
        database_port=c.integer("networkPolicy.databasePort", 1, 65535),
        nats_cidrs=c.cidrs("networkPolicy.natsCidrs"),
        nats_port=c.integer("networkPolicy.natsPort", 1, 65535),
    )

    config = PlatformConfig(
        name=name,
        namespace=namespace,
        image=f"{repository}:{tag}",
        pull_policy=c.choice("image.pullPolicy", PULL_POLICIES),
        image_pull_secrets=tuple(pull_secrets),
        log_level=c.choice("logLevel", LOG_LEVELS),
        http_port=c.integer("httpPort", 1, 65535),
        sip_port=c.integer("sipPort", 1, 65535),
        data_dir=data_dir,
        signup_rate_per_minute=c.integer("signupRatePerMinute", 1),
        trusted_proxies=c.proxies("trustedProxies"),
        database_url=database_url,
        database_admin_url=database_admin_url,
        token_secret=token_secret,
        nats_url=nats_url,
        nats_urls=nats_urls,
        nats_token=nats_token,
        nats_password_hashes=nats_password_hashes,
        migrations_enabled=migrations_enabled,
        services=services,
        sip=sip,
        nats=nats,
        pdb_enabled=c.boolean("podDisruptionBudget.enabled"),
        pdb_max_unavailable=c.integer("podDisruptionBudget.maxUnavailable", 1),
        network_policy=network_policy,
    )
    if c.problems:
        raise ConfigError(c.problems)
    return config


def coerce_like_defaults(raw: Mapping[str, Any], defaults: Mapping[str, Any] = DEFAULTS) -> dict[str, Any]:
    """Turn strings into the type DEFAULTS has at the same place ("3" -> 3, "true" -> True, JSON -> map).

    Pulumi stores `pulumi config set KEY VALUE` as a string; Helm values arrive typed and need none of this.
    Anything that does not convert is left as it is, for parse_config to report.
    """
    out: dict[str, Any] = {}
    for key, value in raw.items():
        default = defaults.get(key)
        out[key] = _coerce(value, default)
    return out


def _coerce(value: Any, default: Any) -> Any:
    if isinstance(value, str) and not isinstance(default, str) and default is not None:
        if isinstance(default, bool):
            return {"true": True, "false": False}.get(value.strip().lower(), value)
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        value = decoded
    if isinstance(value, dict) and isinstance(default, dict):
        return {k: _coerce(v, default.get(k)) for k, v in value.items()}
    return value
