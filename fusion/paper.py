"""The S4Fusion paper's printed numbers (arXiv 2405.20881), for "paper" columns beside our results.

The numbers live in ``paper_s4fusion.yaml`` beside this module (package data, cited per table);
this module only reads them and hands them out typed. Imports nothing from the rest of s4fuse.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

PAPER_FILE = "paper_s4fusion.yaml"
FUSION_DATASETS = ("msrs", "roadscene", "tno", "m3fd")  # Tables I, II, III, IV


@dataclass(frozen=True)
class AblationRow:
    """One row of Table V: the variant, its metric values and the training-config overrides giving it."""

    exp: int
    variant: str
    values: dict[str, float]
    overrides: dict[str, Any]


@dataclass(frozen=True)
class Efficiency:
    """One column of Table VII."""

    gflops: float
    params_m: float


@dataclass(frozen=True)
class LayerDelta:
    """One row of Table VIII: mean delta (before softplus) of the IR and VIS parts of the sequence."""

    delta_ir: float
    delta_vis: float


@lru_cache(maxsize=1)
def paper_data() -> dict[str, Any]:
    """The whole file as plain data (cached; treat as read-only)."""
    text = resources.files("fusion").joinpath(PAPER_FILE).read_text(encoding="utf-8")
    return yaml.safe_load(text)


def citation() -> str:
    c = paper_data()["citation"]
    return f"{c['title']}, arXiv {c['arxiv']} ({c['url']})"


def competing_methods() -> list[str]:
    return list(paper_data()["competing_methods"])


def fusion_table_number(dataset: str) -> str:
    """The roman number of the paper's table for ``dataset`` (msrs -> "I")."""
    return paper_data()["fusion_tables"]["tables"][_fusion_dataset(dataset)]


def table_metrics(dataset: str) -> dict[str, dict[str, float]]:
    """Tables I-IV: ``{method: {metric: value}}`` for msrs, roadscene, tno or m3fd (paper order)."""
    tables = paper_data()["fusion_tables"]
    columns = tables["columns"]
    return {
        method: dict(zip(columns, map(float, values), strict=True))
        for method, values in tables["values"][_fusion_dataset(dataset)].items()
    }


def table5_rows() -> list[AblationRow]:
    """Table V (MSRS ablations), Exp. 1-8 in order."""
    table = paper_data()["table5"]
    return [
        AblationRow(
            int(r["exp"]),
            r["variant"],
            dict(zip(table["columns"], map(float, r["values"]), strict=True)),
            dict(r["overrides"]),
        )
        for r in table["rows"]
    ]


def table6_map50() -> dict[str, float]:
    """Table VI: mAP@50 (%) on M3FD per method, in the paper's column order."""
    return {method: float(v) for method, v in paper_data()["table6"]["values"].items()}


def table7_efficiency() -> dict[str, Efficiency]:
    """Table VII: GFLOPs and parameters (M) per method on the MSRS test set."""
    table = paper_data()["table7"]
    return {
        method: Efficiency(float(table["gflops"][method]), float(table["params_m"][method]))
        for method in table["gflops"]
    }


def table8_deltas() -> dict[int, LayerDelta]:
    """Table VIII: ``{layer (1-based): LayerDelta}``."""
    return {
        int(layer): LayerDelta(float(v["delta_ir"]), float(v["delta_vis"]))
        for layer, v in paper_data()["table8"].items()
    }


def _fusion_dataset(dataset: str) -> str:
    key = dataset.lower()
    if key not in FUSION_DATASETS:
        raise KeyError(f"the paper reports fusion metrics for {list(FUSION_DATASETS)}, not {dataset!r}")
    return key
