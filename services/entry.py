"""`switchboard-service NAME`: run one platform service, the container image's entry point (Dockerfile).

Kubernetes and compose files choose the service by the command (`switchboard-service media`); it is the same
process as `python -m services.<module>`, which the chart and the Pulumi program still run."""

from __future__ import annotations

import runpy
import sys

__all__ = ["MODULES", "main"]

# Service name -> the module whose `__main__` block runs it.
MODULES = {
    "api": "services.api",
    "media": "services.media",
    "media-front": "services.media.front",
    "routing": "services.routing",
    "ivr": "services.ivr",
    "contacts": "services.contacts",
    "recording": "services.recording",
    "reporting": "services.reporting",
}

USAGE = f"""usage: switchboard-service NAME

Run one Switchboard service in the foreground, configured by SB_* environment variables
(docs/operators.md, "Configuration keys"; docs/runtime.md for the whole platform on one machine).

NAME is one of: {", ".join(MODULES)}
"""


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 1 and args[0] in ("-h", "--help", "help"):
        print(USAGE, end="")
        return 0
    if len(args) != 1:
        print(USAGE, end="", file=sys.stderr)
        print("error: name exactly one service", file=sys.stderr)
        return 2
    module = MODULES.get(args[0])
    if module is None:
        print(f"error: unknown service {args[0]!r}; choose one of {', '.join(MODULES)}", file=sys.stderr)
        return 2
    sys.argv = [f"switchboard-service {args[0]}"]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
