# Pulumi entry point: Switchboard on the Kubernetes cluster of the current kubeconfig context.
# The logic lives in switchboard_infra/ (importable and tested); keys and examples: docs/operators.md.

from __future__ import annotations

import pulumi
from switchboard_infra.platform import SwitchboardPlatform, load_config

config = load_config()
platform = SwitchboardPlatform(config.name, config)

pulumi.export("namespace", config.namespace)
pulumi.export("api_service", f"{config.name}-api.{config.namespace}.svc:{config.http_port}")
pulumi.export("sip_service", f"{config.name}-sip")
