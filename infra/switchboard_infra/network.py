# NetworkPolicies: nothing reaches a Switchboard pod or leaves it unless allowed here.
#
# Every service may reach NATS, PostgreSQL and DNS. Only the api (HTTP) and media (SIP and RTP) accept
# connections from outside; the bundled NATS accepts clients only from the services.

from __future__ import annotations

from typing import Any

from .config import PlatformConfig
from .naming import APP, metadata, selector_labels, services_selector
from .nats import CLIENT_PORT, CLUSTER_PORT

__all__ = ["network_policies"]

_DNS = {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}


def _policy(cfg: PlatformConfig, name: str, selector: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(cfg, f"{cfg.name}-{name}", "network"),
        "spec": {"podSelector": selector, **spec},
    }


def _blocks(cidrs: tuple[str, ...]) -> list[dict[str, Any]]:
    return [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]


def network_policies(cfg: PlatformConfig) -> list[dict[str, Any]]:
    np = cfg.network_policy
    instance = {"matchLabels": {"app.kubernetes.io/name": APP, "app.kubernetes.io/instance": cfg.name}}
    if cfg.internal_nats:
        to_nats = {
            "to": [{"podSelector": {"matchLabels": selector_labels(cfg, "nats")}}],
            "ports": [{"port": CLIENT_PORT, "protocol": "TCP"}],
        }
    else:
        to_nats = {"to": _blocks(np.nats_cidrs), "ports": [{"port": np.nats_port, "protocol": "TCP"}]}
    to_database = {"to": _blocks(np.database_cidrs), "ports": [{"port": np.database_port, "protocol": "TCP"}]}
    sip, rtp = cfg.sip_port, cfg.sip
    policies = [
        _policy(cfg, "default-deny", instance, {"policyTypes": ["Ingress", "Egress"]}),
        _policy(
            cfg,
            "services",
            services_selector(cfg),
            {"policyTypes": ["Egress"], "egress": [_DNS, to_nats, to_database]},
        ),
        _policy(
            cfg,
            "api",
            {"matchLabels": selector_labels(cfg, "api")},
            {
                "policyTypes": ["Ingress", "Egress"],
                # From anywhere: ingress controllers and load balancers live outside this release.
                "ingress": [{"ports": [{"port": cfg.http_port, "protocol": "TCP"}]}],
                # Webhooks go to tenants' HTTPS endpoints.
                "egress": [{"ports": [{"port": 443, "protocol": "TCP"}]}],
            },
        ),
        _policy(
            cfg,
            "media",
            {"matchLabels": selector_labels(cfg, "media")},
            {
                "policyTypes": ["Ingress", "Egress"],
                "ingress": [
                    {
                        "ports": [
                            {"port": sip, "protocol": "UDP"},
                            {"port": sip, "protocol": "TCP"},
                            {"port": rtp.rtp_port_start, "endPort": rtp.rtp_port_end, "protocol": "UDP"},
                        ]
                    }
                ],
                # RTP goes to whatever port the far end offers; SIP over TCP to trunks.
                "egress": [{"ports": [{"protocol": "UDP"}, {"port": sip, "protocol": "TCP"}]}],
            },
        ),
    ]
    if cfg.internal_nats:
        nats_pods = {"podSelector": {"matchLabels": selector_labels(cfg, "nats")}}
        policies.append(
            _policy(
                cfg,
                "nats",
                {"matchLabels": selector_labels(cfg, "nats")},
                {
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [
                        {
                            "from": [{"podSelector": services_selector(cfg)}],
                            "ports": [{"port": CLIENT_PORT, "protocol": "TCP"}],
                        },
                        {"from": [nats_pods], "ports": [{"port": CLUSTER_PORT, "protocol": "TCP"}]},
                    ],
                    "egress": [
                        _DNS,
                        {"to": [nats_pods], "ports": [{"port": CLUSTER_PORT, "protocol": "TCP"}]},
                    ],
                },
            )
        )
    return policies
