"""Screenshots of a finished fuse_then_detect run in a real browser (headless Chromium, MLflow's own UI).

    python -m bench.ui_screenshots RUN_DIR [--out docs/images] [--chromium chromium]

Starts ``mlflow server`` on 127.0.0.1 (a free port) on ``RUN_DIR/mlflow.db``, opens the links the run
printed (with that port) and writes, each downscaled to at most 1200 px wide:

- ``mlflow_table6_chart.png``: the printed link (the experiment's saved Table VI view, chart mode: the
  Table VI chart and, below it, the Table VI table of the (method, seed) runs);
- ``mlflow_table6_runs.png``: the same view as a table (one row per method, its seeds under it);
- ``mlflow_compare_seeds.png``: MLflow's compare page of the run's (method, seed) runs;
- ``mlflow_table6_table.png``: Table VI as a table on the parent's run page;
- ``mlflow_figure.png``: the parent's Artifacts tab on ``figures/table6_map50.png``;
- ``mlflow_child_run.png``: the S4Fusion method run's page (if the run has one).

Then it stops the server. Chromium needs a virtual time budget: the UI is a JS app that loads after
the page does. Install it with ``apt-get install chromium`` (Debian).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.fuse_then_detect import mlflow_view
from pipelines.mlflow_server import serve
from runtime.tracking import KIND_TAG, PARENT_TAG, default_tracking_uri

WINDOW = "1600,1000"
# the printed link's page holds the Table VI charts and, under them, the Table VI table: a taller
# window shows both (in a 1000 px high one the table starts at the bottom edge, scroll down)
WINDOWS = {"mlflow_table6_chart.png": "1600,1650"}
MAX_WIDTH = 1200
SHOT_TIMEOUT_S = 600
VIRTUAL_TIME_MS = 60_000  # time the JS app gets to load its data and draw its charts
# MLflow 3.17 opens its Assistant side panel (a quarter of the window) on a browser's first visit to a
# server whose host is loopback; Chromium opens the UI under this name instead (mapped to 127.0.0.1),
# and the server is told to accept it as a host and as the origin of the UI's requests.
HOST = "mlflow-ui.screenshot"
SERVER_ENV = {
    "MLFLOW_SERVER_ALLOWED_HOSTS": f"{HOST}:*,127.0.0.1,127.0.0.1:*,localhost,localhost:*",
    "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS": f"http://{HOST}:*",
}


def latest_parent(tracking_uri: str):
    """The most recent fuse_then_detect parent run in the store."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments, f"tags.`{KIND_TAG}` = 'pipeline'", max_results=1, order_by=["attributes.start_time DESC"]
    )
    if not runs:
        raise SystemExit(
            f"error: no fuse_then_detect run in {tracking_uri}; run `python -m pipelines.run "
            "fuse_then_detect` first (or pass its run folder)"
        )
    return client, runs[0]


def seed_run_ids(client, parent) -> list[str]:
    """The parent's (method, seed) runs (children of its method runs)."""
    experiment = [parent.info.experiment_id]
    methods = client.search_runs(experiment, f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
    return [
        r.info.run_id
        for m in methods
        for r in client.search_runs(
            experiment,
            f"tags.`{PARENT_TAG}` = '{m.info.run_id}' and tags.`{KIND_TAG}` = '{mlflow_view.SEED_RUN_KIND}'",
            order_by=["attributes.start_time ASC"],
        )
    ]


def s4fusion_run_id(client, parent) -> str | None:
    """The parent's method run that holds an S4Fusion checkpoint (tag ``method.checkpoint_sha256``)."""
    runs = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`{PARENT_TAG}` = '{parent.info.run_id}' and tags.`method.checkpoint_sha256` != ''",
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def screenshot(chromium: str, url: str, out: Path, window: str = WINDOW) -> Path:
    """One headless-Chromium screenshot of ``url`` in a ``window`` ("width,height") window, downscaled to
    at most MAX_WIDTH px wide."""
    from PIL import Image

    with tempfile.TemporaryDirectory() as profile:
        raw = Path(profile) / "shot.png"
        subprocess.run(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                f"--user-data-dir={profile}",
                f"--screenshot={raw}",
                f"--window-size={window}",
                "--hide-scrollbars",
                f"--host-resolver-rules=MAP {HOST} 127.0.0.1",
                f"--virtual-time-budget={VIRTUAL_TIME_MS}",
                url.replace("//127.0.0.1:", f"//{HOST}:", 1),
            ],
            check=True,
            timeout=SHOT_TIMEOUT_S,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        image = Image.open(raw).convert("RGB")
        if image.width > MAX_WIDTH:
            image = image.resize((MAX_WIDTH, round(image.height * MAX_WIDTH / image.width)), Image.LANCZOS)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.png")
        image.save(tmp, optimize=True)
        tmp.replace(out)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="a finished fuse_then_detect run folder (holds mlflow.db)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--chromium", default="chromium")
    args = parser.parse_args(argv)
    problems = []
    if not (args.run_dir / "mlflow.db").is_file():
        problems.append(f"{args.run_dir / 'mlflow.db'} does not exist (pass a finished run folder)")
    if shutil.which(args.chromium) is None:
        problems.append(f"{args.chromium!r} not found (apt-get install chromium, or --chromium PATH)")
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    uri = default_tracking_uri(args.run_dir)
    client, parent = latest_parent(uri)
    seeds = seed_run_ids(client, parent)
    os.environ.update(SERVER_ENV)  # read by the server started below
    with serve(uri, args.run_dir / "ui_screenshots_server.log") as base:
        port = int(base.rsplit(":", 1)[1])
        chart = mlflow_view.ui_link(uri, parent.info.run_id, port)
        experiment = parent.info.experiment_id
        run_page = f"{base}/#/experiments/{experiment}/runs"
        pages = {
            "mlflow_table6_chart.png": chart,
            "mlflow_table6_runs.png": chart.replace("compareRunsMode=CHART", "compareRunsMode=TABLE"),
            "mlflow_compare_seeds.png": f"{base}/#/compare-runs?runs={json.dumps(seeds, separators=(',', ':'))}"
            f'&experiments=["{experiment}"]&{mlflow_view.WORKFLOW_PARAM}',
            "mlflow_table6_table.png": mlflow_view.table_link(uri, parent.info.run_id, port),
            "mlflow_figure.png": f"{run_page}/{parent.info.run_id}/artifacts/figures/table6_map50.png"
            f"?{mlflow_view.WORKFLOW_PARAM}",
        }
        if child := s4fusion_run_id(client, parent):
            pages["mlflow_child_run.png"] = f"{run_page}/{child}?{mlflow_view.WORKFLOW_PARAM}"
        failed = []
        for name, url in pages.items():
            try:
                shot = screenshot(args.chromium, url, args.out / name, WINDOWS.get(name, WINDOW))
                print(f"{shot}  <- {url}", flush=True)
            except subprocess.TimeoutExpired:  # the JS app never settled within the virtual time budget
                failed.append(name)
                print(
                    f"error: {name}: Chromium did not finish within {SHOT_TIMEOUT_S} s ({url}); "
                    "rerun on a less loaded machine",
                    file=sys.stderr,
                    flush=True,
                )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
