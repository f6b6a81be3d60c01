"""`make test`'s two sessions (tests/parallel.py): every test file runs in exactly one, halves balanced by
tests/durations.txt, a folder kept in one session (its stack starts once) unless it is a large share."""

from __future__ import annotations

from pathlib import Path

from tests.parallel import read_durations, refresh, split, suite_files


def test_every_test_file_runs_in_exactly_one_session() -> None:
    files = suite_files()
    halves = split(files, read_durations())
    assert all(halves), "a session with no test file exits 5"
    assert sorted(halves[0] + halves[1]) == files
    assert not set(halves[0]) & set(halves[1])
    assert "tests/unit/test_parallel_split.py" in files and "tests/e2e/first_call/conftest.py" not in files


def test_the_measured_halves_are_balanced() -> None:
    durations = read_durations()
    assert durations, "tests/durations.txt is missing or empty"
    halves = split(suite_files(), durations)
    loads = [sum(durations.get(f, 0.0) for f in half) for half in halves]
    assert abs(loads[0] - loads[1]) <= 0.1 * sum(loads), loads


def test_a_new_file_lands_in_one_half_priced_as_its_folders_average() -> None:
    durations = {"tests/a/test_1.py": 100.0, "tests/a/test_2.py": 100.0, "tests/b/test_1.py": 300.0}
    files = [*durations, "tests/a/test_new.py"]
    halves = split(files, durations)
    # Folder a now counts 300 s (its new file as its average, 100 s): a against b, 300 s each.
    assert sorted(map(sorted, halves)) == [
        ["tests/a/test_1.py", "tests/a/test_2.py", "tests/a/test_new.py"],
        ["tests/b/test_1.py"],
    ]


def test_a_folder_stays_whole_unless_it_is_a_large_share() -> None:
    small = {f"tests/s{k}/test_{n}.py": 5.0 for k in range(10) for n in (1, 2)}  # 10 folders of 10 s
    whole = split(sorted(small), small)
    for k in range(10):
        assert [sum(f.startswith(f"tests/s{k}/") for f in half) for half in whole] in ([2, 0], [0, 2])
    big = {f"tests/big/test_{k}.py": 60.0 for k in range(5)}  # 300 of 400 s: spread over both halves
    both = {**small, **big}
    halves = split(sorted(both), both)
    assert all(any(f.startswith("tests/big/") for f in half) for half in halves)
    assert [sum(both[f] for f in half) for half in halves] == [200.0, 200.0]


def test_refresh_sums_each_files_tests_from_junit(tmp_path: Path) -> None:
    xml = tmp_path / "one.xml"
    xml.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.unit.test_parallel_split" name="a" time="1.5"/>'
        '<testcase classname="tests.unit.test_parallel_split" name="b" time="2.0"/>'
        '<testcase classname="tests.unit.test_sipp_launches" name="c" time="0.3"/>'
        "</testsuite></testsuites>"
    )
    out = tmp_path / "durations.txt"
    assert refresh([xml], out) == {
        "tests/unit/test_parallel_split.py": 3.5,
        "tests/unit/test_sipp_launches.py": 0.3,
    }
    assert read_durations(out) == {
        "tests/unit/test_parallel_split.py": 3.5,
        "tests/unit/test_sipp_launches.py": 0.3,
    }


def test_the_sessions_run_their_folders_in_opposite_orders() -> None:
    durations = {  # five folders of 20 s: none is spread
        "tests/e2e/x/test_1.py": 10.0,
        "tests/e2e/x/test_2.py": 10.0,
        "tests/e2e/z/test_1.py": 20.0,
        "tests/unit/v/test_1.py": 20.0,
        "tests/unit/w/test_1.py": 10.0,
        "tests/unit/w/test_2.py": 10.0,
        "tests/unit/y/test_1.py": 20.0,
    }
    first, second = split(sorted(durations), durations)
    assert first == [
        "tests/e2e/x/test_1.py",
        "tests/e2e/x/test_2.py",
        "tests/unit/v/test_1.py",
        "tests/unit/y/test_1.py",
    ]
    # Folders from the last path to the first; a folder's files still in path order.
    assert second == ["tests/unit/w/test_1.py", "tests/unit/w/test_2.py", "tests/e2e/z/test_1.py"]
