"""`switchboard recordings rewrap`: the platform's operator command (it reads the database and the master
keys directly, so it lives with the platform; the CLI loads it by name, switchboard_cli/platform.py)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import click
from switchboard_cli import output
from switchboard_cli.context import CliError, State, command, emit_json

from services.kernel.db import create_pool
from services.kernel.waits import close_pool

from .rewrap import rewrap_all
from .vault import KeyRing, LocalMasterKey, VaultError

__all__ = ["rewrap"]


@command(None, "rewrap")
@click.option(
    "--database-url",
    envvar="SB_DATABASE_URL",
    required=True,
    metavar="URL",
    help="The platform's PostgreSQL (the application role's URL; env SB_DATABASE_URL).",
)
@click.option(
    "--key-file",
    envvar="SB_RECORDING_KEY_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path(".switchboard/keys/recording-master.key"),
    show_default=True,
    help="The new master key (env SB_RECORDING_KEY_FILE); made, 0600, if it does not exist.",
)
@click.option(
    "--old-key-file",
    "old_key_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A master key being retired (repeat for several; env SB_RECORDING_OLD_KEY_FILES, comma-separated).",
)
@click.option(
    "--tenant",
    "tenants",
    multiple=True,
    type=click.UUID,
    help="Only this tenant's keys (repeat for several; default every tenant).",
)
def rewrap(
    state: State,
    database_url: str,
    key_file: Path,
    old_key_files: tuple[Path, ...],
    tenants: tuple[uuid.UUID, ...],
) -> None:
    """Operator: wrap every tenant's data keys again under a new master key (recordings stay readable)."""
    if not old_key_files:
        env = os.environ.get("SB_RECORDING_OLD_KEY_FILES", "")
        old_key_files = tuple(Path(p.strip()) for p in env.split(",") if p.strip())
    try:
        keys = KeyRing(
            LocalMasterKey.load_or_create(key_file), [LocalMasterKey.load(p) for p in old_key_files]
        )
    except VaultError as exc:
        raise CliError(str(exc)) from None

    async def run() -> dict[str, int]:
        pool = await create_pool(database_url, min_size=1, max_size=2)
        try:
            done = await rewrap_all(pool, keys, only=set(tenants) or None)
            return {str(t): n for t, n in done.items()}
        finally:
            await close_pool(pool)

    try:
        moved = asyncio.run(run())
    except VaultError as exc:
        raise CliError(
            f"{exc}; nothing changed for that tenant (pass its master with --old-key-file)"
        ) from None
    except OSError as exc:
        raise CliError(f"cannot reach the database: {exc}", exit_code=3) from None
    if state.json:
        emit_json({"master_key_id": keys.master.key_id, "keys": sum(moved.values()), "tenants": moved})
        return
    output.note(
        f"{sum(moved.values())} data keys of {len(moved)} tenants now wrapped by {keys.master.key_id}"
    )
