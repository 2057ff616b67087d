"""Fail CI when the slow suite shrinks: compare the tests a pytest JUnit XML report collected and ran
(not skipped) with the floor kept in tests/slow_floor.txt.

    python .ci/check_slow_suite.py REPORT.xml tests/slow_floor.txt

A renamed or dropped `slow` marker, a slow test that now skips, or a report from a run that selected
nothing all end with exit 1 and one line saying what is missing. Standard library only: it runs
before anything else is trusted.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def read_floor(path: Path) -> int:
    """The first line of the floor file that is not blank or a # comment, as an int."""
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            return int(line)
    raise ValueError(f"{path}: no number in it")


def count_tests(report: Path) -> tuple[int, int]:
    """(collected, ran) from a JUnit XML report: every <testcase>, and those without <skipped>."""
    cases = ET.parse(report).getroot().iter("testcase")
    collected = ran = 0
    for case in cases:
        collected += 1
        ran += case.find("skipped") is None
    return collected, ran


def check(report: Path, floor_file: Path) -> str | None:
    """None when collected and ran both reach the floor, else the one-line reason."""
    if not report.is_file():
        return f"{report}: no JUnit report (did `make test-slow` run?)"
    floor = read_floor(floor_file)
    collected, ran = count_tests(report)
    if collected < floor or ran < floor:
        return (
            f"slow suite shrank: {collected} collected, {ran} ran (not skipped), floor {floor} in {floor_file}. "
            "Restore the `slow` marker / the skipped tests, or lower the floor in the commit that removes a test."
        )
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: python .ci/check_slow_suite.py REPORT.xml FLOOR_FILE", file=sys.stderr)
        return 2
    report, floor_file = map(Path, argv)
    problem = check(report, floor_file)
    if problem:
        print(f"FAIL: {problem}", file=sys.stderr)
        return 1
    collected, ran = count_tests(report)
    print(f"slow suite: {collected} collected, {ran} ran, floor {read_floor(floor_file)}: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
