"""CI fails when the slow suite silently shrinks (.ci/run, docs/testing.md#the-slow-suite-floor)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import REPO_ROOT

CHECK = REPO_ROOT / ".ci" / "check_slow_suite.py"
FLOOR_FILE = REPO_ROOT / "tests" / "slow_floor.txt"


def _junit(path: Path, passed: int, skipped: int = 0) -> Path:
    cases = [f'<testcase classname="t" name="p{i}" time="1"/>' for i in range(passed)]
    cases += [
        f'<testcase classname="t" name="s{i}"><skipped message="needs CUDA"/></testcase>'
        for i in range(skipped)
    ]
    path.write_text(
        f'<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="{passed + skipped}">'
        + "".join(cases)
        + "</testsuite></testsuites>"
    )
    return path


def _check(report: Path, floor_file: Path = FLOOR_FILE) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHECK), str(report), str(floor_file)], capture_output=True, text=True
    )


def _floor() -> int:
    return int([ln for ln in FLOOR_FILE.read_text().splitlines() if ln.strip() and not ln.startswith("#")][0])


def test_the_floor_passes_and_anything_less_fails(tmp_path):
    floor = _floor()
    assert floor >= 13  # every slow claim of docs/testing.md: raise with new slow tests, never silently lower
    assert _check(_junit(tmp_path / "full.xml", floor)).returncode == 0
    for name, passed, skipped in [("one_gone", floor - 1, 0), ("one_skips", floor - 1, 1), ("none", 0, 0)]:
        result = _check(_junit(tmp_path / f"{name}.xml", passed, skipped))
        assert result.returncode == 1 and "slow suite shrank" in result.stderr, (name, result.stderr)
        assert f"{passed + skipped} collected, {passed} ran" in result.stderr and "floor" in result.stderr
    missing = _check(tmp_path / "never_written.xml")
    assert missing.returncode == 1 and "no JUnit report" in missing.stderr


def test_a_renamed_slow_marker_turns_the_check_red(tmp_path):
    """A real pytest run: one of two slow tests had its marker renamed, so `-m slow` runs one."""
    (tmp_path / "test_suite.py").write_text(
        "import pytest\n\n@pytest.mark.slow\ndef test_kept():\n    pass\n\n"
        "@pytest.mark.slw\ndef test_renamed():\n    pass\n"
    )
    (tmp_path / "floor.txt").write_text("# two slow tests\n2\n")
    report = tmp_path / "slow.xml"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:xdist",
            "-m",
            "slow",
            f"--junitxml={report}",
            "-W",
            "ignore::pytest.PytestUnknownMarkWarning",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout  # pytest itself is happy: that is why CI needs the floor
    result = _check(report, tmp_path / "floor.txt")
    assert result.returncode == 1 and "1 collected, 1 ran" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "pytest_rc, pytest_args, make_ok",
    [
        (5, "", False),  # `-m slow` selected nothing: a vanished marker, never "ok"
        (5, "-k nothing", True),  # a user's own narrower selection may be empty
        (0, "", True),
        (1, "", False),
    ],
)
def test_make_test_slow_does_not_hide_an_empty_selection(tmp_path, pytest_rc, pytest_args, make_ok):
    """`make test-slow` with pytest replaced by a stub exiting with pytest_rc (install skipped: -o)."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "python").write_text(f"#!/bin/sh\nexit {pytest_rc}\n")
    (fake_bin / "python").chmod(0o755)
    env = {**os.environ, "MAKEFLAGS": ""}
    run = subprocess.run(
        [
            "make",
            "-s",
            "-o",
            "install",
            "-C",
            str(REPO_ROOT),
            "test-slow",
            f"BIN={fake_bin}",
            f"PYTEST_ARGS={pytest_args}",
            f"SLOW_JUNIT={tmp_path / 'r.xml'}",
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert (run.returncode == 0) == make_ok, (run.returncode, run.stdout, run.stderr)
