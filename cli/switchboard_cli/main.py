"""The `switchboard` command: a click group built on the SDK only (docs/cli.md).

Errors of every kind end as one `error: ...` line on stderr: exit 1 when the API refused, 2 for usage
errors, 3 when the API could not be reached. The platform's operator commands (`switchboard up`,
`recordings rewrap`) are loaded from services/ only when run (platform.py).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

import click
import switchboard

from . import (
    account,
    agent,
    calling,
    contacts,
    flows,
    recordings,
    reporting,
    resources,
    shift,
    staffing,
    trunks,
)
from .context import EXIT_API, common_options
from .platform import PlatformGroup

__all__ = ["cli"]


class SwitchboardGroup(PlatformGroup):
    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        try:
            result = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            where = " ".join(exc.ctx.command_path.split()[1:]) if exc.ctx else ""
            message = exc.format_message()
            click.echo(f"error: {where}: {message}" if where else f"error: {message}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(EXIT_API)
        sys.exit(result if isinstance(result, int) else 0)


@click.group(cls=SwitchboardGroup, name="switchboard", no_args_is_help=True)
@click.version_option(
    switchboard.__version__, "--version", prog_name="switchboard", message="%(prog)s %(version)s"
)
@common_options
def cli() -> None:
    """Switchboard: a multi-tenant contact center as a service.

    Start with `switchboard signup --company NAME --email EMAIL`. Every command takes --json and --profile.
    """


account.register(cli)
resources.register(cli)
flows.register(cli)  # after resources: it adds `numbers route`
trunks.register(cli)
calling.register(cli)
agent.register(cli)  # after resources: it adds `agents token`
shift.register(cli)  # after resources: it adds `agents invite`, `agents signout`
contacts.register(cli)
recordings.register(cli)
staffing.register(cli)
staffing.register_history(cli)
reporting.register(cli)
