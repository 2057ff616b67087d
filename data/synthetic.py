"""Procedural paired IR/VIS detection data where fusion matters (the embedded default dataset).

Each pair is a small street scene (sky, buildings, sidewalk, road) seen by two registered cameras:

- IR (thermal): warm objects -- People, running Car/Bus/Truck (hot wheels and engine, warm body),
  Motorcycle riders -- are bright against a cooler, smooth background (cold sky, mild buildings,
  road that is warmer by day); a few hot background blobs (vents, manholes) as clutter; slight
  blur, Gaussian sensor noise and column fixed-pattern noise. Lamps and cold parked vehicles
  have (almost) no thermal contrast.
- VIS (color): textured reflectance (facades with window grids, asphalt, lane dashes, colored
  clothing and car paint) times an illumination level from day (0.7-1.0) through dusk to night
  (0.04-0.12); distance-dependent fog/haze; sun or headlight glare; sensor noise that grows in the
  dark. Light sources are added after lighting: street-lamp heads glow at night and dusk (through
  fog, with a halo), running vehicles show head/tail lights at night, some windows are lit.

So at night or in fog warm People nearly vanish from VIS but stay bright in IR, while Lamps and
cold parked vehicles (only placed in lit, fog-free scenes) are visible in VIS only: an IR-only
detector misses the latter, a VIS-only detector the former, a good fusion sees both.

Output: the M3FD layout ``Ir/ Vis/ Annotation/`` with 5-digit PNG names and VOC XML boxes named
with the M3FD classes, plus ``scenes.json`` (per-image conditions and per-object ``warm`` flags)
and ``synthetic.json`` (the config and its hash, written last: it marks a complete dataset).
Every pair is drawn from its own generator seeded with (seed, index), so the data are identical
for the same config on every machine and any subset can be regenerated independently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from data.classes import M3FD_CLASSES
from data.io import write_png_atomic, write_text_atomic
from data.synthetic_scene import (
    BASE_SIZE,
    FACADES,
    Scene,
    draw_lamp,
    draw_motorcycle,
    draw_person,
    draw_vehicle,
    ellipse,
    glow,
    rect,
)
from data.voc import write_voc

GENERATOR_VERSION = 1
MARKER_FILE = "synthetic.json"
SCENES_FILE = "scenes.json"
_VEHICLES = ("Car", "Bus", "Truck")


@dataclass(frozen=True)
class SyntheticConfig:
    n_images: int = 1000
    width: int = 160
    height: int = 128
    seed: int = 0
    min_objects: int = 2
    max_objects: int = 6
    night_fraction: float = 0.4  # illumination 0.04-0.12
    dusk_fraction: float = 0.15  # illumination 0.3-0.5; the rest is day (0.7-1.0)
    fog_fraction: float = 0.2  # heavy fog in VIS (density 0.8-0.95 at the horizon)
    glare_fraction: float = 0.1
    cold_vehicle_fraction: float = 0.45  # of vehicles in lit, fog-free scenes: parked, engine off
    ir_noise: float = 3.0  # IR sensor noise std (gray levels)
    # relative frequency of each class among placed objects (M3FD order)
    class_weights: tuple[float, ...] = (0.32, 0.26, 0.07, 0.1, 0.16, 0.09)

    def __post_init__(self) -> None:
        if self.width < 64 or self.height < 64:
            raise ValueError(f"synthetic images must be at least 64x64, got {self.width}x{self.height}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise ValueError("need 1 <= min_objects <= max_objects")
        if len(self.class_weights) != len(M3FD_CLASSES):
            raise ValueError(f"class_weights needs {len(M3FD_CLASSES)} entries ({M3FD_CLASSES})")

    def config_hash(self) -> str:
        payload = json.dumps({"version": GENERATOR_VERSION, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()


# ----------------------------------------------------------------------------------- drawing
def _background(rng: np.random.Generator, cfg: SyntheticConfig) -> Scene:
    h, w = cfg.height, cfg.width
    u = rng.random()
    if u < cfg.night_fraction:
        condition, light = "night", rng.uniform(0.04, 0.12)
    elif u < cfg.night_fraction + cfg.dusk_fraction:
        condition, light = "dusk", rng.uniform(0.3, 0.5)
    else:
        condition, light = "day", rng.uniform(0.7, 1.0)
    fog = rng.uniform(0.8, 0.95) if rng.random() < cfg.fog_fraction else 0.0
    horizon = int(h * rng.uniform(0.33, 0.45))
    ys = np.arange(h, dtype=np.float32)[:, None]

    # IR: cold sky, ground warmer (more so by day), smooth.
    ground_t = rng.uniform(110, 140) if condition == "day" else rng.uniform(80, 110)
    ir = np.empty((h, w), np.float32)
    ir[:horizon] = rng.uniform(30, 55) + 20 * ys[:horizon] / max(horizon, 1)
    ir[horizon:] = ground_t + 15 * (ys[horizon:] - horizon) / (h - horizon)
    refl = np.empty((h, w, 3), np.float32)
    sky_top = (
        np.array([90, 140, 215], np.float32) if condition != "dusk" else np.array([110, 90, 150], np.float32)
    )
    sky_low = (
        np.array([200, 215, 235], np.float32)
        if condition != "dusk"
        else np.array([240, 160, 110], np.float32)
    )
    t = (ys[:horizon] / max(horizon, 1))[..., None]
    refl[:horizon] = sky_top * (1 - t) + sky_low * t
    refl[horizon:] = rng.uniform(85, 115)  # asphalt
    emit = np.zeros((h, w, 3), np.float32)

    # Buildings standing on the horizon, with window grids (lit at night: VIS-only clutter).
    sc = h / 128
    x = rng.uniform(-20, 10) * sc
    while x < w:
        bw = rng.uniform(18, 55) * sc
        top = horizon - rng.uniform(12, horizon * 0.95)
        facade = FACADES[rng.integers(len(FACADES))] * rng.uniform(0.8, 1.1)
        b_t = ground_t - rng.uniform(5, 25)
        rect(refl, x, top, x + bw, horizon, facade)
        rect(ir, x, top, x + bw, horizon, b_t)
        step = max(int(round(7 * sc)), 5)
        for wy in range(int(top) + 3, horizon - 3, step):
            for wx in range(int(x) + 3, int(x + bw) - 4, step):
                rect(refl, wx, wy, wx + 3 * sc, wy + 4 * sc, facade * 0.7)
                if condition != "day" and rng.random() < 0.1:
                    rect(emit, wx, wy, wx + 3 * sc, wy + 4 * sc, np.array([200, 170, 90], np.float32))
                    rect(ir, wx, wy, wx + 3 * sc, wy + 4 * sc, 8.0, add=True)
        x += bw + rng.uniform(0, 12) * sc

    # Sidewalk band and dashed lane marking (slightly cooler paint in IR).
    walk = int(horizon + rng.uniform(4, 8) * sc)
    rect(refl, 0, horizon, w, walk, np.array([165, 160, 150], np.float32))
    rect(ir, 0, horizon, w, walk, -6.0, add=True)
    lane_y = horizon + (h - horizon) * rng.uniform(0.45, 0.65)
    offset = rng.uniform(0, 20)
    for dx in np.arange(-offset, w, 20 * sc):
        rect(refl, dx, lane_y, dx + 10 * sc, lane_y + 2 * sc, np.array([235, 235, 225], np.float32))
        rect(ir, dx, lane_y, dx + 10 * sc, lane_y + 2 * sc, -5.0, add=True)

    # Texture: VIS fine-grained; IR gets only low-frequency variation.
    refl += rng.normal(0, 5, (h, w, 1)).astype(np.float32) + rng.normal(0, 2, (h, w, 3)).astype(np.float32)
    ir += gaussian_filter(rng.normal(0, 6, (h, w)).astype(np.float32), 4)

    # Hot background clutter in IR (vents, manholes, exhausts): warm blobs that are not objects.
    for _ in range(rng.integers(0, 4)):
        ellipse(
            ir,
            rng.uniform(0, w),
            rng.uniform(horizon * 0.5, h),
            rng.uniform(2, 5) * sc,
            rng.uniform(2, 4) * sc,
            rng.uniform(150, 195),
        )
    return Scene(ir, refl, emit, horizon, float(light), float(fog), condition)


# ----------------------------------------------------------------------------------- objects
def _iou_max(box: np.ndarray, boxes: list[np.ndarray]) -> float:
    best = 0.0
    for b in boxes:
        iw = min(box[2], b[2]) - max(box[0], b[0])
        ih = min(box[3], b[3]) - max(box[1], b[1])
        if iw > 0 and ih > 0:
            inter = iw * ih
            smaller = min((box[2] - box[0]) * (box[3] - box[1]), (b[2] - b[0]) * (b[3] - b[1]))
            best = max(best, inter / smaller)
    return best


def _place_objects(s: Scene, rng: np.random.Generator, cfg: SyntheticConfig) -> list[dict]:
    h, w = cfg.height, cfg.width
    sc = h / 128
    weights = np.asarray(cfg.class_weights, np.float64)
    cold_allowed = s.light >= 0.3 and s.fog == 0.0
    planned = []
    for _ in range(rng.integers(cfg.min_objects, cfg.max_objects + 1)):
        cls = M3FD_CLASSES[rng.choice(len(M3FD_CLASSES), p=weights / weights.sum())]
        if cls == "Lamp" and s.fog > 0 and s.light >= 0.6:
            continue  # an unlit lamp in daytime fog is invisible to both cameras: no label for it
        for _attempt in range(20):
            ground_y = rng.uniform(s.horizon + 0.3 * (h - s.horizon), h)  # where it stands
            depth = (ground_y - s.horizon) / (h - s.horizon)  # 0 far .. 1 near
            scale = sc * (0.85 + 0.5 * depth) * rng.uniform(0.92, 1.08)  # >= 0.78: no side under ~10 px
            bw, bh = (v * scale for v in BASE_SIZE[cls])
            x0 = rng.uniform(0, w - bw)
            y0 = ground_y - bh if cls != "Lamp" else ground_y - bh - rng.uniform(35, 50) * scale
            box = np.array([round(x0), round(y0), round(x0 + bw), round(y0 + bh)], np.float32)
            if box[1] >= 0 and box[3] <= h and _iou_max(box, [p["box"] for p in planned]) < 0.25:
                warm = cls in ("People", "Motorcycle") or (
                    cls in _VEHICLES and not (cold_allowed and rng.random() < cfg.cold_vehicle_fraction)
                )
                planned.append({"class": cls, "box": box, "warm": bool(warm), "ground_y": float(ground_y)})
                break
    planned.sort(key=lambda p: p["ground_y"])  # far first: near objects occlude far ones
    for p in planned:
        x0, y0, x1, y1 = (float(v) for v in p["box"])
        bw, bh = x1 - x0, y1 - y0
        skin_t = rng.uniform(200, 240)
        bg_t = float(np.median(s.ir[int(y0) : int(y1), int(x0) : int(x1)]))
        if p["class"] == "People":
            draw_person(s, rng, x0, y0, bw, bh, skin_t)
        elif p["class"] == "Motorcycle":
            draw_motorcycle(s, rng, x0, y0, bw, bh, skin_t)
        elif p["class"] == "Lamp":
            draw_lamp(s, rng, x0, y0, bw, bh, p["ground_y"])
        else:
            draw_vehicle(s, rng, p["class"], x0, y0, bw, bh, p["warm"], bg_t)
    return planned


def _render(s: Scene, rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, bool]:
    h, w = cfg.height, cfg.width
    vis = s.refl * s.light
    glare = rng.random() < cfg.glare_fraction
    if s.fog > 0:  # denser towards the horizon (longer path through the fog)
        ys = np.arange(h, dtype=np.float32)
        density = np.where(ys < s.horizon, 1.0, 1.0 - 0.2 * (ys - s.horizon) / (h - s.horizon)) * s.fog
        airlight = 215 * s.light + 12
        vis = vis * (1 - density[:, None, None]) + airlight * density[:, None, None]
        s.emit *= 1 - 0.4 * s.fog
        s.ir = s.ir * (1 - 0.1 * s.fog) + 0.1 * s.fog * float(s.ir.mean())  # LWIR mostly sees through
    vis = vis + s.emit
    if glare:
        if s.condition == "day":
            glow(
                vis,
                rng.uniform(0, w),
                rng.uniform(0, s.horizon),
                rng.uniform(18, 30) * h / 128,
                (170, 165, 140),
            )
        else:
            glow(
                vis,
                rng.uniform(0, w),
                rng.uniform(s.horizon, h),
                rng.uniform(8, 14) * h / 128,
                (255, 250, 230),
            )
    vis = vis + rng.normal(0, 2 + 4 * (1 - s.light), (h, w, 3)).astype(np.float32)
    ir = gaussian_filter(s.ir, 0.7)
    ir = (
        ir
        + rng.normal(0, cfg.ir_noise, (h, w)).astype(np.float32)
        + rng.normal(0, 1.5, (1, w)).astype(np.float32)
    )
    to8 = lambda a: np.clip(np.rint(a), 0, 255).astype(np.uint8)  # noqa: E731
    return to8(ir), to8(vis), glare


def render_pair(cfg: SyntheticConfig, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """Pair ``index`` of the dataset: (IR uint8 (H, W), VIS uint8 (H, W, 3), scene record)."""
    rng = np.random.default_rng([cfg.seed, index])
    scene = _background(rng, cfg)
    objects = _place_objects(scene, rng, cfg)
    ir, vis, glare = _render(scene, rng, cfg)
    record = {
        "stem": f"{index:05d}",
        "condition": scene.condition,
        "illumination": round(scene.light, 4),
        "fog": round(scene.fog, 4),
        "glare": glare,
        "objects": [
            {"class": o["class"], "box": [int(v) for v in o["box"]], "warm": o["warm"]} for o in objects
        ],
    }
    return ir, vis, record


def _is_complete(out_dir: Path, cfg: SyntheticConfig) -> bool:
    marker = out_dir / MARKER_FILE
    if not marker.is_file():
        return False
    recorded = json.loads(marker.read_text(encoding="utf-8")).get("config_hash")
    if recorded != cfg.config_hash():
        raise FileExistsError(
            f"{out_dir} holds a synthetic dataset made with a different config "
            f"(hash {str(recorded)[:12]} != {cfg.config_hash()[:12]}); use another directory "
            f"or generate_synthetic_dataset(..., overwrite=True)"
        )
    stems = [f"{i:05d}" for i in range(cfg.n_images)]
    return all(
        (out_dir / sub / f"{s}{ext}").is_file()
        for s in stems
        for sub, ext in (("Ir", ".png"), ("Vis", ".png"), ("Annotation", ".xml"))
    )


def is_generated(out_dir: str | os.PathLike, cfg: SyntheticConfig) -> bool:
    """True when ``out_dir`` holds the complete dataset of ``cfg`` (nothing to generate)."""
    return _is_complete(Path(out_dir), cfg)


def generate_synthetic_dataset(
    out_dir: str | os.PathLike,
    cfg: SyntheticConfig = SyntheticConfig(),
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the dataset to ``out_dir`` (M3FD layout) and return ``out_dir``.

    Idempotent: a complete dataset with the same config hash is left untouched; an interrupted one
    is regenerated (all writes are atomic, and ``synthetic.json`` is written last); one made with a
    different config raises FileExistsError unless ``overwrite``.
    """
    out_dir = Path(out_dir)
    if overwrite:
        (out_dir / MARKER_FILE).unlink(missing_ok=True)
    elif _is_complete(out_dir, cfg):
        return out_dir
    for sub in ("Ir", "Vis", "Annotation"):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
        if overwrite:  # drop pairs beyond n_images from an earlier, larger config
            keep = {f"{i:05d}" for i in range(cfg.n_images)}
            for f in (out_dir / sub).iterdir():
                if f.stem not in keep:
                    f.unlink()
    records = []
    for i in tqdm(range(cfg.n_images), desc="synthetic IR/VIS pairs", disable=not progress):
        ir, vis, record = render_pair(cfg, i)
        stem = record["stem"]
        write_png_atomic(out_dir / "Ir" / f"{stem}.png", ir)
        write_png_atomic(out_dir / "Vis" / f"{stem}.png", vis)
        write_voc(
            out_dir / "Annotation" / f"{stem}.xml",
            f"{stem}.png",
            cfg.width,
            cfg.height,
            [o["class"] for o in record["objects"]],
            np.array([o["box"] for o in record["objects"]]),
        )
        records.append(record)
    write_text_atomic(out_dir / SCENES_FILE, json.dumps(records, separators=(",", ":")) + "\n")
    meta = {
        "generator_version": GENERATOR_VERSION,
        "config_hash": cfg.config_hash(),
        "config": dataclasses.asdict(cfg),
        "classes": list(M3FD_CLASSES),
    }
    write_text_atomic(out_dir / MARKER_FILE, json.dumps(meta, indent=2) + "\n")
    return out_dir
