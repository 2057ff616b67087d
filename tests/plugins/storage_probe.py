"""A Ray storage probe that looks at another folder than the run folder: in the tests, a node that
mounts a different filesystem at the run folder's path. Install with
``monkeypatch.setattr(ray_executor, "_probe_storage", probe_elsewhere(folder))``: the executor sends
whatever function that name holds to every node as the probe task."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def probe_elsewhere(folder: str | Path):
    """The probe task, reading and writing ``folder`` whatever run folder the driver names."""
    from pipelines.executor import ray_executor

    real_probe = ray_executor._probe_storage  # captured before the test replaces it
    seen_folder = str(folder)

    def probe(run_dir: str, *args: Any) -> dict[str, Any]:
        return real_probe(seen_folder, *args)

    return probe
