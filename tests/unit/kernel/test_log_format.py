"""Logs for people and machines (services/kernel/log.py): console lines on a terminal, JSON otherwise, the
standard library's records (aioice) through the same renderer; the coordinator's per-call lines."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from services.contacts.calllog import call_line
from services.contacts.records import ContactRecord
from services.kernel import events as ev
from services.kernel.log import log_format

PROGRAM = """
import logging
from services.kernel.log import configure_logging, get_logger
configure_logging("media", "info")
get_logger().info("sip_listening", port=5060)
logging.getLogger("aioice.ice").info("Connection(0) Check CandidatePair hidden")
logging.getLogger("aioice.ice").warning("Connection(0) ICE failed")
"""


def _run(fmt: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, "-c", PROGRAM],
        env={"SB_LOG_FORMAT": fmt, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_console_lines_are_short_and_aioice_goes_through_them() -> None:
    lines = _run("console")
    assert len(lines) == 2, lines  # aioice's INFO (one per ICE check) only at debug
    assert "sip_listening" in lines[0] and "port=5060" in lines[0] and "{" not in lines[0]
    assert "service=" not in lines[0]  # the runtime's prefix names the service
    assert "warning" in lines[1] and "ICE failed" in lines[1] and "aioice.ice" in lines[1]


def test_json_lines_for_machines_include_aioice() -> None:
    first, second = (json.loads(line) for line in _run("json"))
    assert first["event"] == "sip_listening" and first["service"] == "media" and first["level"] == "info"
    assert second["logger"] == "aioice.ice" and second["level"] == "warning"


def test_the_format_follows_the_terminal_unless_set() -> None:
    class Tty:
        def __init__(self, tty: bool) -> None:
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    assert log_format({}, Tty(True)) == "console" and log_format({}, Tty(False)) == "json"
    assert log_format({"SB_LOG_FORMAT": "JSON"}, Tty(True)) == "json"
    with pytest.raises(ValueError, match="console or json"):
        log_format({"SB_LOG_FORMAT": "xml"}, Tty(True))


def test_each_call_step_has_one_info_line_with_its_contact_id() -> None:
    tenant, call, queue = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    record = ContactRecord(
        id=call, tenant_id=tenant, caller="+15550177", dialled="+15550100", queue_id=queue,
        queue_name="Support", state="arrived", arrived_at=100.0,
    )  # fmt: skip

    def change(old: str | None, new: str, **extra: str) -> ev.ContactStateChanged:
        return ev.ContactStateChanged(
            tenant_id=tenant,
            call_id=call,
            old=old,
            new=new,
            cause="x",
            ts=0.0,
            **extra,  # type: ignore[arg-type]
        )

    steps = [
        (change(None, "arrived"), "call_arrived"),
        (change("arrived", "queued", queue_id=str(queue)), "call_routed"),
        (change("queued", "offered", agent_id="a1"), "contact_state"),
        (change("offered", "connected", agent_id="a1"), "call_answered"),
    ]
    for step, name in steps:
        level, event, fields = call_line(step, record)
        assert (event, fields["contact_id"]) == (name, str(call))
        assert level == ("debug" if name == "contact_state" else "info")
    assert call_line(steps[0][0], record)[2]["route"] == "queue Support"
    assert call_line(steps[1][0], record)[2]["to"] == "queue Support"
    record.outcome, record.cause, record.ended_at = "handled", "remote_bye", 130.0
    level, event, fields = call_line(change("wrap_up", "ended"), record)
    assert (level, event, fields["outcome"], fields["cause"], fields["seconds"]) == (
        "info", "call_ended", "handled", "remote_bye", 30.0,
    )  # fmt: skip
