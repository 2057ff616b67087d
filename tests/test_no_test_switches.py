"""Production modules read no test switch and use no private MLflow API (issue 27): kill points, job
faults and the storage probe are installed by tests through runtime.hooks (tests/plugins/)."""

from __future__ import annotations

import re

from helpers import REPO_ROOT

PRODUCTION = ("runtime", "data", "fusion", "detection", "pipelines", "bench")
# test-only environment switches, the removed kill-point module, MLflow's private helpers
FORBIDDEN = re.compile(
    r"S4FUSE_TEST|S4FUSE_INJECT|INJECT_JOB_FAULTS|PROBE_DIR|kill_points|kill_point\(|_use_tracking_uri"
    r"|mlflow\.tracking\._|_tracking_service"
)


def _hits(folders: tuple[str, ...]) -> list[str]:
    hits = []
    for folder in folders:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if FORBIDDEN.search(line):
                    hits.append(f"{path.relative_to(REPO_ROOT)}:{n}: {line.strip()}")
    return hits


def test_production_modules_mention_no_test_switch_and_no_private_mlflow_api():
    assert _hits(PRODUCTION) == []


def test_tests_use_no_private_mlflow_api():
    private = [
        h
        for h in _hits(("tests",))
        if ("_use_tracking_uri" in h or "_tracking_service" in h) and not h.startswith("tests/test_no_test_")
    ]
    assert private == []


def test_mlflow_model_leaves_the_environment_alone():
    source = (REPO_ROOT / "fusion" / "mlflow_model.py").read_text(encoding="utf-8")
    assert "os.environ" not in source and "set_tracking_uri" not in source
