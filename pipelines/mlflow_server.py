"""A local ``mlflow server`` on a free loopback port, started and always stopped: what the UI test and
the screenshot script (bench/ui_screenshots.py) look at."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(tracking_uri: str, log_path: Path, start_timeout_s: float = 600) -> Iterator[str]:
    """Yield the base URL of ``mlflow server`` on ``tracking_uri``; its output goes to ``log_path``.
    It runs in its own process group, which is stopped whatever happens (SIGTERM, then SIGKILL)."""
    import requests

    port = free_port()
    mlflow_cli = Path(sys.executable).with_name("mlflow")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                str(mlflow_cli),
                "server",
                "--backend-store-uri",
                tracking_uri,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + start_timeout_s
            while True:
                try:
                    if requests.get(f"{base}/health", timeout=2).ok:
                        break
                except requests.RequestException:  # not up yet (refused, or too busy to answer)
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mlflow server did not start (exit {proc.poll()}); see {log_path}")
                time.sleep(0.5)
            yield base
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
