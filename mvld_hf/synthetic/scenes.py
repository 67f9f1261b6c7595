"""Scene sampling and PIL rendering.

A scene has 1-3 objects with pairwise different shapes. Each object has a shape (circle, square, triangle,
star, heart), a colour (7), a size (small/big) and a position. Scenes with 2-3 objects are laid out either in a
row (``horizontal``: the caption says who is left of whom) or in a column (``vertical``: above/below); the
objects of a row are clearly separated along the row and roughly aligned across it, so the relation is never
ambiguous. Positions, exact radii, background and colour shades are jittered and do not enter the
description.

The canonical description (:meth:`Scene.description`) is ``{"layout", "objects": [{"shape", "colour",
"size"}, ...]}`` with objects in reading order; :meth:`Scene.key` is its compact string form (e.g.
``h:big-red-circle|small-blue-square``), the *composition* used for the train/test split and as a cluster
label. Everything is drawn from a ``numpy.random.Generator``, so a seed fixes the scenes.
"""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from .vocab import COLOURS, SHAPES, SIZES

IMAGE_SIZE = 64
SUPERSAMPLE = 4  # draw at 4x and downsample: anti-aliased edges

#: nominal RGB of every colour; each object gets a shade within +-COLOUR_JITTER per channel
COLOUR_RGB = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (235, 205, 25),
    "green": (35, 155, 55),
    "blue": (35, 75, 215),
    "purple": (135, 55, 175),
    "black": (30, 30, 30),
}
COLOUR_JITTER = 12
#: radius ranges in pixels (before the 0.9 shrink used for rows of three)
RADIUS = {"small": (5.0, 6.5), "big": (9.0, 11.0)}
GAP = 2.0  # minimal free space between two objects along a row/column
ALIGN_JITTER = 3.0  # max offset across the row/column
LAYOUTS = ("single", "horizontal", "vertical")
NUM_OBJECTS_P = (0.15, 0.45, 0.40)  # probabilities of 1, 2, 3 objects


@dataclass
class Obj:
    shape: str
    colour: str
    size: str
    x: float = 0.0
    y: float = 0.0
    r: float = 0.0
    rgb: tuple[int, int, int] = (0, 0, 0)

    def attrs(self) -> dict:
        return {"shape": self.shape, "colour": self.colour, "size": self.size}

    def key(self) -> str:
        return f"{self.size}-{self.colour}-{self.shape}"


@dataclass
class Scene:
    layout: str
    objects: list[Obj]  # in reading order: left->right (horizontal) or top->bottom (vertical)
    background: tuple[int, int, int] = (240, 240, 240)
    image_id: str = ""
    extra: dict = field(default_factory=dict)

    def description(self) -> dict:
        return {"layout": self.layout, "objects": [o.attrs() for o in self.objects]}

    def key(self) -> str:
        return composition_key(self.description())

    def render(self, size: int = IMAGE_SIZE) -> Image.Image:
        return render(self, size)

    def png_bytes(self, size: int = IMAGE_SIZE) -> bytes:
        buf = io.BytesIO()
        self.render(size).save(buf, format="PNG")
        return buf.getvalue()


def composition_key(desc: dict) -> str:
    """Compact string of a description: ``h:big-red-circle|small-blue-square`` (``s``/``h``/``v`` layouts)."""
    objs = "|".join(f"{o['size']}-{o['colour']}-{o['shape']}" for o in desc["objects"])
    return f"{desc['layout'][0]}:{objs}"


def parse_composition_key(key: str) -> dict:
    layout = {"s": "single", "h": "horizontal", "v": "vertical"}[key[0]]
    objects = []
    for part in key[2:].split("|"):
        size, colour, shape = part.split("-")
        objects.append({"shape": shape, "colour": colour, "size": size})
    return {"layout": layout, "objects": objects}


def is_test_composition(key: str, test_fraction: float = 0.2) -> bool:
    """Stable split of the composition space (independent of seed and of the number of scenes)."""
    h = int.from_bytes(hashlib.md5(key.encode("utf-8")).digest()[:8], "little")
    return (h % 10_000) < int(round(test_fraction * 10_000))


def sample_composition(rng: np.random.Generator) -> dict:
    n = int(rng.choice(3, p=NUM_OBJECTS_P)) + 1
    layout = "single" if n == 1 else LAYOUTS[1 + int(rng.integers(2))]
    shapes = rng.choice(len(SHAPES), size=n, replace=False)
    objects = [{"shape": SHAPES[int(s)], "colour": COLOURS[int(rng.integers(len(COLOURS)))],
                "size": SIZES[int(rng.integers(len(SIZES)))]} for s in shapes]
    return {"layout": layout, "objects": objects}


def place(desc: dict, rng: np.random.Generator, size: int = IMAGE_SIZE) -> Scene:
    """Positions, radii, shades and background for a description."""
    n = len(desc["objects"])
    shrink = 0.9 if n == 3 else 1.0
    objs = []
    for o in desc["objects"]:
        lo, hi = RADIUS[o["size"]]
        base = np.array(COLOUR_RGB[o["colour"]])
        rgb = np.clip(base + rng.integers(-COLOUR_JITTER, COLOUR_JITTER + 1, size=3), 0, 255)
        objs.append(Obj(o["shape"], o["colour"], o["size"], r=float(rng.uniform(lo, hi)) * shrink,
                        rgb=tuple(int(c) for c in rgb)))
    margin = 1.5
    if desc["layout"] == "single":
        o = objs[0]
        o.x, o.y = (float(rng.uniform(o.r + margin, size - o.r - margin)) for _ in range(2))
    else:
        radii = np.array([o.r for o in objs])
        slack = size - 2 * margin - 2 * radii.sum() - GAP * (n - 1)
        if slack < 0:  # cannot happen with the radius ranges above, kept as a guard
            radii *= (size - 2 * margin - GAP * (n - 1)) / (2 * radii.sum())
            slack = 0.0
            for o, r in zip(objs, radii):
                o.r = float(r)
        parts = rng.dirichlet(np.ones(n + 1)) * slack
        along, pos = [], margin + parts[0]
        for i, r in enumerate(radii):
            pos += r
            along.append(pos)
            pos += r + GAP + parts[i + 1]
        rmax = radii.max()
        centre = rng.uniform(rmax + margin + ALIGN_JITTER, size - rmax - margin - ALIGN_JITTER)
        for o, a in zip(objs, along):
            across = float(centre + rng.uniform(-ALIGN_JITTER, ALIGN_JITTER))
            o.x, o.y = (float(a), across) if desc["layout"] == "horizontal" else (across, float(a))
    grey = int(rng.integers(218, 250))
    background = tuple(int(np.clip(grey + rng.integers(-6, 7), 0, 255)) for _ in range(3))
    return Scene(desc["layout"], objs, background)


# --- rendering ---------------------------------------------------------------------------------------------------
def _polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]] | None:
    if shape == "square":
        h = 0.85 * r
        return [(cx - h, cy - h), (cx + h, cy - h), (cx + h, cy + h), (cx - h, cy + h)]
    if shape == "triangle":  # equilateral, pointing up, centroid at the centre
        R = 1.12 * r
        pts = [(cx + R * math.cos(math.radians(a)), cy + R * math.sin(math.radians(a))) for a in (-90, 30, 150)]
        shift = R / 4  # centre the bounding box vertically (apex at -R, base at +R/2)
        return [(x, y + shift) for x, y in pts]
    if shape == "star":  # five points
        pts = []
        for k in range(10):
            rad = r * 1.05 if k % 2 == 0 else r * 0.45
            a = math.radians(-90 + 36 * k)
            pts.append((cx + rad * math.cos(a), cy + rad * math.sin(a) + 0.1 * r))
        return pts
    if shape == "heart":
        s = r / 16.0
        pts = []
        for k in range(48):
            t = 2 * math.pi * k / 48
            x = 16 * math.sin(t) ** 3
            y = 13 * math.cos(t) - 5 * math.cos(2 * t) - 2 * math.cos(3 * t) - math.cos(4 * t)
            pts.append((cx + s * x, cy - s * (y + 2.5)))
        return pts
    return None


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw a scene as an RGB image of ``size`` x ``size`` pixels (coordinates are given for 64 px)."""
    k = SUPERSAMPLE * size / IMAGE_SIZE
    big = Image.new("RGB", (SUPERSAMPLE * size,) * 2, scene.background)
    draw = ImageDraw.Draw(big)
    for o in scene.objects:
        cx, cy, r = o.x * k, o.y * k, o.r * k
        if o.shape == "circle":
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=o.rgb)
        else:
            draw.polygon(_polygon(o.shape, cx, cy, r), fill=o.rgb)
    return big.resize((size, size), Image.Resampling.BOX)


def sample_scenes(rng: np.random.Generator, num: int, split: str, test_fraction: float = 0.2,
                  max_tries: int | None = None) -> list[Scene]:
    """``num`` scenes with pairwise distinct compositions, all from the ``split`` side ("train"/"test") of the
    composition split. Prefix-stable: the first k scenes do not depend on ``num``."""
    want_test = split == "test"
    seen: set[str] = set()
    scenes: list[Scene] = []
    max_tries = max_tries or 200 * num + 1000
    tries = 0
    while len(scenes) < num:
        tries += 1
        if tries > max_tries:
            raise RuntimeError(f"could only sample {len(scenes)} distinct {split} compositions out of {num}")
        desc = sample_composition(rng)
        key = composition_key(desc)
        if key in seen or is_test_composition(key, test_fraction) != want_test:
            continue
        seen.add(key)
        scenes.append(place(desc, rng))
    return scenes
