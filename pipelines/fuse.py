"""``fuse``: fuse every IR/VIS pair of a dataset (or two folders) with S4Fusion, a baseline or
any python callable (fusion.methods).

    python -m pipelines.run fuse --dataset tno --root ../shared/data/samples/TNO \
        --checkpoint model.pkl --out runs/fused/tno
    python -m pipelines.run fuse --ir IR_DIR --vi VI_DIR --method gff --out runs/fused/gff
    python -m pipelines.run fuse --ir IR_DIR --vi VI_DIR --method my_fusion:fuse --out runs/fused/mine

Outputs are 8-bit PNGs named by pair stem, written atomically; existing outputs are kept, so an
interrupted run resumes (``--overwrite`` redoes them). ``fuse.json`` in the output folder records
what made them (method, checkpoint sha256, a python target's source sha256); a folder made by
something else (another method, an edited function) is refused.
Every pair is checked before any fusion: bad pairs (unreadable, corrupt, size mismatch) are refused,
named in one error (the first 10, then a count), or skipped and listed at the end with ``--skip-bad``;
so are files of ``--ir``/``--vi`` without a partner of the same stem.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from data.adapters import (
    DATASET_NAMES,
    DatasetError,
    DatasetLayout,
    PairedImageDataset,
    open_dataset,
    scan_pairs,
)
from data.dataset_check import bad_pairs
from data.io import write_png_atomic, write_text_atomic
from fusion.baselines import BASELINES
from fusion.methods import FusionMethod, MethodInputs, PairSet, fuse_checked, method_from_spec
from fusion.shipped_weights import resolve_checkpoint
from pipelines.cli_common import run_cli
from runtime.config_loader import ConfigError
from runtime.errors import RunFolderError, capped_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("input (a dataset, or two folders)")
    src.add_argument("--dataset", choices=DATASET_NAMES, help="dataset layout of --root")
    src.add_argument("--root", type=Path, help="dataset root folder")
    src.add_argument("--split", help="dataset split, where the layout has them (e.g. test)")
    src.add_argument("--ir", type=Path, help="folder of infrared images (with --vi)")
    src.add_argument("--vi", type=Path, help="folder of visible images matched to --ir by file stem")
    parser.add_argument(
        "--method",
        default="s4fusion",
        help=f"s4fusion (needs --checkpoint), a classical baseline ({' '.join(BASELINES)}), "
        "package.module:function (any importable fusion callable) or an installed s4fuse.methods "
        "name (default: s4fusion)",
    )
    parser.add_argument(
        "--checkpoint",
        help="S4Fusion weights: an s4fuse export, the official model.pkl / vmunet state dict, "
        "or 'demo' (the small CPU-trained model shipped in fusion/weights)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder for <stem>.png")
    parser.add_argument("--device", default="cpu", help="torch device for S4Fusion (cpu, cuda, cuda:1, ...)")
    parser.add_argument(
        "--scan-backend", default=None, help="selective-scan backend override (auto, cpu, mamba, reference)"
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="redo outputs that already exist (also those another method made)",
    )
    parser.add_argument(
        "--skip-bad",
        action="store_true",
        help="fuse the good pairs and list the bad or unpaired files at the end (default: refuse them all)",
    )


def _dataset(args: argparse.Namespace) -> tuple[PairedImageDataset, list[str]]:
    """The pairs to fuse, and the files left out for having no partner (``--skip-bad`` only)."""
    if args.ir or args.vi:
        if not (args.ir and args.vi) or args.dataset:
            raise ConfigError("give either --ir and --vi together, or --dataset with --root")
        for folder in (args.ir, args.vi):
            if not folder.is_dir():
                raise ConfigError(f"{folder} is not a folder")
        scan = scan_pairs(DatasetLayout("folder", args.ir, args.vi))
        unpaired = [
            f"{path}: no partner of the same stem in the other folder" for path in scan.ir_only + scan.vi_only
        ]
        if not scan.pairs:
            raise DatasetError(
                f"no IR/VIS pairs in {args.ir} / {args.vi}: no file has a partner of the same "
                f"stem in the other folder ({capped_list(scan.ir_only + scan.vi_only)})"
            )
        if unpaired and not args.skip_bad:
            raise DatasetError(
                f"{len(scan.pairs)} pairs in {args.ir} / {args.vi} and {len(unpaired)} unpaired "
                "file(s), nothing fused (fix them, or pass --skip-bad to fuse the pairs): "
                + capped_list(unpaired)
            )
        return PairedImageDataset(scan.pairs, "folder"), unpaired
    if not (args.dataset and args.root):
        raise ConfigError("give --dataset NAME --root PATH (or --ir DIR --vi DIR)")
    return open_dataset(args.dataset, args.root, split=args.split), []


def main(args: argparse.Namespace) -> int:
    return run_cli("fuse", lambda: _fuse(args))


def _resolve_method(args: argparse.Namespace) -> FusionMethod:
    """The --method (a python target is imported here), checked before anything is read or written."""
    method = method_from_spec(args.method, args.checkpoint, args.scan_backend)
    if method.learned:
        _check_model_options(args)
    return method


def _check_model_options(args: argparse.Namespace) -> None:
    """Checkpoint, device and scan backend of a model."""
    args.checkpoint = resolve_checkpoint(args.checkpoint)  # "demo": the shipped CPU-trained weights
    if args.checkpoint.name == "last.pt" and args.checkpoint.parent.name == "checkpoints":
        raise ConfigError(
            f"{args.checkpoint} is a training checkpoint (for --resume), not a model; use the "
            f"exported {args.checkpoint.parent.parent / 's4fusion.pt'}"
        )
    import torch

    from fusion.ops.selective_scan import check_backend

    if torch.device(args.device).type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {args.device}: no CUDA device is available here; use --device cpu")
    try:
        check_backend(args.scan_backend, args.device)
    except ValueError as exc:
        raise ConfigError(f"--scan-backend {args.scan_backend}: {exc}; use --scan-backend auto") from None


def _provenance(args: argparse.Namespace, method: FusionMethod, inputs: MethodInputs) -> dict:
    """What made the outputs, by content: ``{"method": "gff"}``, plus the checkpoint's sha256 or a
    python target's identity (so an edited function does not resume into the old images)."""
    ident = method.content_identity(inputs)
    return {"method": args.method, **{k: v for k, v in ident.items() if k not in ("kind", "baseline")}}


def _claim_output_folder(args: argparse.Namespace, provenance: dict) -> None:
    """Refuse a folder holding another method's (or checkpoint's) outputs; record ours in fuse.json."""
    record = args.out / "fuse.json"
    if args.out.exists() and not args.out.is_dir():
        raise RunFolderError(f"--out {args.out} is a file, not a folder")
    if not args.overwrite and args.out.is_dir():
        found = json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None
        has_outputs = any(args.out.glob("*.png"))
        if (found is not None and found != provenance) or (found is None and has_outputs):
            made_by = json.dumps(found) if found else "an unknown method (no fuse.json)"
            raise RunFolderError(
                f"--out {args.out} holds fused images made by {made_by}, not by "
                f"{json.dumps(provenance)}; choose another --out or pass --overwrite"
            )
    write_text_atomic(record, json.dumps(provenance, indent=2) + "\n")


def _fuse(args: argparse.Namespace) -> int:
    dataset, unpaired = _dataset(args)
    method = _resolve_method(args)
    inputs = method.prepare(PairSet(dataset, dataset.stems))
    fuse_one = method.fuser(inputs, device=args.device)
    provenance = _provenance(args, method, inputs)
    todo = [s for s in dataset.stems if args.overwrite or not (args.out / f"{s}.png").exists()]
    bad = bad_pairs([dataset.files(s) for s in todo], desc="checking pairs")
    if bad and not args.skip_bad:
        raise DatasetError(
            f"{len(bad)} bad pair(s), nothing fused (fix them, or pass --skip-bad to fuse the "
            "others): " + capped_list(bad.values())
        )
    _claim_output_folder(args, provenance)
    done = 0
    for stem in tqdm([s for s in todo if s not in bad], desc=f"fuse [{args.method}]", unit="pair"):
        sample = dataset[stem]
        write_png_atomic(
            args.out / f"{stem}.png", fuse_checked(method.name, fuse_one, stem, sample.ir, sample.vi)
        )
        done += 1
    print(
        f"fused {done} pair(s) with {args.method} into {args.out} ({len(dataset) - len(todo)} already there)"
    )
    counts = [
        f"{n} {what}" for n, what in ((len(bad), "bad pair(s)"), (len(unpaired), "unpaired file(s)")) if n
    ]
    if counts:
        print(
            f"skipped {' and '.join(counts)}:\n  " + capped_list([*bad.values(), *unpaired], sep="\n  "),
            file=sys.stderr,
        )
    return 0
