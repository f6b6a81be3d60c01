"""Writes the services' NATS allow lists (services/runtime/bususers.py `GRANTS`) into the Helm chart as data,
charts/switchboard/files/nats-permissions.json, so that the chart and the Pulumi program give each service
the same user as `switchboard up` does. A unit test fails while the committed file differs from `GRANTS`:
after changing `GRANTS`, run `python -m services.runtime.chart_permissions`.

`--nats-conf` prints the same users for an operator's own NATS (the chart's `natsUrls`): nats-server's
`authorization` block with each password a variable, `$SB_NATS_PASSWORD_<SERVICE>`, and the routing subject
mapping (docs/operators.md, "Security"). `--nats-hashes` reads the chart's natsToken on stdin and prints
`natsPasswordHashes` for the bundled NATS: its users' Secret then stays the same on every `helm upgrade`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import bcrypt

from services.routing.partitions import DEFAULT_PARTITION_COUNT, MAX_PARTITION_COUNT, nats_mappings
from services.runtime.bususers import BUS_SERVICES, permissions

__all__ = [
    "CHART_PERMISSIONS",
    "bundled_password_hashes",
    "operator_nats_conf",
    "password_variable",
    "permissions_json",
]

CHART_PERMISSIONS = (
    Path(__file__).resolve().parents[2] / "charts" / "switchboard" / "files" / "nats-permissions.json"
)


def permissions_json() -> str:
    """Every service's `permissions`, in BUS_SERVICES order, as the chart's data file holds them."""
    return json.dumps({service: permissions(service) for service in BUS_SERVICES}, indent=2) + "\n"


_NATS_TOKEN = re.compile(r"^[A-Za-z0-9._~-]{16,}$")


def bundled_password_hashes(nats_token: str, *, rounds: int = 10) -> dict[str, str]:
    """Each service's bcrypt hash ($2a$, as Helm's) of its password on the chart's bundled NATS,
    sha256("nats-user|<service>|<natsToken>") as the chart's switchboard.natsPassword derives it."""
    out: dict[str, str] = {}
    for service in BUS_SERVICES:
        password = hashlib.sha256(f"nats-user|{service}|{nats_token}".encode()).hexdigest()
        out[service] = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds, b"2a")).decode()
    return out


def password_variable(service: str) -> str:
    """The nats-server variable that holds `service`'s password (or its bcrypt hash) in `operator_nats_conf`."""
    return f"SB_NATS_PASSWORD_{service.upper()}"


def operator_nats_conf(partitions: int = DEFAULT_PARTITION_COUNT) -> str:
    """nats-server config for an operator's own NATS: one user per service with the chart's allow lists, each
    password the variable `password_variable(service)`, and the routing commands' mapping. nats-server sees
    a variable only in the file that defines it (or in the environment): the operator writes the
    definitions above this text, a bcrypt hash quoted (unquoted, or in the environment, a leading `$` would
    be read as another variable's name).
    """
    lines = [
        "# Switchboard's services on your NATS, one user each (python -m services.runtime.chart_permissions",
        "# --nats-conf). Define every $SB_NATS_PASSWORD_<SERVICE> above this text, in this same file, e.g.",
        '# SB_NATS_PASSWORD_API: "$2a$11$..." (its bcrypt hash, quoted), and give each service its password',
        '# in the chart\'s natsUrls (docs/operators.md, "Security").',
        "authorization {",
        "  users: [",
    ]
    for service in BUS_SERVICES:
        allow = permissions(service)
        user = f'{{"user": {json.dumps(service)}, "password": ${password_variable(service)}, '
        lines.append(f'    {user}"permissions": {json.dumps(allow)}}}')
    lines += ["  ]", "}"]
    return "\n".join(lines) + "\n" + nats_mappings(partitions)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m services.runtime.chart_permissions",
        description="Write the chart's NATS allow lists (charts/switchboard/files/nats-permissions.json) from "
        "GRANTS, or print nats-server users for your own NATS.",
    )
    parser.add_argument(
        "--nats-conf",
        action="store_true",
        help="print an authorization block (one user per service, passwords as $SB_NATS_PASSWORD_<SERVICE>) "
        "and the routing mapping, for an external NATS used with the chart's natsUrls; writes nothing",
    )
    parser.add_argument(
        "--routing-partitions",
        type=int,
        default=DEFAULT_PARTITION_COUNT,
        metavar="N",
        help=f"the routing service's SB_ROUTING_PARTITION_COUNT (default {DEFAULT_PARTITION_COUNT})",
    )
    parser.add_argument(
        "--nats-hashes",
        action="store_true",
        help="read the chart's natsToken on stdin and print natsPasswordHashes (values YAML) for the bundled "
        "NATS, so that its users' Secret stays the same on every upgrade; writes nothing",
    )
    args = parser.parse_args(argv)
    if args.nats_conf and args.nats_hashes:
        parser.error("--nats-conf and --nats-hashes: give one")
    if args.nats_hashes:
        token = sys.stdin.read().strip()
        if not _NATS_TOKEN.match(token):
            parser.error("--nats-hashes: stdin must hold natsToken (at least 16 letters, digits, . _ ~ -)")
        hashes = bundled_password_hashes(token)
        sys.stdout.write("natsPasswordHashes:\n" + "".join(f'  {s}: "{h}"\n' for s, h in hashes.items()))
        return 0
    if not 1 <= args.routing_partitions <= MAX_PARTITION_COUNT:
        parser.error(f"--routing-partitions: must be 1-{MAX_PARTITION_COUNT}, got {args.routing_partitions}")
    if args.nats_conf:
        sys.stdout.write(operator_nats_conf(args.routing_partitions))
        return 0
    CHART_PERMISSIONS.write_text(permissions_json())
    print(f"wrote {CHART_PERMISSIONS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
