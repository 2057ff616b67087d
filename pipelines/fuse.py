"""``fuse``: fuse every IR/VIS pair of a dataset (or two folders) with S4Fusion or a baseline.

    python -m pipelines.run fuse --dataset tno --root ../shared/data/samples/TNO \
        --checkpoint model.pkl --out runs/fused/tno
    python -m pipelines.run fuse --ir IR_DIR --vi VI_DIR --method gff --out runs/fused/gff

Outputs are 8-bit PNGs named by pair stem, written atomically; existing outputs are kept, so an
interrupted run resumes (``--overwrite`` redoes them).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from tqdm import tqdm

from data.adapters import DATASET_NAMES, DatasetLayout, PairedImageDataset, open_dataset, scan_pairs
from data.io import write_png_atomic
from fusion.baselines import BASELINES
from fusion.inference import make_fuser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("input (a dataset, or two folders)")
    src.add_argument("--dataset", choices=DATASET_NAMES, help="dataset layout of --root")
    src.add_argument("--root", type=Path, help="dataset root folder")
    src.add_argument("--split", help="dataset split, where the layout has them (e.g. test)")
    src.add_argument("--ir", type=Path, help="folder of infrared images (with --vi)")
    src.add_argument("--vi", type=Path, help="folder of visible images matched to --ir by file stem")
    parser.add_argument("--method", default="s4fusion", choices=["s4fusion", *BASELINES],
                        help="s4fusion (needs --checkpoint) or a classical baseline (default: s4fusion)")
    parser.add_argument("--checkpoint",
                        help="S4Fusion weights: an s4fuse export, the official model.pkl / vmunet state dict, "
                             "or 'demo' (the small CPU-trained model shipped in fusion/weights)")
    parser.add_argument("--out", type=Path, required=True, help="output folder for <stem>.png")
    parser.add_argument("--device", default="cpu", help="torch device for S4Fusion (cpu, cuda, cuda:1, ...)")
    parser.add_argument("--scan-backend", default=None, help="selective-scan backend override (auto, cpu, mamba, reference)")
    parser.add_argument("--overwrite", action="store_true", help="redo outputs that already exist")


def _dataset(args: argparse.Namespace) -> PairedImageDataset:
    if args.ir or args.vi:
        if not (args.ir and args.vi) or args.dataset:
            raise SystemExit("fuse: give either --ir and --vi together, or --dataset with --root")
        for folder in (args.ir, args.vi):
            if not folder.is_dir():
                raise SystemExit(f"fuse: {folder} is not a folder")
        scan = scan_pairs(DatasetLayout("folder", args.ir, args.vi))
        unpaired = scan.ir_only + scan.vi_only
        if unpaired or not scan.pairs:
            raise SystemExit(f"fuse: {len(scan.pairs)} pairs in {args.ir} / {args.vi}; unpaired files: "
                             + ", ".join(map(str, unpaired[:10])))
        return PairedImageDataset(scan.pairs, "folder")
    if not (args.dataset and args.root):
        raise SystemExit("fuse: give --dataset NAME --root PATH (or --ir DIR --vi DIR)")
    return open_dataset(args.dataset, args.root, split=args.split)


def main(args: argparse.Namespace) -> int:
    dataset = _dataset(args)
    if args.method == "s4fusion" and args.checkpoint is None:
        raise SystemExit("fuse: --method s4fusion needs --checkpoint (the official release's model.pkl, "
                         "a model exported by `python -m pipelines.run train_fusion`, or 'demo')")
    fuse_one = make_fuser(args.method, args.checkpoint, device=args.device, scan_backend=args.scan_backend)
    args.out.mkdir(parents=True, exist_ok=True)
    done = 0
    for stem in tqdm(dataset.stems, desc=f"fuse [{args.method}]", unit="pair"):
        target = args.out / f"{stem}.png"
        if target.exists() and not args.overwrite:
            continue
        sample = dataset[stem]
        write_png_atomic(target, fuse_one(sample.ir, sample.vi))
        done += 1
    print(f"fused {done} pair(s) with {args.method} into {args.out} ({len(dataset) - done} already there)")
    return 0
