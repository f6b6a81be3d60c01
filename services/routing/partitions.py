"""Tenant partitioning of routing commands, done by the NATS server's subject mapping.

The server maps every command published to sb.<tenant>.cmd.routing.<command> onto
sb.sys.routing.cmd.<partition>.<tenant>.<command>, where <partition> is the server's deterministic
`partition(P, 1)` over the tenant token (P = `SB_ROUTING_PARTITION_COUNT`, default 16). A routing worker
subscribes only to the partitions it holds the lock of, so it never even receives another worker's
tenants. The reply subject is untouched: request/reply works through the mapping.

The server config must carry the mapping (`nats_mappings()`): the embedded NATS, the Helm chart and the
Pulumi program write it; an operator running their own NATS must add it (docs/operators.md).
"""

from __future__ import annotations

import uuid

from services.kernel.partitioned import token_partition

__all__ = [
    "COMMANDS_SOURCE",
    "DEFAULT_PARTITION_COUNT",
    "MAPPED_PREFIX",
    "MAX_PARTITION_COUNT",
    "mapping_destination",
    "nats_mappings",
    "parse_mapped",
    "partition_of",
    "partition_subject",
    "tenant_commands_subject",
    "token_partition",
]

DEFAULT_PARTITION_COUNT = 16
MAX_PARTITION_COUNT = 1024
COMMANDS_SOURCE = "sb.*.cmd.routing.*"
MAPPED_PREFIX = "sb.sys.routing.cmd"


def mapping_destination(count: int) -> str:
    # The partition function must be a whole token of its own: "p{{partition(..)}}" is taken literally.
    return f"{MAPPED_PREFIX}.{{{{partition({count},1)}}}}.{{{{wildcard(1)}}}}.{{{{wildcard(2)}}}}"


def nats_mappings(count: int, indent: str = "") -> str:
    """The `mappings` block of nats-server's config (nats-server 2.10+)."""
    return f'{indent}mappings {{\n{indent}  "{COMMANDS_SOURCE}": "{mapping_destination(count)}"\n{indent}}}\n'


def partition_subject(partition: int) -> str:
    """What the owner of `partition` subscribes to."""
    return f"{MAPPED_PREFIX}.{partition}.*.*"


def tenant_commands_subject(tenant_id: uuid.UUID | str) -> str:
    """Where one tenant's routing commands are delivered, whatever its partition (for tests that answer
    as routing would; the tenant-scoped sb.<tenant>.cmd.routing.> receives nothing once mapped)."""
    return f"{MAPPED_PREFIX}.*.{uuid.UUID(str(tenant_id))}.*"


def partition_of(tenant_id: uuid.UUID | str, count: int) -> int:
    return token_partition(str(uuid.UUID(str(tenant_id))), count)


def parse_mapped(subject: str) -> tuple[int, uuid.UUID, str] | None:
    """(partition, tenant, command) of a mapped subject, or None when it is not one."""
    parts = subject.split(".")
    if len(parts) != 7 or ".".join(parts[:4]) != MAPPED_PREFIX or not parts[4].isdigit():
        return None
    try:
        tenant_id = uuid.UUID(parts[5])
    except ValueError:
        return None
    return int(parts[4]), tenant_id, parts[6]
