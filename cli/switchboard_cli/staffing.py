"""`switchboard erlang`: staffing what-ifs without history (Erlang C, or Erlang A with --patience).

The math is the SDK's `switchboard.staffing` (pure, no server): nothing here talks to the API.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click
from switchboard import staffing

from . import output
from .contacts import WHEN
from .context import State, command, emit_json
from .parsing import SERVICE_LEVEL
from .resources import find_queue

__all__ = ["parse_period", "register", "register_history", "register_planning"]

DEFAULT_AHT_S = 180.0  # when a day has no handled contact to measure it

_PERIOD = re.compile(r"^\s*([0-9]{1,6})\s*([smhd]?)\s*$")
_PERIOD_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "": 60}


def parse_period(text: str) -> int:
    """`30m`, `1h`, `900s`, `30` (minutes) -> seconds."""
    match = _PERIOD.match(text.lower())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r}: expected a period such as 30m, 1h or 900s")
    return int(match.group(1)) * _PERIOD_S[match.group(2)]


class _Period(click.ParamType):  # type: ignore[type-arg]  # generic only in newer click stubs
    name = "PERIOD"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        try:
            return parse_period(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def register(cli: click.Group) -> None:
    @command(cli, "erlang")
    @click.option("--calls", type=click.FloatRange(min=0), required=True, help="Calls offered per period.")
    @click.option("--per", "period_s", type=_Period(), default="30m", show_default=True, help="The period.")
    @click.option(
        "--aht",
        type=click.FloatRange(min=0, min_open=True),
        required=True,
        help="Average handle time, seconds.",
    )
    @click.option(
        "--target",
        type=SERVICE_LEVEL,
        default="80/20",
        show_default=True,
        help="Service level PERCENT/SECONDS.",
    )
    @click.option(
        "--shrinkage",
        type=click.FloatRange(0, 100, max_open=True),
        default=0.0,
        help="Percent of scheduled time away from the phones.",
    )
    @click.option(
        "--agents",
        type=click.IntRange(min=1),
        default=None,
        help="Evaluate this many agents instead of finding the fewest.",
    )
    @click.option(
        "--patience",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Mean caller patience, seconds: Erlang A (callers give up).",
    )
    def erlang(
        state: State,
        calls: float,
        period_s: int,
        aht: float,
        target: tuple[int, int],
        shrinkage: float,
        agents: int | None,
        patience: float | None,
    ) -> None:
        """Agents needed, service level, probability of waiting, ASA and occupancy for a load.

        Example: `switchboard erlang --calls 100 --per 30m --aht 180 --target 80/20 --shrinkage 30`.
        """
        percent, seconds = target
        load = staffing.traffic_erlangs(calls, period_s, aht)
        if agents is None:
            if percent >= 100:
                raise click.UsageError("--target: a 100 % service level needs infinitely many agents")
            needed = staffing.agents_for_target(load, aht, percent / 100, seconds).agents
            # Erlang A needs fewer (callers who give up free agents): the fewest meeting the target.
            if patience is not None and needed > 0:
                needed = next(
                    n
                    for n in range(1, needed + 1)
                    if staffing.erlang_a(n, load, aht, patience, seconds).service_level >= percent / 100
                )
        else:
            needed = agents
        figures: staffing.ErlangA | staffing.ErlangC
        if patience is not None and needed > 0:
            figures = staffing.erlang_a(needed, load, aht, patience, seconds)
        else:
            figures = staffing.erlang_c(needed, load, aht, seconds)
        meets = figures.service_level >= percent / 100
        scheduled = staffing.scheduled_with_shrinkage(needed, shrinkage / 100)
        if state.json:
            emit_json(
                {
                    "model": "erlang_a" if isinstance(figures, staffing.ErlangA) else "erlang_c",
                    "calls": calls,
                    "period_s": period_s,
                    "target": {"percent": percent, "seconds": seconds},
                    **figures.as_dict(),
                    "meets_target": meets,
                    "shrinkage_percent": shrinkage,
                    "scheduled": scheduled,
                }
            )
            return
        rows: list[tuple[str, object]] = [
            ("model", "Erlang A" if isinstance(figures, staffing.ErlangA) else "Erlang C"),
            ("load", f"{load:.2f} Erlangs"),
            ("agents", needed),
            (f"scheduled ({shrinkage:g} % shrinkage)", scheduled),
            (f"service level ({seconds} s)", f"{figures.service_level:.3f}"),
            ("probability of waiting", f"{figures.p_wait:.3f}"),
        ]
        if isinstance(figures, staffing.ErlangA):
            rows.append(("probability of abandoning", f"{figures.p_abandon:.3f}"))
            rows.append(("average wait", f"{figures.avg_wait_s:.1f} s"))
        else:
            unbounded = figures.asa_s == float("inf")
            rows.append(("average speed of answer", "unbounded" if unbounded else f"{figures.asa_s:.1f} s"))
        rows.append(("occupancy", f"{figures.occupancy:.3f}"))
        rows.append(("meets target", "yes" if meets else "no"))
        per = f"{period_s // 60} min" if period_s % 60 == 0 else f"{period_s} s"
        output.details(rows, title=f"{calls:g} calls per {per}, AHT {aht:g} s, target {percent}/{seconds}")


def register_history(cli: click.Group) -> None:
    @command(cli, "staffing")
    @click.option("--queue", "queue_ref", required=True, help="Queue name or id.")
    @click.option(
        "--date",
        "day",
        type=click.DateTime(formats=["%Y-%m-%d"]),
        default=None,
        help="The day (default: today).",
    )
    @click.option("--interval", type=click.Choice(["15m", "30m", "60m"]), default="30m", show_default=True)
    @click.option(
        "--target", type=SERVICE_LEVEL, default=None, help="PERCENT/SECONDS (default: the queue's own)."
    )
    @click.option(
        "--shrinkage",
        type=click.FloatRange(0, 100, max_open=True),
        default=0.0,
        help="Percent away from the phones.",
    )
    def staffing_cmd(
        state: State,
        queue_ref: str,
        day: datetime | None,
        interval: str,
        target: tuple[int, int] | None,
        shrinkage: float,
    ) -> None:
        """Agents needed per interval of a day (Erlang C on that interval's offered contacts and AHT)
        beside the agents who were logged in to the queue; for a day to come, from the forecast."""
        client = state.client()
        queue = find_queue(client, queue_ref)
        percent, seconds = target or (queue.sl_percent, queue.sl_seconds)
        if percent >= 100:
            raise click.UsageError("--target: a 100 % service level needs infinitely many agents")
        zone = ZoneInfo(client.realtime.queues()["timezone"])
        local_day = (day or datetime.now(zone)).date()
        if local_day > datetime.now(zone).date():  # a day to come: the forecast from history
            forecast = client.reports.forecast(
                queue.id,
                first_day=local_day,
                days=1,
                interval=interval,
                target=(percent, seconds),
                shrinkage=shrinkage,
            )
            _print_forecast(state, forecast, f"no history to forecast {queue.name} on {local_day} from")
            return
        start = datetime(local_day.year, local_day.month, local_day.day, tzinfo=zone)
        report = client.reports.queues(
            start=start, end=start + timedelta(days=1), interval=interval, ids=[queue.id]
        )
        period_s = parse_period(interval)
        rows = report["rows"]
        handled = [r["aht_s"] for r in rows if r["aht_s"] is not None]
        day_aht = sum(handled) / len(handled) if handled else DEFAULT_AHT_S
        plan = []
        for r in rows:
            aht = r["aht_s"] or day_aht
            load = staffing.traffic_erlangs(r["offered"], period_s, aht)
            needed = staffing.agents_for_target(load, aht, percent / 100, seconds).agents
            plan.append(
                {
                    "interval_start": r["interval_start"],
                    "offered": r["offered"],
                    "aht_s": aht,
                    "load_erlangs": load,
                    "needed": needed,
                    "scheduled": staffing.scheduled_with_shrinkage(needed, shrinkage / 100),
                    "logged_in_avg": r.get("logged_in_avg"),
                    "service_level": r["service_level"],
                }
            )
        result = {
            "queue": queue.name,
            "date": local_day.isoformat(),
            "timezone": str(zone),
            "target": {"percent": percent, "seconds": seconds},
            "shrinkage_percent": shrinkage,
            "intervals": plan,
        }
        if state.json:
            emit_json(result)
            return
        output.table(
            ["INTERVAL", "OFFERED", "AHT", "ERLANGS", "NEEDED", "SCHEDULED", "LOGGED IN", "SL"],
            [
                (
                    str(p["interval_start"])[11:16],
                    p["offered"],
                    f"{p['aht_s']:.0f}s",
                    f"{p['load_erlangs']:.1f}",
                    p["needed"],
                    p["scheduled"],
                    "-" if p["logged_in_avg"] is None else f"{p['logged_in_avg']:.1f}",
                    "-" if p["service_level"] is None else f"{p['service_level'] * 100:.0f}%",
                )
                for p in plan
            ],
            empty=f"no contacts queued to {queue.name} on {local_day}",
        )
        output.note(
            f"Erlang C for {percent}/{seconds}; AHT per interval (the day's {day_aht:.0f}s where none)"
        )


def _print_forecast(state: State, result: dict[str, Any], empty: str) -> None:
    if state.json:
        emit_json(result)
        return
    rows = [r for r in result["rows"] if r["offered"] > 0]
    zone = ZoneInfo(result["timezone"])
    output.table(
        ["INTERVAL", "OFFERED", "AHT", "ERLANGS", "AGENTS", "SCHEDULED", "SL"],
        [
            (
                datetime.fromisoformat(str(r["interval_start"]))
                .astimezone(zone)
                .strftime("%a %Y-%m-%d %H:%M"),
                f"{r['offered']:.1f}",
                f"{r['aht_s']:.0f}s",
                f"{r['load_erlangs']:.1f}",
                r["agents"],
                r["scheduled"],
                "-" if r["service_level"] is None else f"{r['service_level'] * 100:.0f}%",
            )
            for r in rows
        ],
        empty=empty,
    )
    target = result["target"]
    output.note(
        f"forecast for {result['queue_name']} from {result['history']['weeks_used']} week(s) of history"
        f" ({result['timezone']}); Erlang C for {target['percent']}/{target['seconds']},"
        f" {result['shrinkage'] * 100:g} % shrinkage; {result['method']}"
    )


def register_planning(reports: click.Group) -> None:
    """`switchboard report forecast` and `switchboard report replay`."""

    @command(reports, "forecast")
    @click.option("--queue", "queue_ref", required=True, help="Queue name or id.")
    @click.option(
        "--from",
        "first_day",
        type=click.DateTime(formats=["%Y-%m-%d"]),
        default=None,
        help="First day (default: tomorrow).",
    )
    @click.option("--days", type=click.IntRange(1, 31), default=7, show_default=True)
    @click.option("--interval", type=click.Choice(["15m", "30m", "60m"]), default="30m", show_default=True)
    @click.option(
        "--weeks", type=click.IntRange(1, 26), default=8, show_default=True, help="Weeks of history."
    )
    @click.option(
        "--target", type=SERVICE_LEVEL, default=None, help="PERCENT/SECONDS (default: the queue's own)."
    )
    @click.option(
        "--shrinkage", type=click.FloatRange(0, 100, max_open=True), default=0.0, help="Percent away."
    )
    def forecast_cmd(
        state: State,
        queue_ref: str,
        first_day: datetime | None,
        days: int,
        interval: str,
        weeks: int,
        target: tuple[int, int] | None,
        shrinkage: float,
    ) -> None:
        """Offered contacts, AHT and agents needed per interval of the days to come, from the same weekday
        and time of the last weeks (docs/reporting.md)."""
        client = state.client()
        queue = find_queue(client, queue_ref)
        if target is not None and target[0] >= 100:
            raise click.UsageError("--target: a 100 % service level needs infinitely many agents")
        result = client.reports.forecast(
            queue.id,
            first_day=first_day.date() if first_day else None,
            days=days,
            interval=interval,
            weeks=weeks,
            target=target,
            shrinkage=shrinkage,
        )
        _print_forecast(state, result, f"no history for {queue.name}: nothing to forecast")

    @command(reports, "replay")
    @click.option("--queue", "queue_ref", required=True, help="Queue name or id.")
    @click.option(
        "--agents",
        "agents",
        type=click.IntRange(1, 10_000),
        multiple=True,
        required=True,
        help="Agents to replay with (repeatable: --agents 10 --agents 12).",
    )
    @click.option("--from", "start", type=WHEN, default=None, help="Start (default: a day before --to).")
    @click.option("--to", "end", type=WHEN, default=None, help="End (default: now).")
    def replay_cmd(
        state: State,
        queue_ref: str,
        agents: tuple[int, ...],
        start: datetime | None,
        end: datetime | None,
    ) -> None:
        """What if: the queue's own contacts of the period (arrivals, handle times, patience of those who
        hung up) replayed first come first served with each number of agents, beside what happened."""
        client = state.client()
        queue = find_queue(client, queue_ref)
        result = client.reports.replay(queue.id, agents=list(agents), start=start, end=end)
        if state.json:
            emit_json(result)
            return
        actual = result["actual"]
        output.table(
            ["AGENTS", "OFFERED", "ANSWERED", "IN SL", "ABAND LONG", "SL", "ASA", "OCCUPANCY"],
            [
                (
                    r["agents"],
                    r["offered"],
                    r["answered"],
                    r["answered_within"],
                    r["abandoned_long"],
                    "-" if r["service_level"] is None else f"{r['service_level'] * 100:.1f}%",
                    f"{r['asa_s']:.1f}s",
                    f"{r['occupancy'] * 100:.0f}%",
                )
                for r in result["rows"]
            ],
            empty="nothing to replay",
        )
        sl = actual["service_level"]
        output.note(
            f"{queue.name}, {actual['offered']} contacts from {result['from']} to {result['to']}; what happened:"
            f" SL {'-' if sl is None else f'{sl * 100:.1f}%'} ({result['sl_seconds']} s, short abandons under"
            f" {result['short_abandon_seconds']} s left out); {result['method']}"
        )
