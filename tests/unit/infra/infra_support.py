"""Shared helpers for the deployment-artefact tests: paths, required values, running the Pulumi program under mocks."""

from __future__ import annotations

import asyncio
import json
import runpy
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.runtime.chart_permissions import bundled_password_hashes

ROOT = Path(__file__).resolve().parents[3]
INFRA_DIR = ROOT / "infra"
CHART_DIR = ROOT / "charts" / "switchboard"

# The Pulumi program is a directory, not an installed package: Pulumi runs it with infra/ on the path.
if str(INFRA_DIR) not in sys.path:
    sys.path.insert(0, str(INFRA_DIR))

# The values an operator must give; everything else has a default.
REQUIRED: dict[str, Any] = {
    "databaseUrl": "postgresql://sb_app:app-password@db.example.internal:5432/switchboard",
    "databaseAdminUrl": "postgresql://sb_owner:owner-password@db.example.internal:5432/switchboard",
    "tokenSecret": "t" * 48,
    "natsToken": "nats-token-0123456789",
}

# An operator's own NATS with one user per service (natsUrls): each service's URL names its user.
EXTERNAL_NATS_URLS: dict[str, str] = {
    service: f"tls://{service}:pw-{service}@nats.example.internal:4222"
    for service in ("api", "media", "routing", "ivr", "contacts", "recording", "reporting")
}

# natsPasswordHashes as `chart_permissions --nats-hashes` computes them for REQUIRED's natsToken (cost 4: fast).
GIVEN_HASHES: dict[str, str] = bundled_password_hashes(REQUIRED["natsToken"], rounds=4)

# natsUrls and natsPasswordHashes that the chart (its template checks) and the program refuse with the same message.
NATS_URLS_REFUSED: list[tuple[dict[str, Any], str]] = [
    (
        {"natsUrls": {"api": "nats://api:pw@n:4222", "media": "nats://media:pw@n:4222"}, "natsToken": ""},
        "natsUrls: every service needs its own URL, or leave natsUrls empty; "
        "missing: contacts, ivr, recording, reporting, routing",
    ),
    (
        {"natsUrl": "nats://n:4222", "natsUrls": EXTERNAL_NATS_URLS, "natsToken": ""},
        "natsUrls: give either natsUrl (one URL for every service) or natsUrls (one per service), not both",
    ),
    ({"natsUrls": EXTERNAL_NATS_URLS}, "natsToken: only for the bundled NATS; with natsUrl or natsUrls"),
    (
        {"natsPasswordHashes": {"api": GIVEN_HASHES["api"]}},
        "natsPasswordHashes: every service needs its hash, or leave natsPasswordHashes empty; "
        "missing: contacts, ivr, media, recording, reporting, routing",
    ),
    (
        {"natsPasswordHashes": GIVEN_HASHES, "natsUrls": EXTERNAL_NATS_URLS, "natsToken": ""},
        "natsPasswordHashes: only for the bundled NATS; create your own NATS's users yourself (--nats-conf)",
    ),
]


def nats_users(users_conf: str) -> dict[str, dict[str, Any]]:
    """The service users of a rendered users.conf (one JSON object a line, as nats-server reads it), by name;
    the admin line (sb_admin, password from $NATS_TOKEN) is checked to be there and left out."""
    lines = [line.strip() for line in users_conf.splitlines()]
    assert lines[:3] == ["authorization {", "users: [", "{user: sb_admin, password: $NATS_TOKEN}"], users_conf
    assert lines[-2:] == ["]", "}"], users_conf
    users = [json.loads(line) for line in lines[3:-2]]
    return {user["user"]: user for user in users}


def service_passwords(secret: dict[str, Any]) -> dict[str, str]:
    """Each service's NATS password, from its own URL in the Secret (SB_NATS_URL_<SERVICE>)."""
    from urllib.parse import urlsplit

    out: dict[str, str] = {}
    for key, url in secret["stringData"].items():
        if key.startswith("SB_NATS_URL_"):
            parts = urlsplit(url)
            assert parts.username == key.removeprefix("SB_NATS_URL_").lower(), key
            out[parts.username] = parts.password or ""
    return out


# Pulumi's marker for a secret value in serialized resource inputs.
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def unwrap_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return unwrap_secrets(value["value"])
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


@dataclass
class Created:
    type: str  # e.g. kubernetes:apps/v1:Deployment
    name: str  # Pulumi's logical name
    inputs: dict[str, Any]  # as serialized for the provider (secret values still wrapped)

    @property
    def plain(self) -> dict[str, Any]:
        return unwrap_secrets(self.inputs)


def run_program(config: dict[str, Any]) -> list[Created]:
    import pulumi

    created: list[Created] = []

    class Recorder(pulumi.runtime.Mocks):
        def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            created.append(Created(args.typ, args.name, args.inputs))
            return f"{args.name}-id", args.inputs

        def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
            return {}

    # Each run gets its own event loop and root stack: pytest-asyncio's runners leave no current loop
    # behind, and a root stack made under an earlier (closed) loop could not be awaited in this one.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    pulumi.runtime.settings.set_root_resource(None)  # type: ignore[arg-type]
    try:
        pulumi.runtime.set_mocks(Recorder(), project="switchboard", stack="test", preview=False)
        # As `pulumi config set` stores them: strings, objects as JSON.
        pulumi.runtime.set_all_config(
            {f"switchboard:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
            secret_keys=[
                f"switchboard:{k}"
                for k in ("databaseUrl", "databaseAdminUrl", "tokenSecret", "natsToken", "natsUrls")
            ],
        )

        @pulumi.runtime.test
        def program() -> None:
            # Imported (run) only now, after set_mocks, as Pulumi itself would.
            runpy.run_path(str(INFRA_DIR / "__main__.py"), run_name="__main__")

        program()
    finally:
        asyncio.set_event_loop(None)
        loop.close()
    return created
