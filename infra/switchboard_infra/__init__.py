# Switchboard's Pulumi program as an importable package: config, manifests, and the Pulumi component.

from __future__ import annotations

from .config import DEFAULTS, SERVICES, ConfigError, PlatformConfig, parse_config
from .manifests import build_manifests

__all__ = ["DEFAULTS", "SERVICES", "ConfigError", "PlatformConfig", "build_manifests", "parse_config"]
