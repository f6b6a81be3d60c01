"""`switchboard recordings`: list and search recordings, download one (with a progress bar), delete, and
put or release a legal hold."""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

import click
import switchboard
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from . import output
from .contacts import WHEN
from .context import CliError, State, command, emit_json, group
from .parsing import RECORDING, RETENTION_OR_NONE, TENANT_SETTING
from .platform import PlatformGroup

__all__ = ["register"]

PAGE = 200


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def register(cli: click.Group) -> None:
    recordings = group(
        cli,
        "recordings",
        "Call recordings: list and search, download, delete, legal hold (docs/recording.md).",
        cls=PlatformGroup,
        platform_path="recordings",  # `recordings rewrap`: an operator command of the platform's
    )

    @command(recordings, "list")
    @click.option("--since", type=WHEN, help="Started at or after: 30m, 2h, 1d, today, or ISO 8601.")
    @click.option("--until", type=WHEN, help="Started before this time.")
    @click.option("--queue", metavar="NAME_OR_ID", help="Only this queue's recordings.")
    @click.option("--agent", metavar="EMAIL_OR_ID", help="Only this agent's recordings.")
    @click.option("--number", metavar="NUMBER", help="The caller's or the dialled number.")
    @click.option("--contact", metavar="ID", help="This contact's recordings and the voicemails left on it.")
    @click.option(
        "--kind",
        type=click.Choice(["talk", "consult", "voicemail"]),
        help="Calls' segments (talk, consult) or messages callers left (voicemail).",
    )
    @click.option(
        "--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="At most this many."
    )
    def recordings_list(
        state: State,
        since: datetime | None,
        until: datetime | None,
        queue: str | None,
        agent: str | None,
        number: str | None,
        contact: str | None,
        kind: str | None,
        limit: int,
    ) -> None:
        """List recordings and voicemails, newest first."""
        found: list[switchboard.Recording] = []
        with state.client() as client:
            for rec in client.recordings.iter(
                page_size=min(limit, PAGE),
                since=since,
                until=until,
                queue=queue,
                agent=agent,
                number=number,
                contact=contact,
                kind=kind,
            ):
                found.append(rec)
                if len(found) >= limit:
                    break
        if state.json:
            emit_json(found)
            return
        output.table(
            ("STARTED", "ID", "KIND", "CALLER", "QUEUE", "LENGTH", "STATUS"),
            (
                [
                    output.short_time(r.started_at),
                    r.id,
                    r.kind,
                    r.caller or "anonymous",
                    r.queue_name or r.queue_id,
                    _duration(r.duration_s),
                    r.status
                    + (" partial" if r.partial else "")
                    + (" held" if r.legal_hold else "")
                    + (f" {len(r.pauses)} pause(s)" if r.pauses else ""),
                ]
                for r in found
            ),
            empty="no recordings",
        )

    @command(recordings, "conversation")
    @click.argument("recording_id", metavar="ID")
    def recordings_conversation(state: State, recording_id: str) -> None:
        """A contact's whole conversation: its recordings in order (each agent, each consultation)."""
        with state.client() as client:
            found = client.recordings.conversation(recording_id)
        if state.json:
            emit_json(found)
            return
        output.table(
            ("#", "KIND", "AGENT", "CONSULTED", "STARTED", "LENGTH", "STATUS", "ID"),
            (
                [
                    seg.segment,
                    seg.kind,
                    seg.agent_id,
                    seg.consulted_agent_id or "",
                    output.short_time(seg.started_at),
                    _duration(seg.duration_s),
                    seg.status + (" partial" if seg.partial else ""),
                    seg.id,
                ]
                for seg in found.segments
            ),
            empty="no recordings",
        )

    @command(recordings, "get")
    @click.argument("recording_id", metavar="ID")
    @click.option(
        "-o",
        "--output",
        "path",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        help="Write the WAV here (two channels: caller left, agent right). Without it: show the details.",
    )
    @click.option(
        "--format",
        "fmt",
        type=click.Choice(["wav", "opus"]),
        default="wav",
        show_default=True,
        help="wav: the G.711 master; opus: its Opus-in-Ogg copy (when the tenant keeps copies).",
    )
    def recordings_get(state: State, recording_id: str, path: Path | None, fmt: str) -> None:
        """Show a recording, or download it with -o FILE (a progress bar on a terminal; SHA-256 checked)."""
        with state.client() as client:
            rec = client.recordings.get(recording_id)
            if path is None:
                if state.json:
                    emit_json(rec)
                    return
                output.details(
                    [
                        ("id", rec.id),
                        ("status", rec.status + (" (partial)" if rec.partial else "")),
                        ("caller", rec.caller),
                        ("dialled", rec.dialled),
                        ("queue", rec.queue_name or rec.queue_id),
                        ("agent", rec.agent_id),
                        ("started", output.short_time(rec.started_at)),
                        ("length", _duration(rec.duration_s)),
                        ("paused", ", ".join(f"{a:.1f}-{b:.1f}s" for a, b in rec.pauses) or None),
                        ("formats", ", ".join(rec.formats)),
                        ("legal hold", "yes" if rec.legal_hold else "no"),
                        ("purge after", output.short_time(rec.purge_after) if rec.purge_after else None),
                        ("sha256", rec.sha256),
                    ]
                )
                return
            if rec.status != "available":
                raise CliError(
                    f"recording {rec.id} is {rec.status}; only an available recording can be downloaded"
                )
            if fmt not in rec.formats:
                raise CliError(f"recording {rec.id} has no {fmt} copy (it has: {', '.join(rec.formats)})")
            show_bar = sys.stderr.isatty() and not state.json
            with Progress(
                "[progress.description]{task.description}",
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                console=Console(stderr=True),
                disable=not show_bar,
                transient=True,
            ) as bar:
                task = bar.add_task(path.name, total=rec.size_bytes if fmt == "wav" else None)

                def progress(received: int, total: int | None) -> None:
                    bar.update(task, completed=received, total=total)

                written = client.recordings.download(recording_id, path, progress=progress, format=fmt)
        if state.json:
            size = written.stat().st_size
            emit_json(
                {"id": rec.id, "path": str(written), "bytes": size, "format": fmt, "sha256": rec.sha256}
            )
        else:
            output.note(f"wrote {written} ({written.stat().st_size} bytes, SHA-256 checked)")

    @command(recordings, "delete")
    @click.argument("recording_id", metavar="ID")
    @click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
    def recordings_delete(state: State, recording_id: str, yes: bool) -> None:
        """Delete a recording's audio for good (refused while it is under legal hold; audited)."""
        if not yes:
            if not sys.stdin.isatty():
                raise CliError("deleting a recording cannot be undone; pass --yes to confirm", exit_code=2)
            if not click.confirm(f"Delete recording {recording_id} for good?", default=False, err=True):
                raise CliError("not deleted", exit_code=1)
        with state.client() as client:
            client.recordings.delete(recording_id)
        if state.json:
            emit_json({"id": recording_id, "deleted": True})
        else:
            output.note(f"deleted recording {recording_id}")

    @command(recordings, "hold")
    @click.argument("recording_id", metavar="ID")
    @click.option("--release", is_flag=True, help="Release the hold instead.")
    def recordings_hold(state: State, recording_id: str, release: bool) -> None:
        """Put a legal hold on a recording (no purge, no deletion), or --release it."""
        with state.client() as client:
            rec = client.recordings.release(recording_id) if release else client.recordings.hold(recording_id)
        if state.json:
            emit_json(rec)
        else:
            output.note(f"recording {rec.id}: legal hold {'on' if rec.legal_hold else 'released'}")

    @command(recordings, "pause")
    @click.argument("recording_id", metavar="ID")
    def recordings_pause(state: State, recording_id: str) -> None:
        """Pause a live call's recording (e.g. while a card number is read): nothing of the pause is kept."""
        with state.client() as client:
            rec = client.recordings.pause(recording_id)
        if state.json:
            emit_json(rec)
        else:
            output.note(f"recording {rec.id} paused")

    @command(recordings, "resume")
    @click.argument("recording_id", metavar="ID")
    def recordings_resume(state: State, recording_id: str) -> None:
        """Resume a paused recording."""
        with state.client() as client:
            rec = client.recordings.resume(recording_id)
        if state.json:
            emit_json(rec)
        else:
            output.note(f"recording {rec.id} resumed")

    @command(recordings, "settings")
    @click.option("--recording", type=RECORDING, metavar="all|none|PERCENT", help="Share of calls recorded.")
    @click.option(
        "--retention", type=RETENTION_OR_NONE, metavar="DAYS|none", help="Days kept, or none (until deleted)."
    )
    @click.option(
        "--opus-copy/--no-opus-copy",
        default=None,
        help="Keep an Opus-in-Ogg copy beside each new recording's WAV master.",
    )
    @click.option(
        "--announcement",
        metavar="TEXT|none",
        help='What callers hear before a recorded call is connected ("This call may be recorded.").',
    )
    def recordings_settings(
        state: State,
        recording: int | str | None,
        retention: int | str | None,
        opus_copy: bool | None,
        announcement: str | None,
    ) -> None:
        """Show the tenant's recording policy, or change it (a queue's own settings win over it)."""
        with state.client() as client:
            current = client.recordings.settings()
            if any(v is not None for v in (recording, retention, opus_copy, announcement)):
                if recording == TENANT_SETTING:
                    raise CliError("the tenant's own setting is all, none or a percentage", exit_code=2)
                current = client.recordings.set_settings(
                    recording_percent=int(recording)
                    if recording is not None
                    else current["recording_percent"],
                    retention_days=(None if retention == "none" else int(retention))
                    if retention is not None
                    else current["retention_days"],
                    opus_copy=current.get("opus_copy", False) if opus_copy is None else opus_copy,
                    announcement=current.get("announcement")
                    if announcement is None
                    else (None if announcement.strip().lower() == "none" else announcement),
                )
        if state.json:
            emit_json(current)
            return
        days = current["retention_days"]
        output.details(
            [
                ("recorded", f"{current['recording_percent']} % of calls"),
                ("kept", f"{days} days" if days else "until deleted"),
                ("opus copy", "yes" if current.get("opus_copy") else "no"),
                ("announcement", current.get("announcement") or "none"),
            ]
        )

    @command(recordings, "rotate-key")
    def recordings_rotate_key(state: State) -> None:
        """Make a new data key for the tenant's new recordings (older ones stay readable)."""
        with state.client() as client:
            key = client.recordings.rotate_key()
        if state.json:
            emit_json(key)
        else:
            output.note(f"new recording key {key['id']}")
