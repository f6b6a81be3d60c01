"""IVR flow commands: validate and test a flow file offline, deploy it, list flows and versions, roll back, and
`numbers route E164 --flow NAME`. Validation runs locally (switchboard.flowdef, shared with the platform);
the simulator (the platform's IVR interpreter) in-process where the platform is installed, else on the API;
the rest through the SDK."""

from __future__ import annotations

import importlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import msgspec
import switchboard
from switchboard.flowdef import validate_text
from switchboard.flowdef.suite import Case, CaseResult, Expect, SuiteError, load_suite, parse_time

from . import output
from .context import EXIT_USAGE, CliError, State, command, emit_json, group
from .parsing import E164

__all__ = ["register"]

PAGE = 200


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"no such file: {path}", EXIT_USAGE) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read {path}: {exc}", EXIT_USAGE) from None


def _pairs(items: tuple[str, ...], what: str, *, json_values: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise click.BadParameter(f"{item!r} is not NAME=VALUE", param_hint=what)
        if json_values:
            try:
                out[name.strip()] = value if value == "timeout" else json.loads(value)
            except json.JSONDecodeError as exc:
                raise click.BadParameter(
                    f"{name}: not JSON ({exc.msg}); use 'timeout' for no answer", param_hint=what
                ) from None
        else:
            out[name.strip()] = value
    return out


def _queue_names(state: State) -> set[str] | None:
    """The tenant's queue names when an API key is configured and the API answers; None: offline."""
    try:
        with state.client() as client:
            return {q.name for q in client.queues.iter(page_size=PAGE)}
    except (CliError, switchboard.SwitchboardError):
        return None


SIMULATOR = "services.ivr.simulator"


def _run_cases(state: State, path: str, cases: list[Case]) -> list[CaseResult]:
    """The platform's simulator runs the real IVR interpreter: in-process where the platform is installed
    (loaded by name: the CLI imports nothing from services/), else on the API (POST /v1/ivr/simulate)."""
    flow = _load_flow(path)  # errors with line numbers, before anything is sent
    try:
        simulator = importlib.import_module(SIMULATOR)
    except ImportError:
        with state.client() as client:
            return client.flows.simulate(_read(path), cases).results
    return [simulator.run_case(flow, case) for case in cases]


def _load_flow(path: str) -> Any:
    report = validate_text(_read(path))
    if not report.ok:
        for issue in report.errors:
            click.echo(issue.render(path), err=True)
        raise CliError(f"{path} is not a valid flow ({len(report.errors)} errors)")
    return report.flow


def _print_result(result: Any) -> None:
    output.details(
        [
            ("path", " > ".join(result.path)),
            ("digits", ",".join(d or "(silence)" for d in result.digits_used) or "-"),
            ("queue", result.queue),
            ("transfer", result.transfer),
            ("callback", result.callback),
            ("outcome", result.outcome),
            ("attributes", ", ".join(f"{k}={v}" for k, v in sorted(result.attributes.items()))),
        ]
    )
    for prompt in result.prompts:
        output.note(f"  said: {prompt}")
    for note in result.notes:
        output.note(f"  note: {note}")


def register(cli: click.Group) -> None:
    flows = group(cli, "flows", "IVR flows: validate, test, deploy, version and roll back.")

    @command(flows, "validate")
    @click.argument("file", type=click.Path(dir_okay=False))
    @click.option("--offline", is_flag=True, help="Do not ask the API for the tenant's queues.")
    def flows_validate(state: State, file: str, offline: bool) -> None:
        """Check a flow file: schema (with line numbers), graph, references and practice warnings."""
        text = _read(file)
        queues = None if offline else _queue_names(state)
        report = validate_text(text, queues=queues)
        if state.json:
            emit_json({"ok": report.ok, "issues": [msgspec.to_builtins(i) for i in report.issues]})
        else:
            for issue in report.issues:
                click.echo(issue.render(file))
            errors, warnings = len(report.errors), len(report.warnings)
            verdict = "valid" if report.ok else "NOT valid"
            click.echo(f"{file}: {verdict}: {errors} error(s), {warnings} warning(s)")
        if not report.ok:
            sys.exit(1)

    @command(flows, "test")
    @click.argument("file", required=False, type=click.Path(dir_okay=False))
    @click.option(
        "--digits", default="", help="Keys for each prompt that waits, comma-separated (1,2,1234#)."
    )
    @click.option("--attr", "attrs", multiple=True, metavar="NAME=VALUE", help="A starting attribute.")
    @click.option("--caller", default="+15550100000", show_default=True)
    @click.option("--dialled", default="+15550199999", show_default=True)
    @click.option(
        "--at", "at", default=None, metavar="ISO_TIME", help="When the call happens (default: now)."
    )
    @click.option(
        "--lookup",
        "lookups",
        multiple=True,
        metavar="NODE=JSON",
        help="What a lookup node answers (JSON), or NODE=timeout.",
    )
    @click.option("--suite", type=click.Path(dir_okay=False), help="Run a YAML file of test cases instead.")
    def flows_test(
        state: State,
        file: str | None,
        digits: str,
        attrs: tuple[str, ...],
        caller: str,
        dialled: str,
        at: str | None,
        lookups: tuple[str, ...],
        suite: str | None,
    ) -> None:
        """Run a flow offline with scripted digits and stubbed lookups, and show the path taken."""
        if suite:
            try:
                named, cases = load_suite(Path(suite))
            except SuiteError as exc:
                raise CliError(str(exc), EXIT_USAGE) from None
            flow_file = file or named
            if not flow_file:
                raise CliError(
                    "name the flow file: `flows test FILE --suite S` or `flow:` in the suite", EXIT_USAGE
                )
            results = _run_cases(state, flow_file, cases)
            failed = [r for r in results if not r.ok]
            if state.json:
                emit_json({"ok": not failed, "cases": [msgspec.to_builtins(r) for r in results]})
            else:
                for r in results:
                    click.echo(f"{'ok  ' if r.ok else 'FAIL'} {r.name}")
                    for diff in r.diffs:
                        click.echo("     " + diff.replace("\n", "\n     "))
                click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
            if failed:
                sys.exit(1)
            return
        if not file:
            raise CliError("name the flow file to test", EXIT_USAGE)
        try:
            when = parse_time(at)
        except ValueError:
            raise click.BadParameter(f"{at!r} is not an ISO 8601 time", param_hint="--at") from None
        script = [d.strip() for d in digits.split(",")] if digits else []
        case = Case(
            name="run",
            digits=script,
            attributes=_pairs(attrs, "--attr"),
            caller=caller,
            dialled=dialled,
            at=datetime.fromtimestamp(when, UTC).isoformat(),
            lookups=_pairs(lookups, "--lookup", json_values=True),
            expect=Expect(),
        )
        (ran,) = _run_cases(state, file, [case])
        result = ran.result
        if state.json:
            emit_json(msgspec.to_builtins(result))
            return
        _print_result(result)

    @command(flows, "deploy")
    @click.argument("file", type=click.Path(dir_okay=False))
    def flows_deploy(state: State, file: str) -> None:
        """Publish a flow file as a new version (validated by the API against the tenant's queues)."""
        text = _read(file)
        with state.client() as client:
            try:
                deployed = client.flows.deploy(text)
            except switchboard.ValidationError as exc:
                for err in exc.errors:
                    msg = err.message
                    click.echo(f"{file}:{msg[5:]}" if msg.startswith("line ") else f"{file}: {msg}", err=True)
                # Each error was one line above; the last line counts them instead of repeating the first.
                summary = (
                    f"{file} is not valid ({len(exc.errors)} error(s) above)" if exc.errors else exc.message
                )
                raise CliError(f"flows deploy refused: {summary}") from None
        if state.json:
            emit_json(deployed)
            return
        for w in deployed.warnings:
            click.echo(f"{file}:{w.line or '-'}: warning: {w.message}")
        output.note(f"Deployed {deployed.flow.name} version {deployed.version} (now current).")

    @command(flows, "list")
    def flows_list(state: State) -> None:
        """List the tenant's flows with their current and latest versions."""
        with state.client() as client:
            found = client.flows.list(limit=PAGE).items
        if state.json:
            emit_json(found)
            return
        output.table(
            ("NAME", "CURRENT", "LATEST", "UPDATED"),
            ([f.name, f.current_version, f.latest_version, output.short_time(f.updated_at)] for f in found),
        )

    @command(flows, "versions")
    @click.argument("name")
    def flows_versions(state: State, name: str) -> None:
        """List a flow's versions (the current one is marked)."""
        with state.client() as client:
            found = client.flows.versions(name, limit=PAGE).items
        if state.json:
            emit_json(found)
            return
        output.table(
            ("VERSION", "CURRENT", "CREATED"),
            ([v.version, "*" if v.current else "", output.short_time(v.created_at)] for v in found),
        )

    @command(flows, "show")
    @click.argument("name")
    @click.option(
        "--version", "version", type=click.IntRange(min=1), help="A given version (default: current)."
    )
    def flows_show(state: State, name: str, version: int | None) -> None:
        """Print a flow version's source as it was deployed."""
        with state.client() as client:
            found = client.flows.get(name, version=version)
        if state.json:
            emit_json(found)
            return
        click.echo(found.source, nl=not found.source.endswith("\n"))

    @command(flows, "rollback")
    @click.argument("name")
    @click.argument("version", type=click.IntRange(min=1))
    def flows_rollback(state: State, name: str, version: int) -> None:
        """Make an earlier version current again; calls in progress keep the version they started with."""
        with state.client() as client:
            flow = client.flows.rollback(name, version)
        if state.json:
            emit_json(flow)
            return
        output.note(
            f"{flow.name}: version {flow.current_version} is current (latest is {flow.latest_version})."
        )

    @command(flows, "delete")
    @click.argument("name")
    def flows_delete(state: State, name: str) -> None:
        """Delete a flow and all its versions (refused while a number points at it)."""
        with state.client() as client:
            client.flows.delete(name)
        if state.json:
            emit_json({"deleted": name})
            return
        output.note(f"Deleted flow {name}.")

    numbers = cli.commands.get("numbers")
    if not isinstance(numbers, click.Group):
        return

    @command(numbers, "route")
    @click.argument("e164", type=E164, metavar="E164")
    @click.option("--flow", "flow", metavar="NAME", help="The flow that answers this number's calls.")
    @click.option("--queue", "queue", metavar="NAME_OR_ID", help="Send callers straight to this queue.")
    @click.option("--none", "unroute", is_flag=True, help="Point the number at no flow.")
    def numbers_route(state: State, e164: str, flow: str | None, queue: str | None, unroute: bool) -> None:
        """Point a number at a flow, or straight at a queue."""
        if sum((bool(flow), bool(queue), unroute)) != 1:
            raise click.UsageError("give exactly one of --flow NAME, --queue NAME or --none")
        with state.client() as client:
            try:
                if queue:
                    number = client.flows.route(e164, queue=queue)
                else:
                    number = client.flows.route(e164, None if unroute else flow)
            except switchboard.NotFoundError:
                raise CliError(
                    f"numbers route refused: this tenant holds no number {e164}; claim it first with "
                    f"`switchboard numbers claim {e164}`"
                ) from None
        if state.json:
            emit_json(number)
            return
        if queue:
            output.note(f"{number.e164} now goes straight to queue {queue}.")
        else:
            output.note(
                f"{number.e164} now goes to flow {flow}." if flow else f"{number.e164} points at no flow."
            )
