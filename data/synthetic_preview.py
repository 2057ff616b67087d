"""A picture of the embedded dataset: one row per situation the generator is built around (IR and VIS
with their boxes), for docs/data.md.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from PIL import Image

from data.classes import M3FD_CLASSES
from data.io import write_atomic
from data.synthetic import SCENES_FILE


def example_stems(scenes: list[dict]) -> list[str]:
    """One pair per situation the generator is built around (first match of each, in stem order)."""
    wanted = [
        lambda r: r["condition"] == "day" and not r["fog"] and any(not o["warm"] for o in r["objects"]),
        lambda r: r["condition"] == "dusk" and any(o["class"] == "Lamp" for o in r["objects"]),
        lambda r: r["condition"] == "night" and {"People", "Lamp"} <= {o["class"] for o in r["objects"]},
        lambda r: r["fog"] > 0 and any(o["class"] == "People" for o in r["objects"]),
        lambda r: r["glare"],
    ]
    stems: list[str] = []
    for test in wanted:
        match = next((r["stem"] for r in scenes if test(r) and r["stem"] not in stems), None)
        if match is not None:
            stems.append(match)
    return stems


def save_example_grid(
    root: str | os.PathLike, out_path: str | os.PathLike, stems: list[str] | None = None
) -> Path:
    """PNG grid: one row per pair (IR, VIS, both with their boxes), titled with the scene condition.

    Without ``stems``, picks a cold parked vehicle by day, dusk lamps, night people + lamps, fog, glare.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Rectangle

    from data.adapters import open_dataset

    root = Path(root)
    records = json.loads((root / SCENES_FILE).read_text(encoding="utf-8"))
    scenes = {r["stem"]: r for r in records}
    stems = stems or example_stems(records)
    ds = open_dataset("synthetic", root)
    colors = dict(zip(M3FD_CLASSES, ("red", "cyan", "orange", "magenta", "yellow", "lime")))
    fig, axes = plt.subplots(len(stems), 2, figsize=(5.2, 2.1 * len(stems)), squeeze=False)
    for row, stem in zip(axes, stems):
        sample, scene = ds[stem], scenes[stem]
        for ax, img, label in ((row[0], sample.ir, "IR"), (row[1], sample.vi, "VIS")):
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            for (x0, y0, x1, y1), c in zip(sample.boxes, sample.classes):
                name = ds.class_names[c]
                ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, lw=1.2, ec=colors[name]))
                ax.text(x0, y0 - 1, name, color=colors[name], fontsize=5)
            fog = f", fog {scene['fog']:.2f}" if scene["fog"] else ""
            ax.set_title(f"{stem} {label}: {scene['condition']}{fog}", fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=100)
    plt.close(fig)
    buffer.seek(0)
    # a 256-color palette keeps the noisy images' PNG small enough for documentation
    with Image.open(buffer) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    write_atomic(out_path, lambda fh: small.save(fh, format="PNG", optimize=True))
    return out_path
