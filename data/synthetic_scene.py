"""Drawing for the embedded generator (data.synthetic): shape primitives on float images, the scene
being drawn (IR temperature, VIS reflectance, boxes) and the four object drawers. Palettes and object
sizes are data here; where and when objects appear is decided in data.synthetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def ellipse(img: np.ndarray, cx: float, cy: float, rx: float, ry: float, value, add: bool = False) -> None:
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


def rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, value, add: bool = False) -> None:
    h, w = img.shape[:2]
    xa, xb = max(int(round(x0)), 0), min(int(round(x1)), w)
    ya, yb = max(int(round(y0)), 0), min(int(round(y1)), h)
    if xb <= xa or yb <= ya:
        return
    if add:
        img[ya:yb, xa:xb] += value
    else:
        img[ya:yb, xa:xb] = value


def glow(img: np.ndarray, cx: float, cy: float, sigma: float, color) -> None:
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
class Scene:
    ir: np.ndarray  # float32 (H, W): temperature-like gray levels
    refl: np.ndarray  # float32 (H, W, 3): VIS reflectance (0-255 under full light)
    emit: np.ndarray  # float32 (H, W, 3): VIS light sources, added after lighting
    horizon: int
    light: float
    fog: float
    condition: str


PAINT = np.array(
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
CLOTHES = np.array(
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
FACADES = np.array(
    [[150, 80, 60], [200, 190, 160], [130, 130, 135], [90, 120, 150], [170, 150, 120]], np.float32
)


BASE_SIZE = {  # (width, height) in pixels at scale 1 for a 128-pixel-high image
    "People": (13, 30),
    "Car": (40, 20),
    "Bus": (66, 36),
    "Truck": (58, 32),
    "Motorcycle": (24, 26),
    "Lamp": (18, 13),
}


def draw_person(s: Scene, rng, x0, y0, bw, bh, skin_t) -> None:
    head_r = 0.12 * bh
    cx = x0 + bw / 2
    clothes, pants = CLOTHES[rng.integers(len(CLOTHES))], CLOTHES[rng.integers(len(CLOTHES))]
    # legs, torso, head (head touches the top of the box, legs the bottom)
    for lx in (x0 + 0.1 * bw, x0 + 0.55 * bw):
        rect(s.refl, lx, y0 + 0.58 * bh, lx + 0.35 * bw, y0 + bh, pants)
        rect(s.ir, lx, y0 + 0.58 * bh, lx + 0.35 * bw, y0 + bh, skin_t - rng.uniform(10, 25))
    ellipse(s.refl, cx, y0 + 0.42 * bh, bw / 2, 0.2 * bh, clothes)
    ellipse(s.ir, cx, y0 + 0.42 * bh, bw / 2, 0.2 * bh, skin_t - rng.uniform(5, 15))
    ellipse(
        s.refl,
        cx,
        y0 + head_r,
        head_r * 0.9,
        head_r,
        np.array([205, 160, 130], np.float32) * rng.uniform(0.6, 1.05),
    )
    ellipse(s.ir, cx, y0 + head_r, head_r * 0.9, head_r, skin_t)


def draw_vehicle(s: Scene, rng, cls, x0, y0, bw, bh, warm: bool, bg_t: float) -> None:
    paint = PAINT[rng.integers(len(PAINT))] * rng.uniform(0.85, 1.05)
    glass = np.array([45, 55, 70], np.float32)
    facing_right = rng.random() < 0.5
    ir = s.ir
    body_t = bg_t + (rng.uniform(25, 45) if warm else 0.0)
    wheel_r = 0.2 * bh if cls != "Bus" else 0.16 * bh
    if cls == "Car":
        body = (x0, y0 + 0.38 * bh, x0 + bw, y0 + bh - wheel_r)
        cabin = (x0 + 0.2 * bw, y0, x0 + 0.78 * bw, y0 + 0.42 * bh)
        rect(s.refl, *cabin, paint)
        rect(s.refl, cabin[0] + 2, cabin[1] + 2, cabin[2] - 2, cabin[3], glass)
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
        rect(s.refl, *cargo, np.array([210, 205, 195], np.float32) * rng.uniform(0.7, 1.05))
    rect(s.refl, *body, paint)
    if cls == "Bus":  # row of windows
        rect(s.refl, x0 + 0.05 * bw, y0 + 0.15 * bh, x0 + 0.95 * bw, y0 + 0.45 * bh, glass)
    elif cls == "Truck":
        rect(s.refl, body[0] + 2, body[1] + 2, body[2] - 2, body[1] + 0.35 * (body[3] - body[1]), glass)
    for p in parts:  # IR: warm body (running) or nearly background (parked, engine off)
        rect(ir, *p, body_t if warm else rng.uniform(-4, 3), add=not warm)
    front = body[2] - 0.3 * (body[2] - body[0]) if facing_right else body[0]
    if warm:  # hot engine compartment and exhaust-side glow
        rect(ir, front, body[1] + 1, front + 0.3 * (body[2] - body[0]), body[3], rng.uniform(150, 185))
    for wx in wheels:
        ellipse(s.refl, wx, y0 + bh - wheel_r, wheel_r, wheel_r, np.array([25, 25, 28], np.float32))
        if warm:
            ellipse(ir, wx, y0 + bh - wheel_r, wheel_r, wheel_r, rng.uniform(165, 200))
        else:
            ellipse(ir, wx, y0 + bh - wheel_r, wheel_r, wheel_r, rng.uniform(-4, 2), add=True)
    if warm and s.light < 0.5:  # head lights at the front, tail lights at the back
        hy = body[1] + 0.55 * (body[3] - body[1])
        fx, rx = (body[2], x0) if facing_right else (body[0], x0 + bw)
        glow(s.emit, fx, hy, 2.0 * bh / 20, (255, 245, 210))
        glow(s.emit, rx, hy, 1.5 * bh / 20, (200, 20, 10))


def draw_motorcycle(s: Scene, rng, x0, y0, bw, bh, skin_t) -> None:
    wheel_r = 0.2 * bh
    paint = PAINT[rng.integers(len(PAINT))]
    for wx in (x0 + wheel_r, x0 + bw - wheel_r):
        ellipse(s.refl, wx, y0 + bh - wheel_r, wheel_r, wheel_r, np.array([25, 25, 28], np.float32))
        ellipse(s.ir, wx, y0 + bh - wheel_r, wheel_r, wheel_r, skin_t - rng.uniform(40, 60))
    rect(s.refl, x0 + 0.2 * bw, y0 + 0.55 * bh, x0 + 0.8 * bw, y0 + 0.78 * bh, paint)
    rect(s.ir, x0 + 0.3 * bw, y0 + 0.6 * bh, x0 + 0.6 * bw, y0 + 0.78 * bh, rng.uniform(165, 195))  # engine
    # rider: torso and head above the bike
    clothes = CLOTHES[rng.integers(len(CLOTHES))]
    ellipse(s.refl, x0 + 0.45 * bw, y0 + 0.38 * bh, 0.2 * bw, 0.2 * bh, clothes)
    ellipse(s.ir, x0 + 0.45 * bw, y0 + 0.38 * bh, 0.2 * bw, 0.2 * bh, skin_t - rng.uniform(5, 15))
    ellipse(
        s.refl, x0 + 0.5 * bw, y0 + 0.1 * bh, 0.1 * bh, 0.1 * bh, np.array([60, 60, 70], np.float32)
    )  # helmet
    ellipse(s.ir, x0 + 0.5 * bw, y0 + 0.1 * bh, 0.1 * bh, 0.1 * bh, skin_t - 10)


def draw_lamp(s: Scene, rng, x0, y0, bw, bh, ground_y) -> None:
    """Street lamp: the box is the lamp head; the pole runs down to the ground outside the box."""
    cx = x0 + bw / 2
    pole_w = max(2.0, 0.12 * bw)
    rect(s.refl, cx - pole_w / 2, y0 + bh, cx + pole_w / 2, ground_y, np.array([95, 100, 105], np.float32))
    rect(s.refl, x0, y0 + 0.15 * bh, x0 + bw, y0 + 0.7 * bh, np.array([120, 125, 130], np.float32))
    rect(
        s.refl, x0 + 0.15 * bw, y0 + 0.7 * bh, x0 + 0.85 * bw, y0 + bh, np.array([215, 215, 200], np.float32)
    )
    # not warm: the whole lamp is within a few gray levels of the background in IR
    rect(s.ir, cx - pole_w / 2, y0 + bh, cx + pole_w / 2, ground_y, rng.uniform(-3, 3), add=True)
    rect(s.ir, x0, y0, x0 + bw, y0 + bh, rng.uniform(-3, 4), add=True)
    if s.light < 0.6:  # lit lamp (the box keeps the bright core; the halo spills out)
        rect(
            s.emit,
            x0 + 0.15 * bw,
            y0 + 0.7 * bh,
            x0 + 0.85 * bw,
            y0 + bh,
            np.array([255, 240, 190], np.float32),
        )
        glow(s.emit, cx, y0 + 0.85 * bh, 0.45 * bw * (1 + s.fog), (170, 150, 100))
