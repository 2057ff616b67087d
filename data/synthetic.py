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
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from data.classes import M3FD_CLASSES
from data.io import write_atomic, write_png_atomic, write_text_atomic
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
def _ellipse(img: np.ndarray, cx: float, cy: float, rx: float, ry: float, value, add: bool = False) -> None:
    h, w = img.shape[:2]
    x0, x1 = max(int(np.floor(cx - rx)), 0), min(int(np.ceil(cx + rx)) + 1, w)
    y0, y1 = max(int(np.floor(cy - ry)), 0), min(int(np.ceil(cy + ry)) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    mask = ((xx + 0.5 - cx) / max(rx, 0.5)) ** 2 + ((yy + 0.5 - cy) / max(ry, 0.5)) ** 2 <= 1.0
    region = img[y0:y1, x0:x1]
    if add:
        region[mask] += value
    else:
        region[mask] = value


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, value, add: bool = False) -> None:
    h, w = img.shape[:2]
    xa, xb = max(int(round(x0)), 0), min(int(round(x1)), w)
    ya, yb = max(int(round(y0)), 0), min(int(round(y1)), h)
    if xb <= xa or yb <= ya:
        return
    if add:
        img[ya:yb, xa:xb] += value
    else:
        img[ya:yb, xa:xb] = value


def _glow(img: np.ndarray, cx: float, cy: float, sigma: float, color) -> None:
    """Add a Gaussian halo (light source) of peak ``color`` to an (H, W, 3) image."""
    h, w = img.shape[:2]
    r = int(3 * sigma) + 1
    x0, x1, y0, y1 = (
        max(int(cx) - r, 0),
        min(int(cx) + r + 1, w),
        max(int(cy) - r, 0),
        min(int(cy) + r + 1, h),
    )
    if x1 <= x0 or y1 <= y0:
        return
    yy, xx = np.ogrid[y0:y1, x0:x1]
    g = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)).astype(np.float32)
    img[y0:y1, x0:x1] += g[..., None] * np.asarray(color, np.float32)


# ------------------------------------------------------------------------------------ scenes
@dataclass
class _Scene:
    ir: np.ndarray  # float32 (H, W): temperature-like gray levels
    refl: np.ndarray  # float32 (H, W, 3): VIS reflectance (0-255 under full light)
    emit: np.ndarray  # float32 (H, W, 3): VIS light sources, added after lighting
    horizon: int
    light: float
    fog: float
    condition: str


_PAINT = np.array(
    [
        [200, 30, 30],
        [30, 60, 190],
        [235, 235, 235],
        [160, 165, 170],
        [25, 25, 30],
        [230, 200, 40],
        [40, 130, 60],
        [120, 40, 140],
    ],
    np.float32,
)
_CLOTHES = np.array(
    [
        [200, 40, 40],
        [40, 80, 200],
        [230, 220, 200],
        [60, 60, 60],
        [220, 180, 40],
        [30, 120, 60],
        [150, 90, 50],
        [20, 20, 25],
    ],
    np.float32,
)
_FACADES = np.array(
    [[150, 80, 60], [200, 190, 160], [130, 130, 135], [90, 120, 150], [170, 150, 120]], np.float32
)


def _background(rng: np.random.Generator, cfg: SyntheticConfig) -> _Scene:
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
        facade = _FACADES[rng.integers(len(_FACADES))] * rng.uniform(0.8, 1.1)
        b_t = ground_t - rng.uniform(5, 25)
        _rect(refl, x, top, x + bw, horizon, facade)
        _rect(ir, x, top, x + bw, horizon, b_t)
        step = max(int(round(7 * sc)), 5)
        for wy in range(int(top) + 3, horizon - 3, step):
            for wx in range(int(x) + 3, int(x + bw) - 4, step):
                _rect(refl, wx, wy, wx + 3 * sc, wy + 4 * sc, facade * 0.7)
                if condition != "day" and rng.random() < 0.1:
                    _rect(emit, wx, wy, wx + 3 * sc, wy + 4 * sc, np.array([200, 170, 90], np.float32))
                    _rect(ir, wx, wy, wx + 3 * sc, wy + 4 * sc, 8.0, add=True)
        x += bw + rng.uniform(0, 12) * sc

    # Sidewalk band and dashed lane marking (slightly cooler paint in IR).
    walk = int(horizon + rng.uniform(4, 8) * sc)
    _rect(refl, 0, horizon, w, walk, np.array([165, 160, 150], np.float32))
    _rect(ir, 0, horizon, w, walk, -6.0, add=True)
    lane_y = horizon + (h - horizon) * rng.uniform(0.45, 0.65)
    offset = rng.uniform(0, 20)
    for dx in np.arange(-offset, w, 20 * sc):
        _rect(refl, dx, lane_y, dx + 10 * sc, lane_y + 2 * sc, np.array([235, 235, 225], np.float32))
        _rect(ir, dx, lane_y, dx + 10 * sc, lane_y + 2 * sc, -5.0, add=True)

    # Texture: VIS fine-grained; IR gets only low-frequency variation.
    refl += rng.normal(0, 5, (h, w, 1)).astype(np.float32) + rng.normal(0, 2, (h, w, 3)).astype(np.float32)
    ir += gaussian_filter(rng.normal(0, 6, (h, w)).astype(np.float32), 4)

    # Hot background clutter in IR (vents, manholes, exhausts): warm blobs that are not objects.
    for _ in range(rng.integers(0, 4)):
        _ellipse(
            ir,
            rng.uniform(0, w),
            rng.uniform(horizon * 0.5, h),
            rng.uniform(2, 5) * sc,
            rng.uniform(2, 4) * sc,
            rng.uniform(150, 195),
        )
    return _Scene(ir, refl, emit, horizon, float(light), float(fog), condition)


# ----------------------------------------------------------------------------------- objects
_BASE_SIZE = {  # (width, height) in pixels at scale 1 for a 128-pixel-high image
    "People": (13, 30),
    "Car": (40, 20),
    "Bus": (66, 36),
    "Truck": (58, 32),
    "Motorcycle": (24, 26),
    "Lamp": (18, 13),
}


def _draw_person(s: _Scene, rng, x0, y0, bw, bh, skin_t) -> None:
    head_r = 0.12 * bh
    cx = x0 + bw / 2
    clothes, pants = _CLOTHES[rng.integers(len(_CLOTHES))], _CLOTHES[rng.integers(len(_CLOTHES))]
    # legs, torso, head (head touches the top of the box, legs the bottom)
    for lx in (x0 + 0.1 * bw, x0 + 0.55 * bw):
        _rect(s.refl, lx, y0 + 0.58 * bh, lx + 0.35 * bw, y0 + bh, pants)
        _rect(s.ir, lx, y0 + 0.58 * bh, lx + 0.35 * bw, y0 + bh, skin_t - rng.uniform(10, 25))
    _ellipse(s.refl, cx, y0 + 0.42 * bh, bw / 2, 0.2 * bh, clothes)
    _ellipse(s.ir, cx, y0 + 0.42 * bh, bw / 2, 0.2 * bh, skin_t - rng.uniform(5, 15))
    _ellipse(
        s.refl,
        cx,
        y0 + head_r,
        head_r * 0.9,
        head_r,
        np.array([205, 160, 130], np.float32) * rng.uniform(0.6, 1.05),
    )
    _ellipse(s.ir, cx, y0 + head_r, head_r * 0.9, head_r, skin_t)


def _draw_vehicle(s: _Scene, rng, cls, x0, y0, bw, bh, warm: bool, bg_t: float) -> None:
    paint = _PAINT[rng.integers(len(_PAINT))] * rng.uniform(0.85, 1.05)
    glass = np.array([45, 55, 70], np.float32)
    facing_right = rng.random() < 0.5
    ir = s.ir
    body_t = bg_t + (rng.uniform(25, 45) if warm else 0.0)
    wheel_r = 0.2 * bh if cls != "Bus" else 0.16 * bh
    if cls == "Car":
        body = (x0, y0 + 0.38 * bh, x0 + bw, y0 + bh - wheel_r)
        cabin = (x0 + 0.2 * bw, y0, x0 + 0.78 * bw, y0 + 0.42 * bh)
        _rect(s.refl, *cabin, paint)
        _rect(s.refl, cabin[0] + 2, cabin[1] + 2, cabin[2] - 2, cabin[3], glass)
        wheels = (x0 + 0.2 * bw, x0 + 0.8 * bw)
        parts = [cabin, body]
    elif cls == "Bus":
        body = (x0, y0, x0 + bw, y0 + bh - wheel_r)
        wheels = (x0 + 0.15 * bw, x0 + 0.85 * bw)
        parts = [body]
    else:  # Truck: cab at the front, cargo box behind
        cab_w = 0.3 * bw
        cab = (
            (x0 + bw - cab_w, y0 + 0.25 * bh, x0 + bw, y0 + bh - wheel_r)
            if facing_right
            else (x0, y0 + 0.25 * bh, x0 + cab_w, y0 + bh - wheel_r)
        )
        cargo = (
            (x0, y0, x0 + bw - cab_w, y0 + 0.85 * bh)
            if facing_right
            else (x0 + cab_w, y0, x0 + bw, y0 + 0.85 * bh)
        )
        body = cab
        wheels = (x0 + 0.15 * bw, x0 + 0.5 * bw, x0 + 0.87 * bw)
        parts = [cargo, cab]
        _rect(s.refl, *cargo, np.array([210, 205, 195], np.float32) * rng.uniform(0.7, 1.05))
    _rect(s.refl, *body, paint)
    if cls == "Bus":  # row of windows
        _rect(s.refl, x0 + 0.05 * bw, y0 + 0.15 * bh, x0 + 0.95 * bw, y0 + 0.45 * bh, glass)
    elif cls == "Truck":
        _rect(s.refl, body[0] + 2, body[1] + 2, body[2] - 2, body[1] + 0.35 * (body[3] - body[1]), glass)
    for p in parts:  # IR: warm body (running) or nearly background (parked, engine off)
        _rect(ir, *p, body_t if warm else rng.uniform(-4, 3), add=not warm)
    front = body[2] - 0.3 * (body[2] - body[0]) if facing_right else body[0]
    if warm:  # hot engine compartment and exhaust-side glow
        _rect(ir, front, body[1] + 1, front + 0.3 * (body[2] - body[0]), body[3], rng.uniform(150, 185))
    for wx in wheels:
        _ellipse(s.refl, wx, y0 + bh - wheel_r, wheel_r, wheel_r, np.array([25, 25, 28], np.float32))
        if warm:
            _ellipse(ir, wx, y0 + bh - wheel_r, wheel_r, wheel_r, rng.uniform(165, 200))
        else:
            _ellipse(ir, wx, y0 + bh - wheel_r, wheel_r, wheel_r, rng.uniform(-4, 2), add=True)
    if warm and s.light < 0.5:  # head lights at the front, tail lights at the back
        hy = body[1] + 0.55 * (body[3] - body[1])
        fx, rx = (body[2], x0) if facing_right else (body[0], x0 + bw)
        _glow(s.emit, fx, hy, 2.0 * bh / 20, (255, 245, 210))
        _glow(s.emit, rx, hy, 1.5 * bh / 20, (200, 20, 10))


def _draw_motorcycle(s: _Scene, rng, x0, y0, bw, bh, skin_t) -> None:
    wheel_r = 0.2 * bh
    paint = _PAINT[rng.integers(len(_PAINT))]
    for wx in (x0 + wheel_r, x0 + bw - wheel_r):
        _ellipse(s.refl, wx, y0 + bh - wheel_r, wheel_r, wheel_r, np.array([25, 25, 28], np.float32))
        _ellipse(s.ir, wx, y0 + bh - wheel_r, wheel_r, wheel_r, skin_t - rng.uniform(40, 60))
    _rect(s.refl, x0 + 0.2 * bw, y0 + 0.55 * bh, x0 + 0.8 * bw, y0 + 0.78 * bh, paint)
    _rect(s.ir, x0 + 0.3 * bw, y0 + 0.6 * bh, x0 + 0.6 * bw, y0 + 0.78 * bh, rng.uniform(165, 195))  # engine
    # rider: torso and head above the bike
    clothes = _CLOTHES[rng.integers(len(_CLOTHES))]
    _ellipse(s.refl, x0 + 0.45 * bw, y0 + 0.38 * bh, 0.2 * bw, 0.2 * bh, clothes)
    _ellipse(s.ir, x0 + 0.45 * bw, y0 + 0.38 * bh, 0.2 * bw, 0.2 * bh, skin_t - rng.uniform(5, 15))
    _ellipse(
        s.refl, x0 + 0.5 * bw, y0 + 0.1 * bh, 0.1 * bh, 0.1 * bh, np.array([60, 60, 70], np.float32)
    )  # helmet
    _ellipse(s.ir, x0 + 0.5 * bw, y0 + 0.1 * bh, 0.1 * bh, 0.1 * bh, skin_t - 10)


def _draw_lamp(s: _Scene, rng, x0, y0, bw, bh, ground_y) -> None:
    """Street lamp: the box is the lamp head; the pole runs down to the ground outside the box."""
    cx = x0 + bw / 2
    pole_w = max(2.0, 0.12 * bw)
    _rect(s.refl, cx - pole_w / 2, y0 + bh, cx + pole_w / 2, ground_y, np.array([95, 100, 105], np.float32))
    _rect(s.refl, x0, y0 + 0.15 * bh, x0 + bw, y0 + 0.7 * bh, np.array([120, 125, 130], np.float32))
    _rect(
        s.refl, x0 + 0.15 * bw, y0 + 0.7 * bh, x0 + 0.85 * bw, y0 + bh, np.array([215, 215, 200], np.float32)
    )
    # not warm: the whole lamp is within a few gray levels of the background in IR
    _rect(s.ir, cx - pole_w / 2, y0 + bh, cx + pole_w / 2, ground_y, rng.uniform(-3, 3), add=True)
    _rect(s.ir, x0, y0, x0 + bw, y0 + bh, rng.uniform(-3, 4), add=True)
    if s.light < 0.6:  # lit lamp (the box keeps the bright core; the halo spills out)
        _rect(
            s.emit,
            x0 + 0.15 * bw,
            y0 + 0.7 * bh,
            x0 + 0.85 * bw,
            y0 + bh,
            np.array([255, 240, 190], np.float32),
        )
        _glow(s.emit, cx, y0 + 0.85 * bh, 0.45 * bw * (1 + s.fog), (170, 150, 100))


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


def _place_objects(s: _Scene, rng: np.random.Generator, cfg: SyntheticConfig) -> list[dict]:
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
            bw, bh = (v * scale for v in _BASE_SIZE[cls])
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
            _draw_person(s, rng, x0, y0, bw, bh, skin_t)
        elif p["class"] == "Motorcycle":
            _draw_motorcycle(s, rng, x0, y0, bw, bh, skin_t)
        elif p["class"] == "Lamp":
            _draw_lamp(s, rng, x0, y0, bw, bh, p["ground_y"])
        else:
            _draw_vehicle(s, rng, p["class"], x0, y0, bw, bh, p["warm"], bg_t)
    return planned


def _render(s: _Scene, rng: np.random.Generator, cfg: SyntheticConfig) -> tuple[np.ndarray, np.ndarray, bool]:
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
            _glow(
                vis,
                rng.uniform(0, w),
                rng.uniform(0, s.horizon),
                rng.uniform(18, 30) * h / 128,
                (170, 165, 140),
            )
        else:
            _glow(
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


def _example_stems(scenes: list[dict]) -> list[str]:
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
    stems = stems or _example_stems(records)
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
