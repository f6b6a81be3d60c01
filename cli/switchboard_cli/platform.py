"""Operator commands that belong to the platform (`switchboard up`, `recordings rewrap`): the CLI imports
nothing from services/ (a tenant's install has only the SDK and the CLI), so these are named here and loaded
from the platform's modules when run; without the platform they answer with one clear error line."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import click

from .context import CliError

__all__ = ["PLATFORM_COMMANDS", "PlatformGroup", "load_platform_command"]

# Group path ("" for the top level) -> command name -> "module:attribute" of a click.Command.
PLATFORM_COMMANDS: Mapping[str, Mapping[str, str]] = {
    "": {"up": "services.runtime.cli:up"},
    "recordings": {"rewrap": "services.recording.cli:rewrap"},
}


def _unavailable(path: str, target: str, reason: str) -> click.Command:
    # Takes any arguments, so `switchboard up --demo` gets this message rather than a usage error.
    @click.command(
        path.split()[-1],
        help="A platform operator command (not available in this installation).",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True, "help_option_names": []},
    )
    def unavailable() -> None:
        module = target.split(":")[0]
        raise CliError(
            f"`switchboard {path}` is not available here: it runs where the platform is installed "
            f"(cannot load {module}: {reason})"
        )

    return unavailable


def load_platform_command(path: str, target: str) -> click.Command:
    """The platform's command at `target` ("module:attribute"), or a stand-in that says why it cannot run."""
    module_name, _, attribute = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        return _unavailable(path, target, str(exc) or type(exc).__name__)
    found = getattr(module, attribute, None)
    if not isinstance(found, click.Command):
        return _unavailable(path, target, f"{module_name} has no click command named `{attribute}`")
    return found


class PlatformGroup(click.Group):
    """A group that also lists its platform commands and loads one only when it is asked for."""

    def __init__(self, *args: Any, platform_path: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.platform_path = platform_path

    def _platform(self) -> Mapping[str, str]:
        return PLATFORM_COMMANDS.get(self.platform_path, {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._platform()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._platform().get(cmd_name)
        if target is None:
            return super().get_command(ctx, cmd_name)
        return load_platform_command(f"{self.platform_path} {cmd_name}".strip(), target)
