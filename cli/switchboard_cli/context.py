"""What every command shares: the --json/--profile options, settings resolution, the SDK client, output,
and turning SDK errors into one line on stderr with a distinct exit code.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click
import switchboard
from rich.console import Console

from .profiles import DEFAULT_PROFILE, Profile, ProfileError, check_profile_name, load_profiles, profiles_path

__all__ = [
    "EXIT_API",
    "EXIT_CONNECTION",
    "EXIT_USAGE",
    "CliError",
    "State",
    "command",
    "common_options",
    "group",
]

# Exit codes, documented in docs/cli.md: scripts tell "the API said no" from "nothing answered".
EXIT_API = 1
EXIT_USAGE = 2  # click's own code for usage errors
EXIT_CONNECTION = 3

F = TypeVar("F", bound=Callable[..., Any])


class CliError(click.ClickException):
    """A failure reported as one `error: ...` line on stderr (see main.SwitchboardGroup.main)."""

    def __init__(self, message: str, exit_code: int = EXIT_API) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares it on the class


@dataclass
class State:
    """Options given anywhere on the command line (group or subcommand) and the command running."""

    json: bool = False
    profile: str | None = None
    command: str = ""

    @property
    def profile_name(self) -> str:
        name = self.profile or os.environ.get("SB_PROFILE") or DEFAULT_PROFILE
        try:
            return check_profile_name(name)
        except ProfileError as exc:
            raise click.UsageError(str(exc)) from None

    def stored_profile(self) -> Profile:
        try:
            return load_profiles().get(self.profile_name, Profile())
        except ProfileError as exc:
            raise CliError(str(exc)) from None

    def api_url(self, override: str | None = None) -> str:
        """--api-url, then SB_API_URL, then the profile, then the local default."""
        url = override or os.environ.get("SB_API_URL") or self.stored_profile().api_url
        return (url or switchboard.DEFAULT_BASE_URL).rstrip("/")

    def api_key(self) -> str:
        key = os.environ.get("SB_API_KEY") or self.stored_profile().api_key
        if not key:
            raise CliError(
                f"no API key for profile '{self.profile_name}' ({profiles_path()}): "
                "run `switchboard signup` or `switchboard login --api-key KEY` first"
            )
        return key

    def client(self, *, api_key: str | None = None, api_url: str | None = None) -> switchboard.Client:
        try:
            return switchboard.Client(
                api_key=api_key if api_key is not None else self.api_key(),
                base_url=self.api_url(api_url),
                timeout=10,
                # Someone is waiting at a terminal: a few quick retries, and no long silent waits.
                retry=switchboard.RetryPolicy(max_retries=2, max_retry_after=10),
            )
        except ValueError:
            raise CliError(
                f"the API URL {self.api_url(api_url)!r} must start with http:// or https:// "
                "(from --api-url, SB_API_URL or the profile)",
                EXIT_USAGE,
            ) from None


def state_of(ctx: click.Context) -> State:
    return ctx.find_root().ensure_object(State)


def _set_json(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        state_of(ctx).json = True


def _set_profile(ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        state_of(ctx).profile = value


def common_options(fn: F) -> F:
    """--json and --profile, accepted on the group and on every subcommand alike."""
    fn = click.option(
        "--json",
        "json_output",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print machine-readable JSON on stdout and nothing else.",
    )(fn)
    fn = click.option(
        "--profile",
        metavar="NAME",
        expose_value=False,
        callback=_set_profile,
        help="Profile to use (default: $SB_PROFILE or 'default').",
    )(fn)
    return fn


def describe(exc: switchboard.SwitchboardError, state: State) -> CliError:
    """One readable line for an SDK error, with the exit code of its kind."""
    what = state.command or "request"
    if isinstance(exc, switchboard.ConnectionError):
        return CliError(
            f"cannot reach the API at {exc.base_url} ({exc.reason}): is `switchboard up` running?",
            EXIT_CONNECTION,
        )
    if isinstance(exc, switchboard.AuthenticationError):
        source = "SB_API_KEY" if os.environ.get("SB_API_KEY") else f"profile '{state.profile_name}'"
        return CliError(
            f"{what} failed: {exc.message}; the API key of {source} was not accepted, "
            "run `switchboard login --api-key KEY`"
        )
    if isinstance(exc, switchboard.RateLimitedError) and exc.retry_after is not None:
        return CliError(f"{what} refused: {exc.message}; try again in {exc.retry_after:.0f} s")
    if isinstance(exc, switchboard.ApiError):
        verb = "refused" if exc.status in (403, 409) else "failed"
        return CliError(f"{what} {verb}: {exc.message}")
    return CliError(f"{what} failed: {exc}")


def command(
    parent: click.Group | None, name: str | None = None, **settings: Any
) -> Callable[[F], click.Command]:
    """Register a subcommand whose function takes the State first; SDK errors become CliErrors. With no
    parent, a command for a group to load later (the platform's operator commands, platform.py)."""

    def decorate(fn: F) -> click.Command:
        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> None:
            ctx = click.get_current_context()
            state = state_of(ctx)
            state.command = " ".join(ctx.command_path.split()[1:])
            try:
                fn(state, *args, **kwargs)
            except switchboard.SwitchboardError as exc:
                raise describe(exc, state) from None

        make = parent.command if parent is not None else click.command
        return make(name, **settings)(common_options(run))

    return decorate


def group(parent: click.Group, name: str, help: str, **settings: Any) -> click.Group:
    """A command group that also takes --json and --profile (`switchboard seats --json show`)."""

    @parent.group(name, help=help, no_args_is_help=True, **settings)
    @common_options
    def _group() -> None:
        pass

    return _group


# Output ------------------------------------------------------------------------------------------------


def emit_json(data: Any) -> None:
    """The one JSON document of a --json run."""
    click.echo(json.dumps(switchboard.to_dict(data), indent=2, ensure_ascii=False))


def console() -> Console:
    # Not a terminal (a pipe, a test): a wide fixed width, so ids and emails are never wrapped or cut.
    width = None if sys.stdout.isatty() else 200
    return Console(file=sys.stdout, width=width, highlight=False, soft_wrap=False)
