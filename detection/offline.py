"""Make ultralytics strictly offline before it is used.

ultralytics reaches the network in several places: a DNS probe at import time (unless
``YOLO_OFFLINE``), pip auto-installs (``YOLO_AUTOINSTALL``), analytics events (settings ``sync``),
the ``Arial.ttf`` font download for plots, the AMP check (downloads ``yolo26n.pt`` on CUDA),
dataset ``download:`` scripts, and legacy weight names (``yolov5s.pt`` is silently rewritten to
``yolov5su.pt`` and then downloaded). :func:`import_ultralytics` closes each of them; every module
of this package obtains ultralytics through it.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from types import ModuleType

from data.io import write_atomic

# Names ultralytics rewrites to "<name>u.pt" and then downloads (utils.checks.check_yolov5u_filename).
_REWRITTEN_WEIGHT_NAME = re.compile(r"(yolov5[nsmlx]6?|yolov3(-tiny|-spp)?)\.pt$", re.IGNORECASE)
_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")
_configured = False


def ultralytics_config_dir() -> Path:
    """Folder holding our ultralytics settings, font and weights cache (never the user's global one).

    ``YOLO_CONFIG_DIR`` wins when set; otherwise ``$XDG_CACHE_HOME/s4fuse`` (``~/.cache/s4fuse``).
    ultralytics appends ``Ultralytics/`` to it.
    """
    if env_dir := os.environ.get("YOLO_CONFIG_DIR"):
        return Path(env_dir).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "s4fuse"


def _set_offline_environment() -> None:
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(ultralytics_config_dir()))
    os.environ["NO_ALBUMENTATIONS_UPDATE"] = "1"  # albumentations' own version check hits PyPI
    os.environ.setdefault("MPLBACKEND", "Agg")


def _install_local_font(config_dir: Path) -> Path:
    """Provide ``Arial.ttf`` from matplotlib's bundled DejaVuSans so ultralytics never downloads it."""
    import matplotlib

    target = config_dir / "Arial.ttf"
    if not target.is_file():
        source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if not source.is_file():
            raise FileNotFoundError(
                f"matplotlib's bundled font {source} is missing; cannot provide Arial.ttf offline"
            )
        write_atomic(target, lambda fh: fh.write(source.read_bytes()))
    return target


def _offline_check_amp(model, *args, **kwargs) -> bool:
    """Replacement for ultralytics' AMP check, which downloads a model to compare FP32 vs AMP outputs.

    AMP is only ever enabled on CUDA; there we trust it (ultralytics' own fallback when offline).
    """
    device = next(model.parameters()).device
    return device.type == "cuda"


def import_ultralytics() -> ModuleType:
    """Import ultralytics configured offline (idempotent) and return the module."""
    global _configured
    already_imported = "ultralytics" in sys.modules
    if not _configured:
        _set_offline_environment()
    import ultralytics
    from ultralytics import utils as ul_utils
    from ultralytics.engine import trainer as ul_trainer
    from ultralytics.utils import checks as ul_checks
    from ultralytics.utils import events as ul_events

    if _configured:
        return ultralytics
    if already_imported:
        # Imported before us: its import-time online probe already ran; force the flags it cached.
        for module in (ul_utils, ul_checks, ul_events):
            module.ONLINE = False
        ul_utils.AUTOINSTALL = ul_checks.AUTOINSTALL = False
    # runs_dir: ultralytics' fallback output folder (we always pass `project`), kept out of the checkout.
    settings_update = {
        "sync": False,
        "runs_dir": str(ul_utils.USER_CONFIG_DIR / "runs"),
        **{k: False for k in _INTEGRATIONS},
    }
    if any(ul_utils.SETTINGS.get(k) != v for k, v in settings_update.items()):
        ul_utils.SETTINGS.update(settings_update)
    _install_local_font(ul_utils.USER_CONFIG_DIR)
    ul_trainer.check_amp = _offline_check_amp
    _configured = True
    return ultralytics


def check_local_weight(path: str | os.PathLike) -> Path:
    """Validate a local pretrained detector weight before any long work starts."""
    path = Path(path).expanduser()
    if _REWRITTEN_WEIGHT_NAME.search(path.name):
        raise ValueError(
            f"detector weight {path}: ultralytics rewrites the file name '{path.name}' to its 'u' variant "
            f"and tries to download it; rename the file (e.g. '{path.stem}-local.pt' or "
            f"'{path.stem}u.pt') and point the config at the new name"
        )
    if not path.is_file():
        raise FileNotFoundError(
            f"detector weight {path} does not exist; put an ultralytics checkpoint there "
            f"(e.g. yolov5su.pt renamed as above) or set detector.weights to null to train from scratch"
        )
    if path.suffix != ".pt":
        raise ValueError(f"detector weight {path}: expected an ultralytics '.pt' checkpoint")
    return path
