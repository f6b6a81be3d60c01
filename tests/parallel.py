"""`make test`: the suite as two pytest sessions side by side, each with its own PostgreSQL, NATS, API and
stacks (tests/conftest.py), halves balanced by measured time. Most of the suite waits on calls, timers and
processes starting, so two sessions on 2 cores take little more than the longer half.

The split is a rule, not a list: each test file's seconds come from tests/durations.txt (measured); the
files of one folder stay together (they share its stack, started once per session) unless the folder alone
takes more than a quarter of the suite; then they are spread too. Largest first, each unit goes to the half
with less time so far. A file missing from tests/durations.txt (a new one) counts as the average file of its
folder, so it lands in a half without anybody editing anything.

Output: every line of both sessions as it comes, prefixed [1] or [2] (each session's own log, whole and
unprefixed, is also kept in .artifacts/test-1.log and test-2.log), then one summary line per session and the
verdict. Exit status 0 only if both sessions pass; a session that collects no test (pytest's 5) fails.

    python tests/parallel.py [pytest args]   what `make test PYTEST_ARGS=...` runs
    python tests/parallel.py --split         print the two halves and their expected seconds
    python tests/parallel.py --refresh       rewrite tests/durations.txt from the last run's junit files
                                             (.artifacts/test-1.xml, test-2.xml): do it after a full
                                             `make test` when the halves drift apart (see the summary)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / "tests"
DURATIONS = TESTS / "durations.txt"
ARTIFACTS = REPO / ".artifacts"
SESSIONS = 2
SPREAD_ABOVE = 0.25  # a folder taking more than this share of the suite is split by file
DEFAULT_FILE_S = 5.0  # a file of a folder that has no measured file at all

HEADER = """\
# Seconds each test file took in one `make test` (its tests' setup, call and teardown, from the junit files),
# read by tests/parallel.py to balance the two sessions. A file not listed counts as the average file of its
# folder. Refresh after a full `make test` (when its summary shows the halves drifting apart):
#     .venv/bin/python tests/parallel.py --refresh
"""


def suite_files(root: Path = TESTS) -> list[str]:
    """Every file pytest collects under tests/ (its default names: test_*.py and *_test.py), repo-relative."""
    found = {*root.rglob("test_*.py"), *root.rglob("*_test.py")}
    return sorted(str(p.relative_to(root.parent)) for p in found if "__pycache__" not in p.parts)


def read_durations(path: Path = DURATIONS) -> dict[str, float]:
    durations: dict[str, float] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                seconds, name = line.split(maxsplit=1)
                durations[name] = float(seconds)
    return durations


def estimate(files: list[str], durations: dict[str, float]) -> dict[str, float]:
    """Each file's seconds: measured, or the average measured file of its folder, or DEFAULT_FILE_S."""
    by_folder: dict[str, list[float]] = defaultdict(list)
    for name, seconds in durations.items():
        by_folder[str(Path(name).parent)].append(seconds)
    out = {}
    for name in files:
        known = by_folder.get(str(Path(name).parent))
        out[name] = durations.get(name, sum(known) / len(known) if known else DEFAULT_FILE_S)
    return out


def split(files: list[str], durations: dict[str, float], n: int = SESSIONS) -> list[list[str]]:
    """The files in `n` halves of about equal expected seconds (the rule in the module's docstring), a
    folder's files one after the other (its stack starts once), in the order of `_order`."""
    cost = estimate(files, durations)
    total = sum(cost.values())
    folders: dict[str, list[str]] = defaultdict(list)
    for name in files:
        folders[str(Path(name).parent)].append(name)
    units: list[tuple[float, list[str]]] = []
    for members in folders.values():
        seconds = sum(cost[m] for m in members)
        if seconds > SPREAD_ABOVE * total:
            units.extend((cost[m], [m]) for m in members)
        else:
            units.append((seconds, members))
    halves: list[list[str]] = [[] for _ in range(n)]
    loads = [0.0] * n
    for seconds, members in sorted(units, key=lambda u: (-u[0], u[1])):
        k = loads.index(min(loads))
        halves[k].extend(members)
        loads[k] += seconds
    return [_order(half, first=k == 0) for k, half in enumerate(halves)]


def _order(files: list[str], *, first: bool) -> list[str]:
    """The first session runs its folders in path order (e2e, integration, unit), the second the other way
    round (unit first, end to end last), so that one's browsers, SIPp calls and stacks mostly overlap the
    other's quick CPU-bound tests, not its own browsers and stacks. Within a folder, path order always (its
    modules share a stack; conftest ordering such as first_call's sharded modules last applies as ever)."""
    by_name = sorted(files)
    return sorted(by_name, key=lambda name: str(Path(name).parent), reverse=not first)  # stable: names stay


def refresh(xmls: list[Path], path: Path = DURATIONS) -> dict[str, float]:
    """Per-file seconds from junit files (pytest's default xunit2: testcase classname is the node id's
    dotted module path, plus a class if any), written to `path`."""
    seconds: dict[str, float] = defaultdict(float)
    for xml in xmls:
        for case in ET.parse(xml).iter("testcase"):
            parts = case.get("classname", "").split(".")
            for end in range(len(parts), 0, -1):
                name = "/".join(parts[:end]) + ".py"
                if (REPO / name).exists():
                    seconds[name] += float(case.get("time") or 0)
                    break
    lines = [f"{s:8.1f} {name}" for name, s in sorted(seconds.items())]
    path.write_text(HEADER + "\n".join(lines) + "\n")
    return dict(seconds)


_SUMMARY = re.compile(r"^=+ (.*\d.* in [\d.]+s.*) =+$")


def _pump(k: int, proc: subprocess.Popen[bytes], log: Path, last: list[str], lock: threading.Lock) -> None:
    """Session k's output: whole into its log, prefixed onto ours; its final summary line kept in last[k]."""
    assert proc.stdout is not None
    with open(log, "wb") as out:
        for raw in proc.stdout:
            out.write(raw)
            out.flush()
            line = raw.decode(errors="replace").rstrip("\n")
            if _SUMMARY.match(line):
                last[k] = _SUMMARY.match(line).group(1)  # type: ignore[union-attr]
            with lock:
                sys.stdout.write(f"[{k + 1}] {line}\n")
                sys.stdout.flush()


def run(pytest_args: list[str]) -> int:
    files = suite_files()
    durations = read_durations()
    halves = split(files, durations)
    expected = [sum(estimate(h, durations).values()) for h in halves]
    ARTIFACTS.mkdir(exist_ok=True)
    print(f"make test: {len(files)} test files in {SESSIONS} pytest sessions side by side", flush=True)
    for k, half in enumerate(halves):
        print(f"[{k + 1}] {len(half)} files, about {expected[k]:.0f} s measured (tests/durations.txt)")
    procs, pumps, last = [], [], [""] * SESSIONS
    lock = threading.Lock()
    started = time.monotonic()
    for k, half in enumerate(halves):
        command = [
            sys.executable, "-m", "pytest", *half, f"--junitxml={ARTIFACTS / f'test-{k + 1}.xml'}",
            "-o", f"cache_dir={REPO / '.pytest_cache' / f'session-{k + 1}'}", *pytest_args,
        ]  # fmt: skip
        # The sessions' pytest caches apart: each writes its last-failed list at its end, over the other's.
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        log = ARTIFACTS / f"test-{k + 1}.log"
        pump = threading.Thread(target=_pump, args=(k, proc, log, last, lock), daemon=True)
        pump.start()
        procs.append(proc)
        pumps.append(pump)
    ended = [0.0] * SESSIONS
    while any(proc.poll() is None for proc in procs):
        for k, proc in enumerate(procs):
            if proc.poll() is not None and not ended[k]:
                ended[k] = time.monotonic() - started
        time.sleep(0.5)
    codes = [proc.wait() for proc in procs]
    ended = [e or time.monotonic() - started for e in ended]
    for pump in pumps:
        pump.join()
    print("=" * 100)
    for k, code in enumerate(codes):
        verdict = "passed" if code == 0 else "NO TESTS COLLECTED" if code == 5 else f"FAILED (exit {code})"
        print(
            f"[{k + 1}] {verdict}: {last[k] or 'no summary line'}; expected {expected[k]:.0f} s "
            f"(log: .artifacts/test-{k + 1}.log)"
        )
    wall = time.monotonic() - started
    ok = all(code == 0 for code in codes)
    print(f"make test: {'PASSED' if ok else 'FAILED'} in {wall:.0f} s wall (the sessions ended after "
          f"{', '.join(f'{e:.0f}' for e in ended)} s)")  # fmt: skip
    return 0 if ok else 1


def main(argv: list[str]) -> int:
    if argv[:1] == ["--refresh"]:
        xmls = [ARTIFACTS / f"test-{k + 1}.xml" for k in range(SESSIONS)]
        missing = [str(x) for x in xmls if not x.exists()]
        if missing:
            print(f"error: no junit file {', '.join(missing)}: run `make test` first", file=sys.stderr)
            return 2
        seconds = refresh(xmls)
        print(f"wrote {DURATIONS.relative_to(REPO)}: {len(seconds)} files, {sum(seconds.values()):.0f} s")
        return 0
    if argv[:1] == ["--split"]:
        durations = read_durations()
        for k, half in enumerate(split(suite_files(), durations)):
            print(f"[{k + 1}] about {sum(estimate(half, durations).values()):.0f} s")
            print("\n".join(f"    {name}" for name in half))
        return 0
    return run(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
