"""`switchboard monitor` (the live view: queues and agents, refreshed by the websocket feed) and
`switchboard report queues|agents|ivr` (interval reports as a table, CSV or JSON, with an optional chart)."""

from __future__ import annotations

import csv
import io
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import switchboard
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from . import output, staffing
from .contacts import WHEN
from .contacts import _seconds as _fmt_seconds
from .context import CliError, State, command, console, emit_json, group

__all__ = ["register"]

INTERVALS = ("15m", "30m", "60m", "day", "week", "month")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.1f}%"


def _secs(value: float | None) -> str:
    return "-" if value is None else _fmt_seconds(value)


def _parse_time(value: Any) -> float | None:
    if value is None:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()


# -- monitor ---------------------------------------------------------------------------------------------


class Board:
    """What the monitor shows: the last snapshot, patched by feed messages."""

    def __init__(self, queues: dict[str, Any], agents: dict[str, Any]) -> None:
        self.queues = {q["queue_id"]: q for q in queues.get("queues", [])}
        self.agents = {a["agent_id"]: a for a in agents.get("agents", [])}
        self.formula = queues.get("formula", {}).get("service_level", "")
        self.stale = False  # a contact event changed today's totals: re-read them

    def apply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "queue" and message["queue_id"] in self.queues:
            q = self.queues[message["queue_id"]]
            q.update(waiting=message["waiting"], agents=message["agents"], ready=message["ready"])
            q["longest_wait_s"] = message["longest_wait_s"]
        elif kind == "agent" and message["agent_id"] in self.agents:
            a = self.agents[message["agent_id"]]
            a.update(state=message["state"], reason=message.get("reason"))
            a["since"] = datetime.fromtimestamp(message["ts"], UTC).isoformat()
        elif kind == "contact":
            self.stale = True

    def render(self, now: float) -> Group:
        qt = Table(title="Queues (today)", box=box.SIMPLE_HEAD, title_justify="left")
        for column in (
            "QUEUE",
            "WAITING",
            "LONGEST",
            "AGENTS",
            "OFFERED",
            "ANSWERED",
            "ABANDONED",
            "SL",
            "ASA",
        ):
            qt.add_column(column)
        for q in sorted(self.queues.values(), key=lambda q: q["queue_name"]):
            agents = ", ".join(f"{k} {v}" for k, v in sorted((q.get("agents") or {}).items())) or "-"
            abandoned = f"{q['abandoned_short'] + q['abandoned_long']} ({q['abandoned_long']} long)"
            qt.add_row(
                q["queue_name"],
                str(q["waiting"]),
                _secs(q["longest_wait_s"] if q["waiting"] else None),
                agents,
                str(q["offered"]),
                str(q["answered"]),
                abandoned,
                _pct(q["service_level"]),
                _secs(q["asa_s"]),
            )
        at = Table(title="Agents", box=box.SIMPLE_HEAD, title_justify="left")
        for column in ("AGENT", "STATE", "REASON", "IN STATE", "CONTACT", "HANDLED", "AHT"):
            at.add_column(column)
        for a in sorted(self.agents.values(), key=lambda a: a["name"]):
            since = _parse_time(a.get("since"))
            at.add_row(
                a["name"],
                a["state"],
                a.get("reason") or "-",
                _secs(now - since if since else None),
                (a.get("current_contact") or "-")[:8],
                str(a["handled_today"]),
                _secs(a["aht_s"]),
            )
        return Group(qt, at, Text(f"SL = {self.formula}", style="dim"))


def _snapshot_json(client: switchboard.Client) -> dict[str, Any]:
    return {"queues": client.realtime.queues(), "agents": client.realtime.agents()}


# -- report ----------------------------------------------------------------------------------------------

COLUMNS = {
    "queues": [
        ("interval_start", "INTERVAL"),
        ("queue_name", "QUEUE"),
        ("offered", "OFFERED"),
        ("answered", "ANSWERED"),
        ("answered_within", "IN SL"),
        ("abandoned_short", "ABAND SHORT"),
        ("abandoned_long", "ABAND LONG"),
        ("service_level", "SL"),
        ("asa_s", "ASA"),
        ("aht_s", "AHT"),
        ("transfers", "TRANSFERS"),
    ],
    "agents": [
        ("interval_start", "INTERVAL"),
        ("agent_id", "AGENT"),
        ("handled", "HANDLED"),
        ("aht_s", "AHT"),
        ("occupancy", "OCCUPANCY"),
        ("transfers", "TRANSFERS"),
    ],
    "ivr": [
        ("interval_start", "INTERVAL"),
        ("flow", "FLOW"),
        ("completed", "COMPLETED"),
        ("self_served", "SELF-SERVED"),
        ("transferred", "TRANSFERRED"),
        ("abandoned", "ABANDONED"),
        ("containment", "CONTAINMENT"),
    ],
    "sites": [
        ("interval_start", "INTERVAL"),
        ("site_name", "SITE"),
        ("offered", "OFFERED"),
        ("answered", "ANSWERED"),
        ("abandoned_long", "ABAND LONG"),
        ("service_level", "SL"),
        ("asa_s", "ASA"),
        ("aht_s", "AHT"),
        ("agents", "AGENTS"),
        ("occupancy", "OCCUPANCY"),
    ],
}
_RATIOS = {"service_level", "occupancy", "containment"}
_SECONDS = {"asa_s", "aht_s"}


def _cell(key: str, value: Any) -> str:
    if key in _RATIOS:
        return _pct(value)
    if key in _SECONDS:
        return _secs(value)
    return "-" if value is None else str(value)


def _csv(kind: str, rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    keys = [k for k, _ in COLUMNS[kind]]
    writer = csv.writer(out)
    writer.writerow(keys)
    for row in rows:
        writer.writerow(["" if row.get(k) is None else row.get(k) for k in keys])
    return out.getvalue()


AGENT_PAGE = 2000  # the largest page the API gives (docs/reporting.md, "Agent report pages")


def _joined(pages: Iterator[dict[str, Any]]) -> dict[str, Any]:
    """Every page's rows under the first page's head (formula, range, zone): the whole report."""
    result: dict[str, Any] | None = None
    for page in pages:
        if result is None:
            result = {k: v for k, v in page.items() if k != "page"}
        else:
            result["rows"] += page["rows"]
    assert result is not None  # agent_pages yields at least one page
    return result


def _plot(kind: str, result: dict[str, Any], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise CliError("--plot needs matplotlib: pip install matplotlib") from None
    key, label, series_key = {
        "queues": ("service_level", "service level", "queue_name"),
        "agents": ("occupancy", "occupancy", "agent_id"),
        "ivr": ("containment", "containment", "flow"),
        "sites": ("service_level", "service level", "site_name"),
    }[kind]
    import matplotlib.dates as mdates

    rows = result["rows"]
    fig, ax = plt.subplots(figsize=(10, 4))
    for name in sorted({str(r[series_key]) for r in rows}):
        points = [
            (r["interval_start"], r[key]) for r in rows if str(r[series_key]) == name and r[key] is not None
        ]
        if points:
            ax.plot(
                # matplotlib's stubs: no datetime in ArrayLike, though its unit converters plot datetimes.
                [datetime.fromisoformat(str(x)) for x, _ in points],  # type: ignore[arg-type]
                [y for _, y in points],
                marker="o",
                label=name,
            )
    ax.set_ylabel(label)
    ax.set_ylim(0, 1.05)
    start, end = datetime.fromisoformat(str(result["from"])), datetime.fromisoformat(str(result["to"]))
    ax.set_xlim(start, end)  # type: ignore[arg-type]  # matplotlib stubs: set_xlim takes datetimes too
    # matplotlib.dates ships without type hints.
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d %H:%M"))  # type: ignore[no-untyped-call]
    ax.set_title(f"{label} per {result['interval']} ({result['timezone']})")
    ax.legend(loc="best", fontsize="small")
    ax.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def register(cli: click.Group) -> None:
    @command(cli, "monitor")
    @click.option(
        "--once", is_flag=True, help="Print one snapshot and exit (with --json: one JSON document)."
    )
    @click.option(
        "--seconds", type=click.FloatRange(min=0, min_open=True), default=None, help="Stop after this long."
    )
    def monitor(state: State, once: bool, seconds: float | None) -> None:
        """The live view of queues and agents, refreshed as events happen (Ctrl-C to stop)."""
        client = state.client()
        if once:
            snap = _snapshot_json(client)
            if state.json:
                emit_json(snap)
            else:
                console().print(Board(snap["queues"], snap["agents"]).render(time.time()))
            return
        if state.json:
            raise click.UsageError("--json needs --once (the live view is for a terminal)")
        deadline = None if seconds is None else time.monotonic() + seconds
        board: Board | None = None
        try:
            with Live(console=console(), refresh_per_second=4, screen=False) as live:
                for message in client.realtime.feed(timeout=1.0):
                    if message.get("type") == "snapshot":
                        board = Board(message["queues"], message["agents"])
                    elif board is not None:
                        board.apply(message)
                        if board.stale:  # today's totals moved: re-read them (the feed carries events)
                            fresh = client.realtime.queues()
                            board = Board(fresh, {"agents": list(board.agents.values())})
                    if board is not None:
                        live.update(board.render(time.time()))
                    if deadline is not None and time.monotonic() >= deadline:
                        return
        except KeyboardInterrupt:
            return
        except OSError as exc:
            raise CliError(f"the live feed closed: {exc}") from None

    reports = group(cli, "report", "Interval reports: queues, agents, IVR flows, sites (docs/reporting.md).")

    def _report_command(kind: str) -> None:
        title = {"ivr": "IVR flow", "sites": "Site (its queues and agents)"}.get(kind, kind[:-1].capitalize())

        @command(reports, kind, help=f"{title} figures per interval, with the formula used.")
        @click.option(
            "--from",
            "start",
            type=WHEN,
            default=None,
            help="Start: 2h, 1d, today, ISO 8601 (default: a day before --to).",
        )
        @click.option("--to", "end", type=WHEN, default=None, help="End (default: now).")
        @click.option("--interval", type=click.Choice(INTERVALS), default="30m", show_default=True)
        @click.option("--id", "ids", multiple=True, help="Only this queue, agent or flow id (repeatable).")
        @click.option(
            "--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True
        )
        @click.option(
            "--plot",
            type=click.Path(dir_okay=False, path_type=Path),
            default=None,
            help="Also draw a chart (PNG).",
        )
        @click.option(
            "--page-size",
            type=click.IntRange(1, AGENT_PAGE),
            default=AGENT_PAGE,
            show_default=True,
            hidden=kind != "agents",
            help="Agents fetched per request (every page is fetched; --format csv is one request).",
        )
        def run(
            state: State,
            start: datetime | None,
            end: datetime | None,
            interval: str,
            ids: tuple[str, ...],
            fmt: str,
            plot: Path | None,
            page_size: int,
        ) -> None:
            client = state.client()
            if kind == "agents":
                if fmt == "csv" and not state.json and plot is None:
                    # One request, the CSV written by the server, copied as it comes (flat memory).
                    out = sys.stdout.buffer
                    for chunk in client.reports.agents_csv(
                        start=start, end=end, interval=interval, ids=list(ids) or None
                    ):
                        out.write(chunk)
                    out.flush()
                    return
                pages = client.reports.agent_pages(
                    start=start, end=end, interval=interval, ids=list(ids) or None, limit=page_size
                )
                result = _joined(pages)
            else:
                method = getattr(client.reports, kind)
                result = method(start=start, end=end, interval=interval, ids=list(ids) or None)
            rows = result["rows"]
            if plot is not None:
                _plot(kind, result, plot)
            if state.json or fmt == "json":
                emit_json(result)
            elif fmt == "csv":
                sys.stdout.write(_csv(kind, rows))
            else:
                table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
                for _, title in COLUMNS[kind]:
                    table.add_column(title)
                for row in rows:
                    table.add_row(*(_cell(k, row.get(k)) for k, _ in COLUMNS[kind]))
                out = console()
                out.print(table if rows else Text("no contacts in that period", style="dim"))
                formula = "; ".join(f"{k}: {v}" for k, v in result["formula"].items())
                out.print(
                    Text(
                        f"{result['from']} to {result['to']} ({result['timezone']}) - {formula}", style="dim"
                    )
                )
            if plot is not None and not state.json and fmt == "table":
                click.echo(f"chart written to {plot}", err=True)

    for kind in ("queues", "agents", "ivr", "sites"):
        _report_command(kind)
    staffing.register_planning(reports)

    contacts_group = cli.commands["contacts"]  # contacts.register made it
    assert isinstance(contacts_group, click.Group)

    @command(contacts_group, "export")
    @click.option(
        "--from", "start", type=WHEN, default=None, help="Arrived at or after (default: a day before --to)."
    )
    @click.option("--to", "end", type=WHEN, default=None, help="Arrived before (default: now).")
    @click.option(
        "--output",
        "-o",
        "output",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="File (default: stdout).",
    )
    def export(state: State, start: datetime | None, end: datetime | None, output: Path | None) -> None:
        """Contact records of a period as CSV, streamed (a progress bar on stderr when writing a file)."""
        client = state.client()
        progress = Progress(
            TextColumn("exporting contacts"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
            transient=True,
            disable=output is None or state.json,
        )
        task = progress.add_task("export", total=None)
        written = 0
        target = open(output, "wb") if output is not None else sys.stdout.buffer
        try:
            with progress:
                chunks = client.contacts.export_csv(
                    start=start, end=end, on_total=lambda n: progress.update(task, total=n)
                )
                for i, chunk in enumerate(chunks):
                    target.write(chunk)
                    lines = chunk.count(b"\n") - (1 if i == 0 else 0)  # the header line is no record
                    written += lines
                    progress.update(task, advance=lines)
        finally:
            if output is not None:
                target.close()
        if output is not None:
            if state.json:
                emit_json({"file": str(output), "records": written})
            else:
                click.echo(f"{written} contact records written to {output}", err=True)

    hooks = group(cli, "webhooks", "Endpoints for contact and recording events, and their delivery log.")

    @command(hooks, "add")
    @click.argument("url")
    @click.option(
        "--events",
        default="contact,recording",
        show_default=True,
        help="Families or event types, comma-separated.",
    )
    def add(state: State, url: str, events: str) -> None:
        """Add an endpoint; prints its signing secret once."""
        made = state.client().webhooks.create(url, events=[e.strip() for e in events.split(",") if e.strip()])
        if state.json:
            emit_json(made)
            return
        console().print(Text(f"webhook {made['id']} -> {made['url']} ({', '.join(made['events'])})"))
        console().print(Text(f"secret (shown once): {made['secret']}", style="bold"))

    @command(hooks, "list")
    def list_(state: State) -> None:
        """List endpoints."""
        items = state.client().webhooks.list()
        if state.json:
            emit_json(items)
            return
        output.table(["ID", "URL", "EVENTS"], [(w["id"], w["url"], ", ".join(w["events"])) for w in items])

    @command(hooks, "remove")
    @click.argument("webhook_id")
    def remove(state: State, webhook_id: str) -> None:
        """Remove an endpoint (its deliveries go with it)."""
        state.client().webhooks.delete(webhook_id)
        if state.json:
            emit_json({"deleted": webhook_id})
        else:
            output.note(f"webhook {webhook_id} removed")

    @command(hooks, "deliveries")
    @click.option("--status", type=click.Choice(["pending", "delivered", "failed"]), default=None)
    @click.option("--limit", type=click.IntRange(1, 500), default=50, show_default=True)
    def deliveries(state: State, status: str | None, limit: int) -> None:
        """The delivery log, newest first."""
        items = state.client().webhooks.deliveries(status=status, limit=limit)
        if state.json:
            emit_json(items)
            return
        output.table(
            ["ID", "EVENT", "STATUS", "ATTEMPTS", "LAST", "AT"],
            [
                (
                    d["id"],
                    d["event_type"],
                    d["status"],
                    d["attempts"],
                    d["last_error"] or d["last_status"],
                    d["updated_at"],
                )
                for d in items
            ],
        )

    @command(hooks, "replay")
    @click.argument("delivery_id")
    def replay(state: State, delivery_id: str) -> None:
        """Send a delivery again now."""
        d = state.client().webhooks.replay(delivery_id)
        if state.json:
            emit_json(d)
        else:
            output.note(
                f"delivery {d['id']}: {d['status']} after {d['attempts']} attempts ({d['last_error'] or d['last_status']})"
            )
