"""Every SIPp that a test or benchmark starts goes through tests/sipp_uac.sipp_command, which gives it a media
port of its own (`-mp`). SIPp's default, 6000, is the same for every SIPp on the machine: with two pytest
sessions side by side (`make test`) one session's SIPp exited 254 as it started, its media port taken by the
other's."""

from __future__ import annotations

import ast
import socket
from pathlib import Path

from tests.sipp_uac import sipp_command

TESTS = Path(__file__).resolve().parents[1]
HELPER = TESTS / "sipp_uac.py"


def sipp_launches(source: str) -> list[int]:
    """Lines that name SIPp as a program to run: the string "sipp" (or ".../bin/sipp", or a shell line
    "sipp -..."), except as the argument of shutil.which or a folder in a path (`REPO / "sipp"`)."""
    tree = ast.parse(source)
    not_runs = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "which":
            not_runs.update(id(arg) for arg in node.args)
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            not_runs.add(id(node.right))
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and (node.value in ("sipp", "/usr/bin/sipp") or node.value.startswith("sipp -"))
        and id(node) not in not_runs
    ]


def test_no_sipp_started_without_the_helper() -> None:
    found = [
        f"{path.relative_to(TESTS.parent)}:{line}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in (HELPER, Path(__file__).resolve())  # the helper, and this file's examples
        for line in sipp_launches(path.read_text())
    ]
    assert not found, f"SIPp started without tests/sipp_uac.sipp_command (no -mp of its own): {found}"


def test_the_scan_sees_each_way_of_starting_sipp() -> None:
    starts = (
        'subprocess.run(["sipp", "-sn", "uas"])',
        'asyncio.create_subprocess_exec(*("sipp", "-sn", "uac"))',
        'os.system("sipp -sn uas -p 5070")',
        'subprocess.run("sipp", "-sd", "uas")',
        'subprocess.Popen(["/usr/bin/sipp", "-sn", "uas"])',
    )
    for start in starts:
        assert sipp_launches(start) == [1], start
    assert sipp_launches('shutil.which("sipp") is None') == []
    assert sipp_launches('SCENARIOS = REPO / "docs" / "sipp"') == []
    assert sipp_launches('pytest.mark.skipif(True, reason="sipp (Debian sip-tester) is not installed")') == []
    assert sipp_launches("[*sipp_command(port), '-sn', 'uas']") == []


def test_sipp_command_gives_each_sipp_its_own_media_ports() -> None:
    one, two = sipp_command(5070), sipp_command()
    assert one[:8] == ["sipp", "-nostdin", "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", "5070"]
    media = [int(command[command.index("-mp") + 1]) for command in (one, two)]
    assert 6000 not in media and media[0] != media[1]
    for port in media:  # SIPp binds the audio port and the video port two above it
        for taken in (port, port + 2):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind(("127.0.0.1", taken))
