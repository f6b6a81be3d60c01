# The Pulumi side: reads the stack config and applies the manifests as pulumi_kubernetes resources.
#
# All decisions live in the pure modules (config, workloads, nats, network); this file only maps each
# manifest to its resource class, marks the Secret's values secret and orders creation after the namespace.

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from .config import DEFAULTS, ConfigError, PlatformConfig, coerce_like_defaults, parse_config
from .manifests import build_manifests

__all__ = ["PROJECT", "SwitchboardPlatform", "load_config"]

PROJECT = "switchboard"

_RESOURCE_CLASSES: dict[tuple[str, str], type[pulumi.CustomResource]] = {
    ("v1", "Namespace"): k8s.core.v1.Namespace,
    ("v1", "ConfigMap"): k8s.core.v1.ConfigMap,
    ("v1", "Secret"): k8s.core.v1.Secret,
    ("v1", "Service"): k8s.core.v1.Service,
    ("apps/v1", "Deployment"): k8s.apps.v1.Deployment,
    ("apps/v1", "StatefulSet"): k8s.apps.v1.StatefulSet,
    ("autoscaling/v2", "HorizontalPodAutoscaler"): k8s.autoscaling.v2.HorizontalPodAutoscaler,
    ("policy/v1", "PodDisruptionBudget"): k8s.policy.v1.PodDisruptionBudget,
    ("networking.k8s.io/v1", "NetworkPolicy"): k8s.networking.v1.NetworkPolicy,
}

# Manifest fields passed through to the resource constructors as they are: pulumi_kubernetes sends dict
# inputs unchanged, so the Kubernetes camelCase inside (matchLabels, containerPort) reaches the API as in YAML.
_FIELDS = ("metadata", "spec", "data", "type")


def load_config(config: pulumi.Config | None = None) -> PlatformConfig:
    """The stack's `switchboard:*` config, validated; raises ConfigError naming every bad key."""
    config = config or pulumi.Config(PROJECT)
    raw: dict[str, Any] = {}
    for key in DEFAULTS:
        value = config.get(key)
        if value is not None:
            raw[key] = value
    # Keys that are not ours (a typo such as `switchboard:databaseURL`) are errors, not silently ignored.
    prefix = f"{config.name}:"
    every_key = {*pulumi.runtime.config.get_config_env(), *pulumi.runtime.config.CONFIG.get()}
    unknown = sorted(
        k[len(prefix) :] for k in every_key if k.startswith(prefix) and k[len(prefix) :] not in DEFAULTS
    )
    problems = [f"{key}: unknown config key (known: {', '.join(DEFAULTS)})" for key in unknown]
    try:
        cfg = parse_config(coerce_like_defaults(raw))
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems) from None
    if problems:
        raise ConfigError(problems)
    return cfg


class SwitchboardPlatform(pulumi.ComponentResource):
    """Switchboard on Kubernetes: namespace, settings, NATS (unless external), services, policies."""

    def __init__(self, name: str, cfg: PlatformConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("switchboard:platform:Platform", name, None, opts)
        self.config = cfg
        self.resources: dict[tuple[str, str], pulumi.CustomResource] = {}
        manifests = build_manifests(cfg)
        namespace = self._apply(manifests[0], pulumi.ResourceOptions(parent=self))
        after_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        for manifest in manifests[1:]:
            self._apply(manifest, after_namespace)
        self.namespace = cfg.namespace
        self.api_service = f"{cfg.name}-api"
        self.sip_service = self.resources[("Service", f"{cfg.name}-sip")]
        self.register_outputs({"namespace": self.namespace, "apiService": self.api_service})

    def _apply(self, manifest: dict[str, Any], opts: pulumi.ResourceOptions) -> pulumi.CustomResource:
        kind, name = manifest["kind"], manifest["metadata"]["name"]
        cls = _RESOURCE_CLASSES[(manifest["apiVersion"], kind)]
        args: dict[str, Any] = {key: manifest[key] for key in _FIELDS if key in manifest}
        if kind == "Secret":
            # Marked secret so that the values are encrypted in the state and masked in every output.
            args["string_data"] = pulumi.Output.secret(manifest["stringData"])
        resource = cls(f"{kind.lower()}-{name}", opts=opts, **args)
        self.resources[(kind, name)] = resource
        return resource
