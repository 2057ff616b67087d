"""Training S4Fusion: YAML config, trainer loop, checkpoints and resume, DDP, MLflow, export.

Entry points: :meth:`TrainConfig.from_yaml` and :func:`train`; the command line is
``python -m pipelines.run train_fusion --config experiments/<name>.yaml`` (multi-GPU: prefix
``torchrun --nproc_per_node=N -m``). See docs/training.md.
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import os
import random
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import yaml
from PIL import Image
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from data.adapters import PairedImageDataset, open_dataset
from data.color import to_gray
from data.io import write_text_atomic
from data.splits import build_fusion_mix, split_hash, write_split
from fusion.inference import fuse
from fusion.losses import LossConfig, S4FusionLoss
from fusion.model import S4Fusion, S4FusionConfig
from fusion.train_data import PairedCropDataset, ResumableDistributedSampler
from fusion.validation import HeldOutValidation, ValidationConfig, record_metrics

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "s4fuse-train-checkpoint"
CHECKPOINT_VERSION = 1
EXPORT_NAME = "s4fusion.pt"
# Keys that may change between a run and its resume (they do not change the trajectory).
RESUMABLE_KEYS = ("max_steps", "ckpt_every", "log_every", "val_every", "data.num_workers", "tracking", "validation")
# Parameter names (last component) exempt from weight decay besides all 1-D tensors (norms, biases).
NO_DECAY_NAMES = ("A_logs", "Ds")


# ---- configuration ------------------------------------------------------------------------
@dataclass
class DataSource:
    """One source of IR/VIS pairs (``data.adapters.open_dataset``) and which of its pairs to use."""

    dataset: str  # m3fd | synthetic | msrs | roadscene | tno | llvip | folder
    root: str
    split: str | None = None  # adapter split folder, e.g. MSRS "train"
    split_file: str | None = None  # text file, one stem per line
    stems: list[str] | None = None
    fraction: float = 1.0  # seeded fraction of the pairs left after split_file / stems (data.splits)


@dataclass
class DataConfig:
    train: list[DataSource] = field(default_factory=list)
    val: list[DataSource] = field(default_factory=list)  # held-out pairs shown in the validation grid
    val_pairs: int = 4  # at most this many validation pairs in the grid
    crop_size: int = 229  # must be 12k+1 for the default model
    hflip: bool = True
    vflip: bool = True
    split_seed: int = 0  # seed of the `fraction` selections (data.splits.build_fusion_mix)
    num_workers: int = 0


@dataclass
class OptimConfig:
    """AdamW with a per-step linear warmup (lr_start -> lr_peak) then cosine decay to lr_end."""

    lr_start: float = 3e-4
    lr_peak: float = 1.5e-3
    lr_end: float = 6e-4
    warmup_epochs: float = 20.0  # not stated in the paper (our choice, 2.5% of 800 epochs)
    weight_decay: float = 0.05  # not stated in the paper (VMamba's AdamW default)
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # None: sqlite:///<out_dir>/mlflow.db
    experiment: str = "s4fusion-train"


@dataclass
class TrainConfig:
    name: str = "s4fusion"
    seed: int = 0
    model: dict[str, Any] = field(default_factory=dict)  # S4FusionConfig fields; {} = the paper's model
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    batch_size: int = 20  # global: split evenly over DDP ranks
    epochs: int = 800  # defines the schedule
    max_steps: int | None = None  # stop (checkpoint + export) after this step; rerun with more to continue
    ckpt_every: int = 500
    log_every: int = 10
    val_every: int = 1000
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast on CUDA (ignored on CPU)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)  # held-out metrics at val_every

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], overrides: Sequence[str] | Mapping[str, Any] | None = None,
                  source: str = "config") -> "TrainConfig":
        d = _apply_overrides(_plain(dict(d)), overrides)
        cfg = _build(cls, d, source)
        S4FusionConfig.from_dict(cfg.model)  # validate the model section early
        return cfg

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: Sequence[str] | Mapping[str, Any] | None = None
                  ) -> "TrainConfig":
        """Load a YAML config; ``overrides`` are ``"a.b=value"`` strings (YAML values) or a mapping."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} does not exist")
        try:
            d = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: invalid YAML: {e}") from e
        if not isinstance(d, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(d).__name__}")
        return cls.from_dict(d, overrides, source=str(path))

    def model_config(self) -> S4FusionConfig:
        return S4FusionConfig.from_dict(self.model)


def _plain(obj: Any) -> Any:
    """Tuples -> lists, recursively (YAML/JSON/MLflow friendly)."""
    if isinstance(obj, Mapping):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _apply_overrides(d: dict, overrides: Sequence[str] | Mapping[str, Any] | None) -> dict:
    if not overrides:
        return d
    items = overrides.items() if isinstance(overrides, Mapping) else []
    if not isinstance(overrides, Mapping):
        items = []
        for text in overrides:
            key, sep, value = text.partition("=")
            if not sep or not key:
                raise ValueError(f"override {text!r} is not of the form key.sub=value")
            items.append((key.strip(), yaml.safe_load(value)))
    for key, value in items:
        node: Any = d
        *parents, last = key.split(".")
        for p in parents:  # a list element is addressed by its index: data.train.0.root=...
            if isinstance(node, list) and p.isdigit() and int(p) < len(node):
                node = node[int(p)]
            elif isinstance(node, dict):
                node = node.setdefault(p, {})
            else:
                raise ValueError(f"override {key!r}: cannot descend into {p!r}")
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise ValueError(f"override {key!r}: {'.'.join(parents)!r} is not a section")
    return d


def _build(tp: Any, value: Any, where: str) -> Any:
    """Construct typed config values from plain YAML data, naming the offending key on errors."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        unknown = sorted(set(value) - names)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(names)}")
        return tp(**{k: _build(hints[k], v, f"{where}.{k}") for k, v in value.items()})
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _build(inner[0], value, where)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        return [_build(args[0], v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_build(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is float:
        # YAML 1.1 reads "1e-3" (no dot) as a string, so numeric strings are accepted.
        try:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{where}: expected a number, got {value!r}") from None
    if tp in (int, str, bool) and not (isinstance(value, tp) and (tp is bool or not isinstance(value, bool))):
        raise ValueError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _flatten(d: Mapping, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping) and v:
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# ---- data -----------------------------------------------------------------------------------
def _read_stem_file(path: str) -> list[str]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"split_file {p} does not exist")
    return [s.strip() for s in p.read_text(encoding="utf-8").splitlines() if s.strip()]


def _select(ds: PairedImageDataset, src: DataSource) -> list[str]:
    stems = ds.stems
    wanted = _read_stem_file(src.split_file) if src.split_file else src.stems
    if wanted is not None:
        missing = [s for s in wanted if s not in ds]
        if missing:
            where = src.split_file or "stems"
            raise ValueError(f"{where}: {len(missing)} stem(s) not in {src.dataset} at {src.root}: {missing[:10]}")
        stems = list(wanted)
    return stems


def resolve_sources(sources: Sequence[DataSource], seed: int) -> tuple[list[PairedImageDataset], dict[str, list[str]]]:
    """Open each source and apply split_file/stems and the seeded fraction -> (datasets, split)."""
    opened, pools, fractions = [], {}, {}
    for k, src in enumerate(sources):
        ds = open_dataset(src.dataset, src.root, split=src.split)
        key = f"{k}_{src.dataset}"
        opened.append((key, ds))
        pools[key], fractions[key] = _select(ds, src), src.fraction
    chosen = build_fusion_mix(pools, fractions, seed=seed)
    return [ds.subset(chosen[key]) for key, ds in opened], chosen


# ---- distributed ----------------------------------------------------------------------------
@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> DistContext:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK: join the process group (NCCL on GPU, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: cuda requested but torch.cuda.is_available() is False")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device, local_rank) if device == "cuda" else torch.device(device)
    if device == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistContext(rank, world, local_rank, dev)


# ---- optimisation ---------------------------------------------------------------------------
def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on weights only: not on A_logs, Ds, norms and biases (all 1-D)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.rsplit(".", 1)[-1] in NO_DECAY_NAMES else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, start: float, peak: float, end: float) -> float:
    """Learning rate at ``step``: linear start->peak over warmup, then cosine peak->end at total."""
    if step < warmup_steps:
        return start + (peak - start) * step / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return end + 0.5 * (peak - end) * (1.0 + math.cos(math.pi * progress))


# ---- checkpoints ----------------------------------------------------------------------------
class CheckpointError(RuntimeError):
    """A training checkpoint is unreadable, incomplete, tampered with or incompatible."""


def _digest(obj: Any, h: "hashlib._Hash") -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    elif isinstance(obj, Mapping):
        h.update(b"{")
        for k in sorted(obj, key=repr):
            h.update(repr(k).encode())
            _digest(obj[k], h)
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for v in obj:
            _digest(v, h)
        h.update(b"]")
    else:
        h.update(repr(obj).encode())


def content_hash(state: Mapping) -> str:
    h = hashlib.sha256()
    _digest(state, h)
    return h.hexdigest()


def save_checkpoint(path: Path, state: dict) -> None:
    """Atomic write (temp file + rename) of ``state`` plus its content hash."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        torch.save({"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION,
                    "sha256": content_hash(state), "state": state}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is refused."""
    fix = f"delete {path} to start over, or restore a good copy"
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupted: {e}); {fix}") from e
    if not isinstance(obj, dict) or obj.get("format") != CHECKPOINT_FORMAT or "state" not in obj:
        raise CheckpointError(f"{path} is not an s4fuse training checkpoint; {fix}")
    if obj.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{path}: checkpoint version {obj.get('version')} is not supported "
                              f"(expected {CHECKPOINT_VERSION})")
    if content_hash(obj["state"]) != obj.get("sha256"):
        raise CheckpointError(f"checkpoint {path} is corrupted (content hash mismatch); {fix}")
    missing = [k for k in ("step", "epoch", "batch_in_epoch", "config", "model", "optimizer", "scheduler", "rng")
               if k not in obj["state"]]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete (missing {missing}); {fix}")
    return obj["state"]


def _rng_state() -> dict:
    np_state = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                      "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
            "python": random.getstate()}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))


def _config_differences(old: Mapping, new: Mapping) -> list[str]:
    flat_old, flat_new = _flatten(old), _flatten(new)
    keys = sorted(set(flat_old) | set(flat_new))
    return [k for k in keys if flat_old.get(k) != flat_new.get(k)
            and not any(k == r or k.startswith(r + ".") for r in RESUMABLE_KEYS)]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---- MLflow ---------------------------------------------------------------------------------
class _Tracker:
    """Rank-0 MLflow logging through an explicit client and run id (works inside a parent's run)."""

    def __init__(self, client: Any, run_id: str, owns_run: bool):
        self.client, self.run_id, self.owns_run = client, run_id, owns_run

    @classmethod
    def open(cls, cfg: TrainConfig, out_dir: Path, tracking: Any, run_id: str | None) -> "_Tracker | None":
        if tracking is None and not cfg.tracking.enabled:
            return None
        import mlflow
        from mlflow.tracking import MlflowClient

        if tracking is not None:  # the caller's active run (e.g. the fuse_then_detect pipeline)
            return cls(MlflowClient(), tracking.info.run_id, owns_run=False)
        uri = cfg.tracking.uri or f"sqlite:///{(out_dir / 'mlflow.db').resolve()}"
        client = MlflowClient(tracking_uri=uri)
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            return cls(client, run_id, owns_run=True)
        exp = client.get_experiment_by_name(cfg.tracking.experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(
            cfg.tracking.experiment, artifact_location=(out_dir / "mlartifacts").resolve().as_uri())
        run = client.create_run(exp_id, run_name=cfg.name)
        mlflow.set_tracking_uri(uri)
        return cls(client, run.info.run_id, owns_run=True)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])

    def log_artifact(self, path: Path, artifact_path: str) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def set_tag(self, key: str, value: str) -> None:
        self.client.set_tag(self.run_id, key, value)

    def finish(self) -> None:
        if self.owns_run:
            self.client.set_terminated(self.run_id, "FINISHED")


# ---- validation grid ------------------------------------------------------------------------
def _gray_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@torch.no_grad()
def validation_grid(model: nn.Module, pairs: Sequence[tuple[np.ndarray, np.ndarray]], device: torch.device,
                    height: int = 192) -> np.ndarray:
    """uint8 image, one row per pair: IR | VIS-Y | fused, each resized to ``height`` rows."""
    was_training = model.training
    model.eval()
    rows = []
    for ir, vi_y in pairs:
        t_ir = torch.from_numpy(ir / np.float32(255.0))[None, None].to(device)
        t_vi = torch.from_numpy(vi_y / np.float32(255.0))[None, None].to(device)
        fused = fuse(model, t_ir, t_vi)[0, 0].float().cpu().numpy() * 255.0
        width = max(1, round(ir.shape[1] * height / ir.shape[0]))
        tiles = [np.asarray(Image.fromarray(_gray_u8(a)).resize((width, height), Image.BILINEAR))
                 for a in (ir, vi_y, fused)]
        rows.append(np.concatenate(tiles, axis=1))
    model.train(was_training)
    width = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]))) for r in rows], axis=0)


# ---- the trainer ----------------------------------------------------------------------------
def build_model(cfg: TrainConfig) -> S4Fusion:
    return S4Fusion(cfg.model_config())


def train(cfg: TrainConfig, out_dir: str | os.PathLike, resume: bool = True, tracking: Any = None) -> Path:
    """Train S4Fusion per ``cfg`` into ``out_dir``; returns the exported model's path.

    ``out_dir`` receives ``checkpoints/last.pt`` (every ``ckpt_every`` steps and at the end),
    ``s4fusion.pt`` (the export, loadable by ``S4Fusion.load`` and the fuse command),
    ``config.yaml``, ``fusion_split/`` (the stems trained on, with a content hash), ``val/*.png``
    and, with default tracking, ``mlflow.db``. A checkpoint in ``out_dir`` is resumed when
    ``resume`` is true and refused otherwise. ``tracking``: an active MLflow run to log into
    (the caller keeps ownership), or None to use ``cfg.tracking``.
    Launch under ``torchrun`` for multi-GPU/multi-node DDP; plain calls run single-process.
    """
    out_dir = Path(out_dir)
    ctx = setup_distributed(cfg.device)
    if cfg.batch_size % ctx.world_size:
        raise ValueError(f"batch_size {cfg.batch_size} is not divisible by the {ctx.world_size} DDP processes")
    m = cfg.model_config().size_multiple
    if (cfg.data.crop_size - 1) % m or cfg.data.crop_size < m + 1:
        raise ValueError(f"data.crop_size {cfg.data.crop_size} is not of the form {m}k+1 required by the model")
    ckpt_path, export_path = out_dir / "checkpoints" / "last.pt", out_dir / EXPORT_NAME
    state = None
    if ckpt_path.exists():
        if not resume:
            raise FileExistsError(f"{out_dir} already holds a training checkpoint ({ckpt_path}); pass --resume "
                                  "to continue it or choose another output directory")
        state = load_checkpoint(ckpt_path)
        changed = _config_differences(state["config"], cfg.to_dict())
        if changed:
            raise CheckpointError(f"cannot resume {ckpt_path}: the config differs in {changed} "
                                  f"(only {list(RESUMABLE_KEYS)} may change on resume)")
        done = min(state["total_steps"], cfg.max_steps or state["total_steps"])
        if state["step"] >= done and export_path.exists():
            log.info("%s: training already finished at step %d; using %s", out_dir, state["step"], export_path)
            return export_path
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))

    # Data: the selected stems are written once per run directory (same config -> same stems).
    datasets, split = resolve_sources(cfg.data.train, cfg.data.split_seed)
    train_set = PairedCropDataset(datasets, cfg.data.crop_size, cfg.data.hflip, cfg.data.vflip, cfg.seed)
    if ctx.is_main:
        write_split(split, out_dir / "fusion_split")
    per_rank_batch = cfg.batch_size // ctx.world_size
    sampler = ResumableDistributedSampler(train_set, ctx.world_size, ctx.rank, cfg.seed)
    steps_per_epoch = sampler.num_samples // per_rank_batch
    if steps_per_epoch == 0:
        raise ValueError(f"{len(train_set)} training pairs are fewer than one batch of {cfg.batch_size}")
    total_steps = cfg.epochs * steps_per_epoch
    stop_step = min(total_steps, cfg.max_steps) if cfg.max_steps is not None else total_steps
    loader = DataLoader(train_set, batch_size=per_rank_batch, sampler=sampler, drop_last=True,
                        num_workers=cfg.data.num_workers, pin_memory=ctx.device.type == "cuda",
                        # own generator: creating an iterator must not consume the global RNG
                        generator=torch.Generator().manual_seed(cfg.seed))
    val_pairs: list[tuple[np.ndarray, np.ndarray]] = []
    if ctx.is_main and cfg.data.val:
        for ds in resolve_sources(cfg.data.val, cfg.data.split_seed)[0]:
            for i in range(min(len(ds), cfg.data.val_pairs - len(val_pairs))):
                val_pairs.append((ds[i].ir.astype(np.float32), to_gray(ds[i].vi)))
    held_out = HeldOutValidation(cfg.validation, resolve_sources(cfg.data.val, cfg.data.split_seed)[0]
                                 if ctx.is_main and cfg.data.val else [])

    # Model, loss, optimiser, schedule.
    seed_everything(cfg.seed)
    model = build_model(cfg).to(ctx.device)
    loss_fn = S4FusionLoss(cfg.loss).to(ctx.device)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.optim.weight_decay), lr=cfg.optim.lr_peak,
                                  betas=cfg.optim.betas)
    warmup_steps = round(cfg.optim.warmup_epochs * steps_per_epoch)
    o = cfg.optim
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, warmup_steps, total_steps, o.lr_start, o.lr_peak, o.lr_end) / o.lr_peak)
    step, run_id = 0, None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        step, run_id = state["step"], state.get("mlflow_run_id")
        if (state["epoch"], state["batch_in_epoch"]) != divmod(step, steps_per_epoch):
            raise CheckpointError(f"{ckpt_path}: sampler position {state['epoch']}/{state['batch_in_epoch']} does not "
                                  f"match step {step} with {steps_per_epoch} steps per epoch (data changed?)")
    train_model = model
    if ctx.world_size > 1:
        # The level-0 fusion layer is kept for checkpoint compatibility but never computed.
        train_model = DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda"
                                              else None, find_unused_parameters=True)
    amp = cfg.amp and ctx.device.type == "cuda"

    tracker = _Tracker.open(cfg, out_dir, tracking, run_id) if ctx.is_main else None
    if tracker is not None and state is None:
        params = {f"train.{k}": v for k, v in _flatten(cfg.to_dict()).items()}
        params.update({"train.world_size": ctx.world_size, "train.steps_per_epoch": steps_per_epoch,
                       "train.total_steps": total_steps, "train.num_pairs": len(train_set),
                       "train.fusion_split_sha256": split_hash(split),
                       "train.perception_weights": loss_fn.perception.source if loss_fn.perception else "unused",
                       "train.model_parameters": model.num_parameters()})
        tracker.log_params(params)
        if loss_fn.perception is not None and loss_fn.perception.source == "random":
            tracker.set_tag("WARNING", "perception.weights=random: untrained ResNet50 in the loss (not the paper's)")

    def checkpoint() -> None:
        if not ctx.is_main:
            return
        epoch, batch_in_epoch = divmod(step, steps_per_epoch)
        save_checkpoint(ckpt_path, {
            "step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "total_steps": total_steps,
            "config": cfg.to_dict(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": _rng_state(),
            "mlflow_run_id": tracker.run_id if tracker is not None and tracker.owns_run else None})

    def validate() -> None:
        held_out_metrics = held_out(model)  # {} unless rank 0 with data.val and validation.metrics
        if held_out_metrics:
            record_metrics(out_dir / "val" / "metrics.jsonl", step, held_out_metrics)
            if tracker is not None:
                tracker.log_metrics(held_out_metrics, step)
        if not (ctx.is_main and val_pairs):
            return
        grid = validation_grid(model, val_pairs, ctx.device)
        path = out_dir / "val" / f"step_{step:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp.png")
        Image.fromarray(grid).save(tmp)
        os.replace(tmp, path)
        if tracker is not None:
            tracker.log_artifact(path, "val")

    bar = tqdm(total=stop_step, initial=step, desc=f"train {cfg.name}", unit="step", disable=not ctx.is_main,
               dynamic_ncols=True)
    sums: dict[str, torch.Tensor] = {}
    interval_steps, interval_time = 0, 0.0  # compute + data time only (not checkpoint/validation)
    model.train()
    while step < stop_step:
        epoch, batch_in_epoch = divmod(step, steps_per_epoch)
        sampler.set_epoch(epoch)
        sampler.set_start(batch_in_epoch * per_rank_batch)
        train_set.set_epoch(epoch)
        tick = time.perf_counter()
        for ir, vi in loader:
            ir, vi = ir.to(ctx.device, non_blocking=True), vi.to(ctx.device, non_blocking=True)
            with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=amp):
                fused = train_model(ir, vi)
                total, terms = loss_fn(ir, vi, fused)
            if not torch.isfinite(total):
                raise FloatingPointError(f"non-finite loss {total.item()} at step {step} (terms "
                                         f"{ {k: float(v) for k, v in terms.items()} }); lower optim.lr_peak?")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            interval_steps += 1
            interval_time += time.perf_counter() - tick
            for k, v in {"loss": total.detach(), **terms}.items():
                sums[k] = sums.get(k, 0.0) + v.float()
            if ctx.is_main:
                bar.update(1)
            if step % cfg.log_every == 0 or step == stop_step:
                names = sorted(sums)
                means = torch.stack([sums[k] for k in names]) / interval_steps
                if ctx.world_size > 1:
                    dist.all_reduce(means)
                    means /= ctx.world_size
                metrics = {f"train/{k}": float(v) for k, v in zip(names, means)}
                metrics["train/lr"] = optimizer.param_groups[0]["lr"]
                metrics["train/samples_per_s"] = interval_steps * cfg.batch_size / max(interval_time, 1e-9)
                if ctx.is_main:
                    bar.set_postfix({k.split("/")[1]: f"{v:.4g}" for k, v in metrics.items()
                                     if k != "train/samples_per_s"})
                if tracker is not None:
                    tracker.log_metrics(metrics, step)
                sums, interval_steps, interval_time = {}, 0, 0.0
            if step % cfg.ckpt_every == 0 or step == stop_step:
                checkpoint()
            if step % cfg.val_every == 0 or step == stop_step:
                validate()
            if step == stop_step:
                break
            tick = time.perf_counter()
    bar.close()
    if ctx.is_main:
        model.save_exported(export_path)
        if tracker is not None:
            tracker.log_artifact(export_path, "model")
            tracker.finish()
    if ctx.world_size > 1:
        dist.barrier()
    return export_path
