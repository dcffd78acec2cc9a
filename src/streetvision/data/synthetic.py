"""Procedural dashcam-like street scenes, with and without roadwork, for the embedded default dataset.

Each image is drawn with Pillow from a generator seeded by ``(seed, domain, index)``, so image ``i`` is the same
whatever ``n`` is. A scene has sky, buildings, a road in perspective with lane markings and kerbs, trees, cars
and pedestrians, all placed by depth so far objects are small. Roadwork scenes add cones, striped barriers, drums,
triangular roadwork signs, an excavator or workers in hi-vis. Negatives carry hard cases (orange cars,
orange-clad pedestrians, red/white awnings and boom gates, ordinary traffic signs, sunset skies) so that colour
alone cannot solve the task. The ``target`` domain is the same world seen by another camera at night or in fog:
darker or hazier, blue-tinted, vignetted, barrel-distorted and noisy (phase4's domain shift).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from streetvision.io import atomic_path

DOMAINS = ("source", "target")
CLASS_DIRS = ("no_roadwork", "roadwork")  # label 0, label 1
ORANGE = (240, 105, 20)


@dataclass(frozen=True)
class Scene:
    """One generated image and what is in it."""

    image: Image.Image
    label: int
    objects: tuple[str, ...]


def _jitter(rng: np.random.Generator, rgb: tuple[int, int, int], amount: int = 18) -> tuple[int, int, int]:
    d = rng.integers(-amount, amount + 1, size=3)
    return (min(255, max(0, rgb[0] + int(d[0]))), min(255, max(0, rgb[1] + int(d[1]))),
            min(255, max(0, rgb[2] + int(d[2]))))


class _Canvas:
    """Perspective helpers: depth ``s`` in (0, 1] maps to a ground row; ``u`` is the lateral road coordinate."""

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.rng = rng
        self.horizon = int(size * rng.uniform(0.36, 0.5))
        self.vx = size * rng.uniform(0.4, 0.6)
        self.road_half = rng.uniform(0.45, 0.65)  # road half-width at the bottom, in image widths
        self.img = Image.new("RGB", (size, size))
        self.draw = ImageDraw.Draw(self.img)

    def ground(self, s: float, u: float) -> tuple[float, float]:
        y = self.horizon + (self.size - self.horizon) * s
        cx = self.vx + (self.size / 2 - self.vx) * s
        return cx + u * self.road_half * self.size * s, y

    def ppm(self, s: float) -> float:
        """Pixels per metre at depth ``s``."""
        return s * self.size * 0.2


# ---------------------------------------------------------------------------------------------- background
def _sky(c: _Canvas) -> str:
    kind = c.rng.choice(["clear", "overcast", "sunset"], p=[0.55, 0.3, 0.15])
    top, bottom = {
        "clear": ((70, 130, 210), (180, 210, 240)),
        "overcast": ((150, 155, 165), (200, 200, 205)),
        "sunset": ((90, 90, 160), (250, 150, 70)),
    }[kind]
    t = np.linspace(0, 1, c.horizon + 1)[:, None]
    grad = (np.array(top)[None] * (1 - t) + np.array(bottom)[None] * t).astype(np.uint8)
    c.img.paste(Image.fromarray(np.repeat(grad[:, None, :], c.size, axis=1)), (0, 0))
    return str(kind)


def _buildings(c: _Canvas, awning: bool) -> None:
    palette = [(200, 190, 170), (150, 150, 155), (160, 90, 70), (225, 215, 190), (120, 110, 100), (215, 140, 80)]
    for side in (-1, 1):
        x = c.vx
        while (side < 0 and x > -20) or (side > 0 and x < c.size + 20):
            w = c.rng.uniform(0.08, 0.22) * c.size
            h = c.rng.uniform(0.08, 0.3) * c.size
            x0, x1 = (x - w, x) if side < 0 else (x, x + w)
            base = c.horizon + c.rng.uniform(0, 0.04) * c.size
            col = _jitter(c.rng, palette[c.rng.integers(len(palette))])
            c.draw.rectangle([x0, base - h, x1, base], fill=col)
            win = _jitter(c.rng, (60, 70, 90), 20)
            for wy in np.arange(base - h + 4, base - 6, 8):
                for wx in np.arange(x0 + 3, x1 - 5, 7):
                    c.draw.rectangle([wx, wy, wx + 3, wy + 4], fill=win)
            if awning and c.rng.random() < 0.5:  # red/white striped shop awning: a hard negative
                ay, n = base - h * 0.25, int(max(2, w // 4))
                for k in range(n):
                    col_k = (210, 30, 30) if k % 2 == 0 else (245, 245, 245)
                    c.draw.rectangle([x0 + k * w / n, ay - 4, x0 + (k + 1) * w / n, ay], fill=col_k)
            x = x0 if side < 0 else x1


def _road(c: _Canvas) -> None:
    s = c.size
    far_l, near_l = c.ground(0.0, -1.0), c.ground(1.0, -1.0)
    far_r, near_r = c.ground(0.0, 1.0), c.ground(1.0, 1.0)
    side = _jitter(c.rng, (105, 140, 80) if c.rng.random() < 0.5 else (175, 175, 170))
    c.draw.rectangle([0, c.horizon, s, s], fill=side)
    walk = _jitter(c.rng, (180, 178, 172))
    for u in (-1.0, 1.0):
        pts = [c.ground(0.0, u), c.ground(0.0, u * 1.5), c.ground(1.0, u * 1.5), c.ground(1.0, u)]
        c.draw.polygon(pts, fill=walk)
    c.draw.polygon([far_l, far_r, near_r, near_l], fill=_jitter(c.rng, (85, 85, 90), 12))
    kerb = (225, 225, 220)
    c.draw.line([far_l, near_l], fill=kerb, width=2)
    c.draw.line([far_r, near_r], fill=kerb, width=2)
    dash = (240, 240, 235) if c.rng.random() < 0.8 else (235, 200, 60)
    for s0 in np.arange(0.05, 1.0, 0.12):  # dashed centre line in perspective
        a, b = c.ground(s0, 0.0), c.ground(min(1.0, s0 + 0.06), 0.0)
        c.draw.line([a, b], fill=dash, width=max(1, int(3 * s0)))


def _tree(c: _Canvas, s: float, u: float) -> None:
    x, y = c.ground(s, u)
    m = c.ppm(s)
    c.draw.rectangle([x - 0.15 * m, y - 3 * m, x + 0.15 * m, y], fill=(90, 60, 40))
    r = c.rng.uniform(1.0, 1.8) * m
    c.draw.ellipse([x - r, y - 3 * m - 1.6 * r, x + r, y - 3 * m + 0.4 * r], fill=_jitter(c.rng, (50, 120, 50), 25))


# ---------------------------------------------------------------------------------------------- agents
def _car(c: _Canvas, s: float, u: float, colour: tuple[int, int, int] | None = None) -> None:
    x, y = c.ground(s, u)
    m = c.ppm(s)
    palette = [(200, 30, 30), (240, 240, 240), (30, 30, 35), (160, 165, 170), (40, 70, 160), (60, 120, 70)]
    col = colour or _jitter(c.rng, palette[c.rng.integers(len(palette))])
    w = 1.8 * m
    c.draw.rectangle([x - w / 2, y - 1.0 * m, x + w / 2, y - 0.25 * m], fill=col)
    c.draw.polygon([(x - 0.4 * w, y - 1.0 * m), (x - 0.3 * w, y - 1.5 * m), (x + 0.3 * w, y - 1.5 * m),
                    (x + 0.4 * w, y - 1.0 * m)], fill=col)
    c.draw.polygon([(x - 0.33 * w, y - 1.05 * m), (x - 0.26 * w, y - 1.42 * m), (x + 0.26 * w, y - 1.42 * m),
                    (x + 0.33 * w, y - 1.05 * m)], fill=(40, 50, 65))
    for sx in (-1, 1):
        c.draw.rectangle([x + sx * 0.42 * w - 0.08 * w, y - 0.8 * m, x + sx * 0.42 * w + 0.08 * w, y - 0.65 * m],
                         fill=(220, 20, 20))
        c.draw.rectangle([x + sx * 0.35 * w - 0.1 * w, y - 0.3 * m, x + sx * 0.35 * w + 0.1 * w, y], fill=(15, 15, 15))


def _person(c: _Canvas, s: float, u: float, clothes: tuple[int, int, int] | None = None,
            hivis: bool = False) -> None:
    x, y = c.ground(s, u)
    m = c.ppm(s)
    palette = [(40, 40, 60), (120, 30, 30), (200, 200, 200), (60, 90, 140), (90, 70, 50), (30, 30, 30)]
    body = clothes or _jitter(c.rng, palette[c.rng.integers(len(palette))])
    legs = _jitter(c.rng, (40, 45, 70))
    c.draw.rectangle([x - 0.18 * m, y - 0.85 * m, x - 0.03 * m, y], fill=legs)
    c.draw.rectangle([x + 0.03 * m, y - 0.85 * m, x + 0.18 * m, y], fill=legs)
    c.draw.rectangle([x - 0.25 * m, y - 1.5 * m, x + 0.25 * m, y - 0.85 * m], fill=body)
    c.draw.ellipse([x - 0.12 * m, y - 1.75 * m, x + 0.12 * m, y - 1.5 * m], fill=(225, 185, 150))
    if hivis:  # reflective bands and a hard hat
        for fy in (1.3, 1.05):
            c.draw.rectangle([x - 0.25 * m, y - fy * m, x + 0.25 * m, y - fy * m + 0.07 * m], fill=(215, 220, 225))
        hat = [(250, 250, 250), (250, 210, 0), (240, 120, 0)][c.rng.integers(3)]
        c.draw.chord([x - 0.15 * m, y - 1.85 * m, x + 0.15 * m, y - 1.6 * m], 180, 360, fill=hat)


# ---------------------------------------------------------------------------------------------- roadwork
def _cone(c: _Canvas, s: float, u: float) -> None:
    x, y = c.ground(s, u)
    m = c.ppm(s)
    col = _jitter(c.rng, ORANGE, 15)
    c.draw.rectangle([x - 0.25 * m, y - 0.06 * m, x + 0.25 * m, y], fill=(30, 30, 30))
    c.draw.polygon([(x - 0.2 * m, y - 0.06 * m), (x, y - 0.75 * m), (x + 0.2 * m, y - 0.06 * m)], fill=col)
    c.draw.polygon([(x - 0.13 * m, y - 0.3 * m), (x - 0.09 * m, y - 0.45 * m), (x + 0.09 * m, y - 0.45 * m),
                    (x + 0.13 * m, y - 0.3 * m)], fill=(245, 245, 245))


def _striped_bar(c: _Canvas, x0: float, x1: float, y0: float, y1: float, col: tuple[int, int, int],
                 diagonal: bool) -> None:
    c.draw.rectangle([x0, y0, x1, y1], fill=(245, 245, 245))
    h = y1 - y0
    step = max(2.0, h * 1.2)
    slant = h if diagonal else 0.0
    for k, sx in enumerate(np.arange(x0 - slant, x1, step)):
        if k % 2:
            continue
        a, b = max(x0, sx), min(x1, sx + step * 0.5)
        if b <= a:
            continue
        c.draw.polygon([(a, y1), (b, y1), (min(x1, b + slant), y0), (min(x1, a + slant), y0)], fill=col)


def _barrier(c: _Canvas, s: float, u: float) -> None:
    x, y = c.ground(s, u)
    m = c.ppm(s)
    half = c.rng.uniform(0.7, 1.3) * m
    leg = (90, 90, 90)
    for sx in (-0.85, 0.85):
        c.draw.rectangle([x + sx * half - 0.04 * m, y - 1.0 * m, x + sx * half + 0.04 * m, y], fill=leg)
    col = (210, 25, 25) if c.rng.random() < 0.6 else _jitter(c.rng, ORANGE, 10)
    _striped_bar(c, x - half, x + half, y - 1.05 * m, y - 0.7 * m, col, diagonal=True)
    if c.rng.random() < 0.4:
        _striped_bar(c, x - half, x + half, y - 0.55 * m, y - 0.35 * m, col, diagonal=True)


def _drum(c: _Canvas, s: float, u: float) -> None:
    x, y = c.ground(s, u)
    m = c.ppm(s)
    col = _jitter(c.rng, ORANGE, 15)
    c.draw.rectangle([x - 0.3 * m, y - 0.95 * m, x + 0.3 * m, y], fill=col)
    c.draw.ellipse([x - 0.3 * m, y - 1.05 * m, x + 0.3 * m, y - 0.85 * m], fill=col)
    for fy in (0.7, 0.4):
        c.draw.rectangle([x - 0.3 * m, y - fy * m, x + 0.3 * m, y - fy * m + 0.12 * m], fill=(245, 245, 245))


def _sign(c: _Canvas, s: float, u: float, kind: str) -> None:
    x, y = c.ground(s, u)
    m = c.ppm(s)
    c.draw.rectangle([x - 0.04 * m, y - 2.2 * m, x + 0.04 * m, y], fill=(130, 130, 130))
    cy, r = y - 2.2 * m, 0.45 * m
    if kind == "roadwork":  # red-bordered triangle with a worker glyph
        c.draw.polygon([(x - r, cy + 0.4 * r), (x, cy - 1.3 * r), (x + r, cy + 0.4 * r)], fill=(200, 20, 20))
        c.draw.polygon([(x - 0.7 * r, cy + 0.25 * r), (x, cy - 0.95 * r), (x + 0.7 * r, cy + 0.25 * r)],
                       fill=(250, 250, 250) if c.rng.random() < 0.6 else (250, 200, 0))
        c.draw.line([(x - 0.2 * r, cy + 0.15 * r), (x + 0.05 * r, cy - 0.45 * r)], fill=(0, 0, 0), width=2)
        c.draw.line([(x + 0.05 * r, cy - 0.2 * r), (x + 0.35 * r, cy + 0.15 * r)], fill=(0, 0, 0), width=1)
    elif kind == "speed":
        c.draw.ellipse([x - r, cy - r, x + r, cy + r], fill=(200, 20, 20))
        c.draw.ellipse([x - 0.75 * r, cy - 0.75 * r, x + 0.75 * r, cy + 0.75 * r], fill=(250, 250, 250))
        c.draw.rectangle([x - 0.35 * r, cy - 0.3 * r, x + 0.35 * r, cy + 0.3 * r], outline=(0, 0, 0))
    elif kind == "parking":
        c.draw.rectangle([x - r, cy - r, x + r, cy + r], fill=(20, 60, 170))
        c.draw.line([(x - 0.3 * r, cy + 0.6 * r), (x - 0.3 * r, cy - 0.6 * r)], fill=(255, 255, 255), width=2)
    else:  # stop
        pts = [(x + r * np.cos(a), cy + r * np.sin(a)) for a in np.linspace(0, 2 * np.pi, 9)[:-1] + np.pi / 8]
        c.draw.polygon(pts, fill=(200, 20, 20))


def _excavator(c: _Canvas, s: float, u: float) -> None:
    x, y = c.ground(s, u)
    m = c.ppm(s)
    yellow = _jitter(c.rng, (240, 180, 20), 15)
    c.draw.rounded_rectangle([x - 1.6 * m, y - 0.7 * m, x + 1.6 * m, y], radius=0.3 * m, fill=(35, 35, 35))
    c.draw.rectangle([x - 1.3 * m, y - 1.8 * m, x + 1.2 * m, y - 0.7 * m], fill=yellow)
    c.draw.rectangle([x - 1.2 * m, y - 2.8 * m, x - 0.1 * m, y - 1.8 * m], fill=yellow)
    c.draw.rectangle([x - 1.05 * m, y - 2.6 * m, x - 0.3 * m, y - 2.0 * m], fill=(60, 80, 100))
    d = 1 if c.rng.random() < 0.5 else -1
    elbow = (x + d * 1.6 * m, y - 3.4 * m)
    tip = (x + d * 2.9 * m, y - 1.0 * m)
    c.draw.line([(x + d * 0.6 * m, y - 1.6 * m), elbow], fill=yellow, width=max(1, int(0.35 * m)))
    c.draw.line([elbow, tip], fill=yellow, width=max(1, int(0.25 * m)))
    c.draw.polygon([tip, (tip[0] + d * 0.5 * m, tip[1] + 0.3 * m), (tip[0] - d * 0.1 * m, tip[1] + 0.6 * m)],
                   fill=(60, 60, 60))


def _boom_gate(c: _Canvas, s: float, u: float) -> None:
    """Red/white striped parking boom on a post: striped, but not roadwork."""
    x, y = c.ground(s, u)
    m = c.ppm(s)
    c.draw.rectangle([x - 0.15 * m, y - 1.1 * m, x + 0.15 * m, y], fill=(200, 200, 200))
    d = -1 if u > 0 else 1
    x1 = x + d * c.rng.uniform(2.0, 3.0) * m
    _striped_bar(c, min(x, x1), max(x, x1), y - 1.05 * m, y - 0.9 * m, (210, 25, 25), diagonal=False)


ROADWORK = {"cone_row": 0.3, "barrier": 0.2, "drum": 0.14, "sign": 0.14, "excavator": 0.1, "worker": 0.12}


def _place_roadwork(c: _Canvas, kind: str) -> list[tuple[float, callable]]:  # type: ignore[valid-type]
    rng = c.rng
    s = float(rng.uniform(0.5, 0.95))  # roadwork in the near and middle field, as a dashcam approaching it
    u = float(rng.choice([-1, 1]) * rng.uniform(0.3, 1.2))
    if kind == "cone_row":
        n, du = int(rng.integers(2, 6)), rng.uniform(0.1, 0.25)
        return [(s + k * 0.06, lambda s=s + k * 0.06, uu=u + k * du * np.sign(-u): _cone(c, min(s, 1.0), uu))
                for k in range(n)]
    draw = {"barrier": _barrier, "drum": _drum, "excavator": _excavator,
            "sign": lambda cc, ss, uu: _sign(cc, ss, uu, "roadwork"),
            "worker": lambda cc, ss, uu: _person(cc, ss, uu, _jitter(rng, (210, 240, 20) if rng.random() < 0.5
                                                                     else ORANGE, 10), hivis=True)}[kind]
    if kind == "sign":
        u = float(np.sign(u) * rng.uniform(1.1, 1.4))
    return [(s, lambda: draw(c, s, u))]


def _place_distractor(c: _Canvas, kind: str) -> list[tuple[float, callable]]:  # type: ignore[valid-type]
    rng = c.rng
    s = float(rng.uniform(0.3, 0.95))
    if kind == "orange_car":
        u = float(rng.uniform(-0.7, 0.7))
        return [(s, lambda: _car(c, s, u, _jitter(rng, ORANGE, 20)))]
    if kind == "orange_person":
        u = float(rng.choice([-1, 1]) * rng.uniform(1.05, 1.45))
        return [(s, lambda: _person(c, s, u, _jitter(rng, ORANGE, 20)))]
    if kind == "boom_gate":
        u = float(rng.choice([-1, 1]) * rng.uniform(1.05, 1.4))
        return [(s, lambda: _boom_gate(c, s, u))]
    sign_kind = str(rng.choice(["speed", "parking", "stop"]))
    u = float(rng.choice([-1, 1]) * rng.uniform(1.1, 1.4))
    return [(s, lambda: _sign(c, s, u, sign_kind))]


DISTRACTORS = ("orange_car", "orange_person", "boom_gate", "traffic_sign")


def render_scene(index: int, seed: int = 0, domain: str = "source", size: int = 224,
                 label: int | None = None) -> Scene:
    """Draw scene ``index`` of the stream ``(seed, domain)``; the label alternates with the index by default."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown domain {domain!r}; choose one of {DOMAINS}")
    rng = np.random.default_rng([seed, DOMAINS.index(domain), index])
    label = index % 2 if label is None else label
    c = _Canvas(size, rng)
    sky = _sky(c)
    _buildings(c, awning=rng.random() < 0.5)
    _road(c)
    items: list[tuple[float, callable]] = []  # type: ignore[valid-type]
    names: list[str] = [f"sky:{sky}"]
    for _ in range(rng.integers(0, 5)):
        s, u = float(rng.uniform(0.05, 0.6)), float(rng.choice([-1, 1]) * rng.uniform(1.6, 2.2))
        items.append((s, lambda s=s, u=u: _tree(c, s, u)))
    for _ in range(rng.integers(0, 4)):
        s, u = float(rng.uniform(0.15, 1.0)), float(rng.uniform(-0.7, 0.7))
        items.append((s, lambda s=s, u=u: _car(c, s, u)))
    for _ in range(rng.integers(0, 4)):
        s, u = float(rng.uniform(0.2, 1.0)), float(rng.choice([-1, 1]) * rng.uniform(1.05, 1.45))
        items.append((s, lambda s=s, u=u: _person(c, s, u)))
    if rng.random() < (0.7 if label == 0 else 0.45):  # hard negatives in both classes, more often in negatives
        for kind in rng.choice(DISTRACTORS, size=int(rng.integers(1, 3))):
            items += _place_distractor(c, str(kind))
            names.append(str(kind))
    if label == 1:
        kinds, probs = list(ROADWORK), np.array(list(ROADWORK.values()))
        for kind in rng.choice(kinds, size=int(rng.integers(2, 5)), p=probs / probs.sum()):
            items += _place_roadwork(c, str(kind))
            names.append(str(kind))
    for _, draw in sorted(items, key=lambda item: item[0]):
        draw()
    img = c.img if domain == "source" else _target_camera(c.img, rng)
    return Scene(image=img, label=label, objects=tuple(names))


# ---------------------------------------------------------------------------------------------- target camera
_CAMERA_CACHE: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}


def _camera(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wide-angle camera model, cached per size: barrel-distortion sampling index (flat), vignette gain and a
    bank of sensor-noise fields (sampling from a fixed bank keeps generation fast)."""
    if size not in _CAMERA_CACHE:
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        nx, ny = (xx - size / 2) / (size / 2), (yy - size / 2) / (size / 2)
        r2 = nx**2 + ny**2
        k = 1.0 / (1.0 + 0.22 * r2)  # sample closer to the centre at the edges: objects bulge outward
        sx = np.clip((nx * k * 0.97) * size / 2 + size / 2, 0, size - 1).astype(np.int64)
        sy = np.clip((ny * k * 0.97) * size / 2 + size / 2, 0, size - 1).astype(np.int64)
        vignette = (1.0 - 0.55 * np.clip(r2 / 2.0, 0, 1) ** 0.8)[..., None].astype(np.float32)
        noise = 6.0 * np.random.default_rng(1234).standard_normal((4, size, size, 3), dtype=np.float32)
        _CAMERA_CACHE[size] = ((sy * size + sx).ravel(), vignette, noise)
    return _CAMERA_CACHE[size]


def _target_camera(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    size = img.size[0]
    flat_index, vignette, noise = _camera(size)
    arr = np.asarray(img).reshape(-1, 3).take(flat_index, axis=0).reshape(size, size, 3).astype(np.float32)
    if rng.random() < 0.5:  # night: dark and blue
        gain = vignette * (rng.uniform(0.3, 0.45) * np.array([0.8, 0.9, 1.25], dtype=np.float32))
        offset = 0.0
    else:  # fog: low contrast toward a grey-blue haze
        haze = rng.uniform(0.45, 0.65)
        gain = vignette * np.float32(1 - haze)
        offset = vignette * (haze * np.array([190, 195, 205], dtype=np.float32))
    arr = arr * gain + offset
    arr += np.roll(noise[rng.integers(len(noise))], int(rng.integers(size)), axis=1)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def write_dataset(out_dir: Path, n: int, domain: str = "source", seed: int = 0, size: int = 224,
                  labeled: bool = True) -> list[tuple[Path, int]]:
    """Write ``n`` scenes as PNGs in a folder dataset (``<class>/`` sub-folders when labelled) plus manifest.csv.

    Existing identical files are kept, so regenerating is cheap and idempotent.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: list[tuple[Path, int]] = []
    for i in range(n):
        scene = render_scene(i, seed=seed, domain=domain, size=size)
        rel = Path(CLASS_DIRS[scene.label]) / f"{domain}_{seed}_{i:06d}.png" if labeled else \
            Path(f"{domain}_{seed}_{i:06d}.png")
        path = out_dir / rel
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, fsync=False) as tmp:
                scene.image.save(tmp, format="PNG", compress_level=1)
        rows.append((rel, scene.label))
    with atomic_path(out_dir / "manifest.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label"] if labeled else ["path"])
        for rel, label in rows:
            writer.writerow([rel.as_posix(), CLASS_DIRS[label]] if labeled else [rel.as_posix()])
    return [(out_dir / rel, label) for rel, label in rows]
