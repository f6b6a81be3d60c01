"""Pooled connections go back without asyncpg's reset query (services/kernel/db.py, `_keep_session`), so
nothing in services/ may leave session state on one: a setting outside its transaction, a session-level
advisory lock, a LISTEN, a cursor WITH HOLD or a temporary table would reach the next borrower (another
tenant's request). Transaction-scoped forms (`set_config(..., true)`, `SET LOCAL`,
`pg_advisory_xact_lock`) end with their transaction and are what services use."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# Each pattern is matched against every string literal of services/ (SQL lives in literals; its keywords
# are written in capitals here, which keeps prose such as "Listen to ..." out).
SESSION_STATE = {
    "a session-level set_config": re.compile(r"set_config\s*\([^)]*,\s*false\s*\)", re.I),
    "SET without LOCAL": re.compile(r"(?:^|;)\s*SET\s+(?!LOCAL\b)(?:SESSION\s+)?\w+\s*(?:=|TO\b)"),
    "a session-level advisory lock": re.compile(r"pg_(?:try_)?advisory_lock(?:_shared)?\s*\(", re.I),
    "LISTEN": re.compile(r"(?:^|;)\s*LISTEN\s"),
    "a cursor WITH HOLD": re.compile(r"\bWITH\s+HOLD\b"),
    "a temporary table": re.compile(r"\bCREATE\s+(?:LOCAL\s+|GLOBAL\s+)?TEMP(?:ORARY)?\s+TABLE\b"),
}
# The migrator takes its advisory lock on a connection of its own (asyncpg.connect), never a pooled one.
ALLOWED = {("services/kernel/db.py", "a session-level advisory lock")}


def _session_state(source: str) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            for what, pattern in SESSION_STATE.items():
                if pattern.search(node.value):
                    found.append((node.lineno, what))
    return found


def test_the_scan_finds_session_state_and_passes_transaction_scoped_forms() -> None:
    bad = [
        "SELECT set_config('app.tenant_id', $1, false)",
        "SET statement_timeout = 0",
        "BEGIN; SET search_path TO x",
        "SELECT pg_advisory_lock(1)",
        "LISTEN contacts",
        "DECLARE c CURSOR WITH HOLD FOR SELECT 1",
        "CREATE TEMP TABLE t (x int)",
    ]
    for sql in bad:
        assert _session_state(repr(sql)), sql
    good = [
        "SELECT set_config('app.tenant_id', $1, true)",
        "SET LOCAL work_mem = '64MB'; SET LOCAL TimeZone = 'UTC'",
        "UPDATE contacts SET state = $2 WHERE id = $1",
        "SELECT pg_advisory_xact_lock(1)",
    ]
    for sql in good:
        assert not _session_state(repr(sql)), sql


def test_services_leave_no_session_state_on_pooled_connections() -> None:
    found = []
    for path in sorted((REPO / "services").rglob("*.py")):
        rel = str(path.relative_to(REPO))
        for line, what in _session_state(path.read_text()):
            if (rel, what) not in ALLOWED:
                found.append(f"{rel}:{line}: {what}")
    assert not found, "session state on a pooled connection (make it transaction-scoped):\n" + "\n".join(
        found
    )
