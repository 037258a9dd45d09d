"""Procedural, georeferenced aerial scenes with oriented ground truth.

Why: the project needs rasters it can test and benchmark on that nobody had to download:
a real GeoTIFF (projected CRS, 512 px tiles, DEFLATE, internal overviews) showing fields,
roads, a river, an airport apron and the DOTA objects RSCoVLM detects, plus the exact
oriented boxes of those objects as a vector file in the raster's CRS.

How: the scene is first laid out as a few hundred geometric descriptions (roads, rivers,
an airport, objects placed without overlap), then rendered chunk by chunk. Every pixel
is a pure function of its global coordinates (hashed lattice noise, signed-distance
shapes), so chunks join seamlessly, the result is byte-for-byte reproducible for a seed,
and memory stays bounded whatever the size (``size=30000`` renders in a few minutes).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rscovlm.errors import UserError

__all__ = ["SCENE_CLASSES", "DENSITIES", "SceneSummary", "make_scene"]

SCENE_CLASSES = ("plane", "ship", "storage tank", "small vehicle", "large vehicle")
DENSITIES = ("normal", "dense")  # "dense" adds full parking lots and crowded marinas

CHUNK = 1024  # render unit (pixels); a multiple of the 512 px GeoTIFF block
BLOCK = 512
_MASK32 = np.uint64(0xFFFFFFFF)


@dataclass
class SceneSummary:
    raster_path: Path
    truth_path: Path
    size: int
    gsd: float
    crs: str
    counts: dict[str, int]
    bounds: tuple[float, float, float, float]
    overviews: list[int] = field(default_factory=list)
    density: str = "normal"

    @property
    def objects(self) -> int:
        return sum(self.counts.values())


# ----------------------------------------------------------------------------- noise
def _hash01(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """Deterministic pseudo-random float32 in [0, 1) per integer lattice point."""
    h = (np.asarray(ix).astype(np.int64).astype(np.uint64) * np.uint64(0x27D4EB2D)) & _MASK32
    h = h ^ ((np.asarray(iy).astype(np.int64).astype(np.uint64) * np.uint64(0x165667B1)) & _MASK32)
    h ^= np.uint64((salt * 0x9E3779B9) & 0xFFFFFFFF)
    h ^= h >> np.uint64(15)
    h = (h * np.uint64(0x2C1B3C6D)) & _MASK32
    h ^= h >> np.uint64(12)
    h = (h * np.uint64(0x297A2D39)) & _MASK32
    h ^= h >> np.uint64(15)
    return (h.astype(np.float64) / 4294967296.0).astype(np.float32)


def _noise_grid(xs: np.ndarray, ys: np.ndarray, scale: float, salt: int) -> np.ndarray:
    """Smooth value noise in [0, 1) on the grid xs (W,) x ys (H,), lattice spacing ``scale``.

    Separable interpolation with element-wise numpy only (no BLAS), so the values do not
    depend on the chunk's shape: neighbouring chunks join exactly.
    """
    gx, gy = xs / scale, ys / scale
    ix0, iy0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    tx, ty = (gx - ix0).astype(np.float32), (gy - iy0).astype(np.float32)
    tx, ty = tx * tx * (3 - 2 * tx), ty * ty * (3 - 2 * ty)
    lx = np.arange(ix0.min(), ix0.max() + 2)
    ly = np.arange(iy0.min(), iy0.max() + 2)
    lattice = _hash01(lx[None, :], ly[:, None], salt)  # (ny, nx)
    cx = ix0 - lx[0]
    rows = lattice[:, cx] * (1 - tx) + lattice[:, cx + 1] * tx  # (ny, W)
    cy = iy0 - ly[0]
    return rows[cy] * (1 - ty)[:, None] + rows[cy + 1] * ty[:, None]


def _fbm(xs: np.ndarray, ys: np.ndarray, scale: float, octaves: int, salt: int) -> np.ndarray:
    """Fractal sum of value-noise octaves, normalised to about [0, 1]."""
    total = np.zeros((len(ys), len(xs)), dtype=np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        total += np.float32(amplitude) * _noise_grid(xs, ys, scale / 2**octave, salt + 101 * octave)
        norm += amplitude
        amplitude *= 0.5
    return total / np.float32(norm)


# ----------------------------------------------------------------------------- shapes (SDF)
def _coverage(d: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage from a signed distance in pixels (negative inside)."""
    return np.clip(0.5 - d, 0.0, 1.0)


def _paved_pixels(rects, xf: np.ndarray, yf: np.ndarray, mid: tuple[float, float], half_diag: float,
                  water: np.ndarray):
    """For each paved rectangle touching the chunk: its pixels, local (u, v) and coverage.

    Paving is laid over water, so ``water`` loses what each rectangle covers.
    """
    for rect in rects:
        if math.hypot(mid[0] - rect.cx, mid[1] - rect.cy) > half_diag + rect.radius:
            continue
        u, v = rect.local(xf, yf)
        sel = np.flatnonzero(_box(u, v, rect.hu, rect.hv) < 1)
        if not sel.size:
            continue
        u, v = u[sel], v[sel]
        cover = _coverage(_box(u, v, rect.hu, rect.hv)).astype(np.float32)
        water[sel] *= 1 - cover
        yield rect, sel, u, v, cover


def _box(u: np.ndarray, v: np.ndarray, hu: float, hv: float, r: float = 0.0) -> np.ndarray:
    qu, qv = np.abs(u) - (hu - r), np.abs(v) - (hv - r)
    outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
    return outside + np.minimum(np.maximum(qu, qv), 0) - r


def _capsule_u(u: np.ndarray, v: np.ndarray, a: float, b: float, r: float) -> np.ndarray:
    return np.hypot(u - np.clip(u, a, b), v) - r


def _convex(u: np.ndarray, v: np.ndarray, pts: list[tuple[float, float]]) -> np.ndarray:
    """Signed distance (exact inside, close outside) to a convex polygon."""
    cu = sum(p[0] for p in pts) / len(pts)
    cv = sum(p[1] for p in pts) / len(pts)
    d = None
    for (u1, v1), (u2, v2) in zip(pts, pts[1:] + pts[:1]):
        nu, nv = v2 - v1, -(u2 - u1)
        length = math.hypot(nu, nv) or 1.0
        nu, nv = nu / length, nv / length
        if (cu - u1) * nu + (cv - v1) * nv > 0:  # make the normal point outward
            nu, nv = -nu, -nv
        e = (u - u1) * nu + (v - v1) * nv
        d = e if d is None else np.maximum(d, e)
    return d


def _paint(canvas: np.ndarray, alpha: np.ndarray, colour) -> None:
    canvas += (np.asarray(colour, dtype=np.float32) - canvas) * alpha[..., None]


def _shade(canvas: np.ndarray, alpha: np.ndarray, strength: float) -> None:
    canvas *= (1.0 - np.float32(strength) * alpha)[..., None]


# ----------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class _Object:
    cls: str
    cx: float
    cy: float
    length: float  # px, along the heading
    width: float  # px, across
    angle: float  # radians, heading in image coordinates (x right, y down)
    colour: tuple[float, float, float]
    height: float  # px of shadow length
    variant: int = 0
    accent: tuple[float, float, float] = (200.0, 200.0, 200.0)

    def quad(self) -> np.ndarray:
        """Oriented bounding quad (8,) in image pixels."""
        c, s = math.cos(self.angle), math.sin(self.angle)
        hl, hw = self.length / 2, self.width / 2
        corners = [(hl, -hw), (hl, hw), (-hl, hw), (-hl, -hw)]
        out = []
        for u, v in corners:
            out += [self.cx + u * c - v * s, self.cy + u * s + v * c]
        return np.array(out)

    @property
    def radius(self) -> float:
        return math.hypot(self.length, self.width) / 2

    @property
    def reach(self) -> float:
        """How far from its centre the object, its shadow and a ship's wake may paint."""
        reach = self.radius + self.height + 2
        if self.cls == "ship":
            reach += 2.6 * self.length  # the wake
        return reach


@dataclass(frozen=True)
class _Road:
    px: float
    py: float
    dx: float  # unit direction
    dy: float
    half_width: float


@dataclass(frozen=True)
class _River:
    theta: float
    offset: float
    a1: float
    l1: float
    p1: float
    a2: float
    l2: float
    p2: float
    half_width: float

    def sample(self, rng: np.random.Generator, size: int) -> tuple[float, float, float]:
        """A random point on the water near the raster and the river's direction there."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        corners_u = [x * c + y * s for x in (0, size) for y in (0, size)]
        u = rng.uniform(min(corners_u), max(corners_u))
        centre = self.offset + self.a1 * math.sin(u / self.l1 + self.p1) + self.a2 * math.sin(u / self.l2 + self.p2)
        slope = self.a1 / self.l1 * math.cos(u / self.l1 + self.p1) + self.a2 / self.l2 * math.cos(u / self.l2 + self.p2)
        v = centre + rng.uniform(-0.6, 0.6) * self.half_width
        return u * c - v * s, u * s + v * c, self.theta + math.atan(slope)

    def signed_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Negative inside the water, in pixels (approximately)."""
        c, s = math.cos(self.theta), math.sin(self.theta)
        u = x * c + y * s
        v = -x * s + y * c
        centre = self.offset + self.a1 * np.sin(u / self.l1 + self.p1) + self.a2 * np.sin(u / self.l2 + self.p2)
        width = self.half_width * (1 + 0.2 * np.sin(u / (0.7 * self.l1) + self.p2))
        return np.abs(v - centre) - width


@dataclass(frozen=True)
class _Rect:
    cx: float
    cy: float
    hu: float
    hv: float
    angle: float

    def local(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        dx, dy = x - self.cx, y - self.cy
        return dx * c + dy * s, -dx * s + dy * c

    def signed_distance(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        u, v = self.local(x, y)
        return _box(u, v, self.hu, self.hv)

    def point(self, u: float, v: float) -> tuple[float, float]:
        c, s = math.cos(self.angle), math.sin(self.angle)
        return self.cx + u * c - v * s, self.cy + u * s + v * c

    @property
    def radius(self) -> float:
        return math.hypot(self.hu, self.hv)


LAND, WATER, ROAD, APRON, RUNWAY, PARKING, PIER = 0, 1, 2, 3, 4, 5, 6


@dataclass(frozen=True)
class _Lot(_Rect):
    """A parking lot: rows of stalls across its short axis (v), aisles between row pairs."""

    stall: float = 5.0   # px, stall width along u
    depth: float = 11.0  # px, stall depth along v
    aisle: float = 13.0  # px, between two back-to-back rows and the next pair
    margin: float = 3.0  # px, kerb to the first stall

    @property
    def module(self) -> float:
        return 2 * self.depth + self.aisle

    @property
    def stalls(self) -> int:
        """Stalls per row."""
        return int((2 * self.hu - 2 * self.margin) // self.stall)

    @property
    def first_u(self) -> float:
        """Where the first stall of each row starts (the rows are centred along u)."""
        return -self.hu + self.margin + (2 * self.hu - 2 * self.margin - self.stalls * self.stall) / 2

    @property
    def modules(self) -> int:
        """Pairs of back-to-back rows that fit across the lot."""
        room = 2 * self.hv - 2 * self.margin
        return 0 if room < 2 * self.depth else int((room - 2 * self.depth) // self.module) + 1


@dataclass
class _Scene:
    size: int
    gsd: float
    seed: int
    sun: tuple[float, float]  # unit vector along which shadows fall (image coords)
    rivers: list[_River]
    roads: list[_Road]
    aprons: list[_Rect]
    runways: list[_Rect]
    objects: list[_Object]
    field_angle: float
    lots: list[_Lot] = field(default_factory=list)     # dense scenes only
    basins: list[_Rect] = field(default_factory=list)  # dense scenes only: marina water
    piers: list[_Rect] = field(default_factory=list)   # dense scenes only

    def px(self, metres: float) -> float:
        return metres / self.gsd

    def surface(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """What lies under each point, in drawing priority: airport > road > water > land.

        Only features near the points are tested, so a query costs the same in a 30000 px
        scene with a hundred roads as in a small one.
        """
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        cx, cy = float(x.mean()), float(y.mean())
        reach = float(np.max(np.hypot(x - cx, y - cy))) + 1.0
        out = np.full(x.shape, LAND, dtype=np.int8)
        for river in self.rivers:
            out[river.signed_distance(x, y) < 0] = WATER
        if self.roads:
            px_, py_, dx_, dy_, hw_ = self._road_table
            near = np.flatnonzero(np.abs((cx - px_) * dy_ - (cy - py_) * dx_) < hw_ + reach)
            for i in near:
                road = self.roads[i]
                d = np.abs((x - road.px) * road.dy - (y - road.py) * road.dx)
                out[d < road.half_width] = ROAD
        for kind, rects in ((RUNWAY, self.runways), (APRON, self.aprons), (WATER, self.basins),
                            (PIER, self.piers), (PARKING, self.lots)):
            for rect in rects:
                if math.hypot(cx - rect.cx, cy - rect.cy) < rect.radius + reach:
                    out[rect.signed_distance(x, y) < 0] = kind
        return out

    @property
    def _road_table(self) -> tuple[np.ndarray, ...]:
        table = self.__dict__.get("_roads_cached")
        if table is None or len(table[0]) != len(self.roads):
            table = tuple(np.array([getattr(r, f) for r in self.roads]) for f in ("px", "py", "dx", "dy", "half_width"))
            self.__dict__["_roads_cached"] = table
        return table


class _Occupancy:
    """Circles already taken, in a grid hash, so that objects never overlap."""

    def __init__(self, cell: float = 128.0) -> None:
        self.cell = cell
        self.grid: dict[tuple[int, int], list[tuple[float, float, float]]] = {}

    def _cells(self, x: float, y: float, r: float):
        c = self.cell
        for i in range(math.floor((x - r) / c), math.floor((x + r) / c) + 1):
            for j in range(math.floor((y - r) / c), math.floor((y + r) / c) + 1):
                yield (i, j)

    def free(self, x: float, y: float, r: float) -> bool:
        for key in self._cells(x, y, r):
            for ox, oy, orad in self.grid.get(key, ()):
                if math.hypot(x - ox, y - oy) < r + orad:
                    return False
        return True

    def add(self, x: float, y: float, r: float) -> None:
        for key in self._cells(x, y, r):
            self.grid.setdefault(key, []).append((x, y, r))


def _probe_points(obj: _Object, grow: float) -> tuple[np.ndarray, np.ndarray]:
    """Centre, corners and edge midpoints of the object's box grown by ``grow`` px."""
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    hl, hw = obj.length / 2 + grow, obj.width / 2 + grow
    uv = [(0, 0), (hl, hw), (hl, -hw), (-hl, hw), (-hl, -hw), (hl, 0), (-hl, 0), (0, hw), (0, -hw)]
    xs = np.array([obj.cx + u * c - v * s for u, v in uv])
    ys = np.array([obj.cy + u * s + v * c for u, v in uv])
    return xs, ys


_CAR_COLOURS = [
    (235, 235, 235), (230, 230, 225), (25, 25, 28), (40, 40, 45), (170, 172, 178),
    (140, 142, 148), (160, 30, 30), (30, 50, 120), (200, 190, 160), (60, 90, 60),
]
_TRUCK_COLOURS = [(225, 225, 225), (200, 200, 195), (180, 60, 40), (50, 80, 140), (230, 200, 60), (90, 90, 95)]
_HULL_COLOURS = [(170, 40, 35), (40, 55, 90), (70, 70, 75), (225, 225, 225), (35, 90, 70)]
_ROOF_COLOURS = [(150, 70, 55), (120, 120, 125), (170, 160, 150), (95, 95, 100), (185, 110, 80)]


def _layout(size: int, gsd: float, seed: int, density: str = "normal") -> _Scene:
    rng = np.random.default_rng(seed)
    px = lambda metres: metres / gsd  # noqa: E731
    extent_m = size * gsd
    sun_angle = rng.uniform(0, 2 * math.pi)
    sun = (math.cos(sun_angle), math.sin(sun_angle))
    scene = _Scene(size, gsd, seed, sun, [], [], [], [], [], rng.uniform(0, math.pi))
    centre = size / 2

    # Rivers: meandering bands across the scene.
    for _ in range(max(1, round(extent_m / 6000))):
        theta = rng.uniform(0, math.pi)
        half_width = px(rng.uniform(30, 60))
        scene.rivers.append(
            _River(
                theta=theta,
                offset=(-centre * math.sin(theta) + centre * math.cos(theta)) + rng.uniform(-0.25, 0.25) * size,
                a1=min(px(rng.uniform(40, 160)), 0.12 * size), l1=px(rng.uniform(250, 600)), p1=rng.uniform(0, 6.3),
                a2=min(px(rng.uniform(10, 40)), 0.05 * size), l2=px(rng.uniform(60, 150)), p2=rng.uniform(0, 6.3),
                half_width=half_width,
            )
        )

    # Roads: straight lines in two main directions.
    road_angle = rng.uniform(0, math.pi)
    per_direction = max(1, round(extent_m / 700))
    for k in range(2):
        angle = road_angle + k * math.pi / 2 + rng.normal(0, 0.08)
        dx, dy = math.cos(angle), math.sin(angle)
        for i in range(per_direction):
            along = (i + rng.uniform(0.25, 0.75)) / per_direction * size - centre
            # the road passes through centre + along * normal
            pxn, pyn = centre - along * dy, centre + along * dx
            scene.roads.append(_Road(pxn, pyn, dx, dy, px(rng.uniform(3.5, 5.0))))

    occupancy = _Occupancy(cell=max(64.0, px(40)))

    # Airports: an apron (planes park there) with a runway alongside where it fits.
    airports = max(1, round(extent_m**2 / 4e6))
    for _ in range(airports):
        _place_airport(scene, rng)

    if density == "dense":
        # Their own random stream, so the rest of the layout draws as in a normal scene.
        dense_rng = np.random.default_rng([seed, 0xD3A5E])
        _place_parking_lots(scene, dense_rng, occupancy)
        _place_marinas(scene, dense_rng, occupancy)

    _place_planes(scene, rng, occupancy)
    _place_ships(scene, rng, occupancy)
    _place_tanks(scene, rng, occupancy)
    _place_vehicles(scene, rng, occupancy)
    _place_buildings(scene, rng, occupancy)
    return scene


def _inside_raster(scene: _Scene, obj: _Object, margin: float = 2.0) -> bool:
    q = obj.quad()
    return bool(q.min() >= margin and q.max() <= scene.size - margin)


def _try_add(scene: _Scene, occupancy: _Occupancy, obj: _Object, surface: int, grow: float) -> bool:
    if not _inside_raster(scene, obj):
        return False
    if not occupancy.free(obj.cx, obj.cy, obj.radius + 1):
        return False
    xs, ys = _probe_points(obj, grow)
    if not np.all(scene.surface(xs, ys) == surface):
        return False
    occupancy.add(obj.cx, obj.cy, obj.radius + 1)
    scene.objects.append(obj)
    return True


def _place_airport(scene: _Scene, rng: np.random.Generator) -> None:
    px, size = scene.px, scene.size
    for attempt in range(300):
        shrink = 1.0 if attempt < 150 else 0.7
        hu = min(px(rng.uniform(90, 150)) * shrink, 0.3 * size)
        hv = min(px(rng.uniform(55, 80)) * shrink, 0.2 * size)
        angle = rng.uniform(0, math.pi)
        cx, cy = rng.uniform(hu, size - hu), rng.uniform(hu, size - hu)
        apron = _Rect(cx, cy, hu, hv, angle)
        with_runway = attempt < 200 and size * scene.gsd >= 1500
        rects = [apron]
        if with_runway:
            gap = hv + px(rng.uniform(60, 90))
            rx, ry = apron.point(0, gap)
            rects.append(_Rect(rx, ry, min(3.5 * hu, 0.45 * size * 1.4), px(22.5), angle))
        taken = scene.aprons + scene.runways
        if any(math.hypot(r.cx - t.cx, r.cy - t.cy) < r.radius + t.radius for r in rects for t in taken):
            continue
        uu, vv = np.meshgrid(np.linspace(-1, 1, 7), np.linspace(-1, 1, 7))
        ok = True
        for rect in rects:
            xs, ys = rect.point(uu.ravel() * (rect.hu + 10), vv.ravel() * (rect.hv + 10))
            on_map = (xs >= 0) & (xs <= size) & (ys >= 0) & (ys <= size)
            water = np.zeros_like(xs, dtype=bool)
            for river in scene.rivers:
                water |= river.signed_distance(xs, ys) < px(8)
            if np.any(water & on_map) or (rect is apron and not on_map.all()):
                ok = False
        if not ok:
            continue
        scene.aprons.append(apron)
        scene.runways.extend(rects[1:])
        return


def _place_planes(scene: _Scene, rng: np.random.Generator, occupancy: _Occupancy) -> None:
    px = scene.px
    for apron in scene.aprons:
        wanted = max(2, round(4 * apron.hu * apron.hv / px(60) ** 2))
        placed = 0
        for _ in range(60 * wanted):
            if placed >= wanted:
                break
            length = px(rng.uniform(28, 70))
            span = length * rng.uniform(0.85, 1.1)
            u, v = rng.uniform(-apron.hu, apron.hu), rng.uniform(-apron.hv, apron.hv)
            cx, cy = apron.point(u, v)
            heading = apron.angle + rng.choice([math.pi / 2, -math.pi / 2, 0, math.pi]) + rng.normal(0, 0.3)
            livery = [(236, 236, 238), (225, 228, 232), (245, 245, 245)][rng.integers(3)]
            tail = [(30, 60, 140), (180, 30, 40), (236, 236, 238), (20, 120, 90)][rng.integers(4)]
            plane = _Object("plane", cx, cy, length, span, heading, livery, px(4.0), 0, tail)
            placed += _try_add(scene, occupancy, plane, APRON, 2.0)


def _place_ships(scene: _Scene, rng: np.random.Generator, occupancy: _Occupancy) -> None:
    px, size = scene.px, scene.size
    for river in scene.rivers:
        wanted = max(2, round(size * scene.gsd / 150))
        placed = 0
        for _ in range(200 * wanted):
            if placed >= wanted:
                break
            length = px(rng.uniform(15, 90))
            width = length * rng.uniform(0.15, 0.22)
            x, y, along = river.sample(rng, size)
            heading = along + rng.choice([0, math.pi]) + rng.normal(0, 0.15)
            hull = _HULL_COLOURS[rng.integers(len(_HULL_COLOURS))]
            ship = _Object("ship", x, y, length, width, heading, hull, px(2.5), int(rng.integers(2)), (235, 235, 230))
            placed += _try_add(scene, occupancy, ship, WATER, px(4))


def _place_tanks(scene: _Scene, rng: np.random.Generator, occupancy: _Occupancy) -> None:
    px, size = scene.px, scene.size
    farms = max(1, round((size * scene.gsd) ** 2 / 1.5e6))
    for _ in range(farms):
        for _attempt in range(200):
            diameter = px(rng.uniform(12, 35))
            rows, cols = int(rng.integers(1, 4)), int(rng.integers(2, 5))
            pitch = diameter * rng.uniform(1.35, 1.7)
            angle = rng.uniform(0, math.pi)
            cx, cy = rng.uniform(0, size), rng.uniform(0, size)
            c, s = math.cos(angle), math.sin(angle)
            placed = 0
            for i in range(rows):
                for j in range(cols):
                    u, v = (j - (cols - 1) / 2) * pitch, (i - (rows - 1) / 2) * pitch
                    tone = rng.uniform(205, 240)
                    tank = _Object(
                        "storage tank", cx + u * c - v * s, cy + u * s + v * c, diameter, diameter, 0.0,
                        (tone, tone, tone - 4), diameter * rng.uniform(0.35, 0.6), int(rng.integers(2)),
                    )
                    placed += _try_add(scene, occupancy, tank, LAND, px(3))
            if placed:
                break


def _place_vehicles(scene: _Scene, rng: np.random.Generator, occupancy: _Occupancy) -> None:
    px, size = scene.px, scene.size
    for road in scene.roads:
        length_km = size * scene.gsd / 1000
        for cls, per_km, minimum in (("small vehicle", 30, 3), ("large vehicle", 8, 1)):
            wanted = max(minimum, round(per_km * length_km))
            placed = 0
            for _ in range(60 * wanted):
                if placed >= wanted:
                    break
                t = rng.uniform(-0.75, 0.75) * size
                lane = rng.choice([-1, 1])
                offset = lane * road.half_width * 0.5
                cx = road.px + t * road.dx - offset * road.dy
                cy = road.py + t * road.dy + offset * road.dx
                heading = math.atan2(road.dy, road.dx) + (0 if lane > 0 else math.pi) + rng.normal(0, 0.03)
                if cls == "small vehicle":
                    length, width = px(rng.uniform(3.9, 5.0)), px(rng.uniform(1.7, 2.0))
                    colour = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))]
                    obj = _Object(cls, cx, cy, length, width, heading, colour, px(1.2))
                else:
                    bus = rng.random() < 0.3
                    length = px(rng.uniform(11, 13) if bus else rng.uniform(8, 17))
                    width = px(rng.uniform(2.4, 2.6))
                    colour = _TRUCK_COLOURS[rng.integers(len(_TRUCK_COLOURS))]
                    cab = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))]
                    obj = _Object(cls, cx, cy, length, width, heading, colour, px(3.0), int(bus), cab)
                placed += _try_add(scene, occupancy, obj, ROAD, 0.0)


def _site_is_free(scene: _Scene, rect: _Rect, grow: float, margin: float = 4.0) -> bool:
    """The rectangle grown by ``grow`` px lies inside the raster and on open land only."""
    uu, vv = np.meshgrid(np.linspace(-1, 1, 11), np.linspace(-1, 1, 11))
    xs, ys = rect.point(uu.ravel() * (rect.hu + grow), vv.ravel() * (rect.hv + grow))
    if xs.min() < margin or ys.min() < margin or xs.max() > scene.size - margin or ys.max() > scene.size - margin:
        return False
    return bool(np.all(scene.surface(xs, ys) == LAND))


def _find_site(scene: _Scene, rng: np.random.Generator, half_u_m: tuple[float, float],
               half_v_m: tuple[float, float], make, gap_m: float):
    """A free site of about the given half sizes (metres), smaller after 150 misses; None after 300."""
    px, size = scene.px, scene.size
    for attempt in range(300):
        shrink = 1.0 if attempt < 150 else 0.6
        hu = min(px(rng.uniform(*half_u_m)) * shrink, 0.3 * size)
        hv = min(px(rng.uniform(*half_v_m)) * shrink, 0.2 * size)
        cx, cy = rng.uniform(hu, size - hu), rng.uniform(hu, size - hu)
        site = make(cx, cy, hu, hv, rng.uniform(0, math.pi))
        if _site_is_free(scene, site, px(gap_m)):
            return site
    return None


def _place_parking_lots(scene: _Scene, rng: np.random.Generator, occupancy: _Occupancy) -> None:
    """Dense scenes: parking lots, 80-95 % of their stalls taken by cars (hundreds per lot)."""
    px = scene.px

    def lot(cx, cy, hu, hv, angle):
        return _Lot(cx, cy, hu, hv, angle, stall=px(2.6), depth=px(5.5), aisle=px(6.5), margin=px(1.5))

    for _ in range(max(2, round(3 * (scene.size * scene.gsd) ** 2 / 1e6))):
        site = _find_site(scene, rng, (45, 80), (30, 50), lot, 4)
        if site is not None:
            scene.lots.append(site)
            _park_cars(scene, rng, occupancy, site)


def _park_cars(scene: _Scene, rng: np.random.Generator, occupancy: _Occupancy, lot: _Lot) -> None:
    """Cars in the stalls, nose in or out, with a little play that never makes them touch."""
    px = scene.px
    fill = rng.uniform(0.8, 0.95)
    stalls, u0 = lot.stalls, lot.first_u
    for module in range(lot.modules):
        v = -lot.hv + lot.margin + module * lot.module
        for row in range(2):
            row_v = v + (row + 0.5) * lot.depth
            for k in range(stalls):
                if rng.random() > fill:
                    continue
                length, width = px(rng.uniform(3.9, 5.0)), px(rng.uniform(1.7, 2.0))
                u = u0 + (k + 0.5) * lot.stall + px(rng.uniform(-0.05, 0.05))
                cx, cy = lot.point(u, row_v + px(rng.uniform(-0.1, 0.1)))
                heading = lot.angle + math.pi / 2 + rng.choice([0, math.pi]) + float(np.clip(rng.normal(0, 0.02), -0.06, 0.06))
                colour = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))]
                car = _Object("small vehicle", cx, cy, length, width, heading, colour, px(1.2))
                scene.objects.append(car)
                occupancy.add(cx, cy, car.radius + 1)


def _place_marinas(scene: _Scene, rng: np.random.Generator, occupancy: _Occupancy) -> None:
    """Dense scenes: dock basins with piers, boats moored side by side along both sides of each."""
    for _ in range(max(1, round(2 * (scene.size * scene.gsd) ** 2 / 1e6))):
        site = _find_site(scene, rng, (70, 110), (40, 60), _Rect, 6)
        if site is not None:
            scene.basins.append(site)
            _moor_boats(scene, rng, occupancy, site)


def _moor_boats(scene: _Scene, rng: np.random.Generator, occupancy: _Occupancy, basin: _Rect) -> None:
    """Piers from the basin's far wall across 85 % of it; a row of boats on each side of each pier."""
    px = scene.px
    pier_half, gap, channel = px(1.25), px(1.0), px(12.0)
    pier_len = 2 * basin.hv - channel
    u = -basin.hu + px(2.0)
    while True:
        length = px(rng.uniform(8, 14))
        width = length * rng.uniform(0.28, 0.34)
        span = 2 * (gap + length) + 2 * pier_half + px(1.5)  # and a lane of water to the next pier's boats
        if u + span > basin.hu - px(2.0):
            break
        pier_u = u + gap + length + pier_half
        scene.piers.append(_pier(basin, pier_u, pier_half, pier_len))
        pitch = width + px(rng.uniform(0.8, 1.5))
        for side in (-1, 1):
            bu = pier_u + side * (pier_half + gap + length / 2)
            bv = basin.hv - px(1.5) - width / 2
            while bv - width / 2 > basin.hv - pier_len:
                if rng.random() < 0.88:
                    cx, cy = basin.point(bu, bv)
                    heading = basin.angle + (math.pi if side < 0 else 0.0) + float(np.clip(rng.normal(0, 0.01), -0.03, 0.03))
                    hull = (235, 235, 232) if rng.random() < 0.6 else _HULL_COLOURS[rng.integers(len(_HULL_COLOURS))]
                    boat = _Object("ship", cx, cy, length, width, heading, hull, px(1.5), int(rng.integers(2)),
                                   (235, 235, 230))
                    scene.objects.append(boat)
                    occupancy.add(cx, cy, boat.radius + 1)
                bv -= pitch
        u += span


def _pier(basin: _Rect, pier_u: float, half_width: float, length: float) -> _Rect:
    """A pier at ``pier_u`` along the basin, from its far wall (v = +hv) ``length`` px inwards."""
    cx, cy = basin.point(pier_u, basin.hv - length / 2)
    return _Rect(cx, cy, length / 2 + 1.0, half_width, basin.angle + math.pi / 2)


def _place_buildings(scene: _Scene, rng: np.random.Generator, occupancy: _Occupancy) -> None:
    """Distractors (not in the ground truth): roofs along the roads."""
    px, size = scene.px, scene.size
    for road in scene.roads:
        wanted = round(12 * size * scene.gsd / 1000)
        for _ in range(4 * wanted):
            t = rng.uniform(-0.75, 0.75) * size
            side = rng.choice([-1, 1])
            length, width = px(rng.uniform(10, 30)), px(rng.uniform(8, 16))
            offset = side * (road.half_width + width / 2 + px(rng.uniform(6, 20)))
            cx = road.px + t * road.dx - offset * road.dy
            cy = road.py + t * road.dy + offset * road.dx
            heading = math.atan2(road.dy, road.dx)
            roof = _ROOF_COLOURS[rng.integers(len(_ROOF_COLOURS))]
            _try_add(scene, occupancy, _Object("building", cx, cy, length, width, heading, roof, px(5)), LAND, px(2))


# ----------------------------------------------------------------------------- painters
def _local(obj: _Object, X: np.ndarray, Y: np.ndarray, shift=(0.0, 0.0)):
    c, s = math.cos(obj.angle), math.sin(obj.angle)
    dx, dy = X - obj.cx - shift[0], Y - obj.cy - shift[1]
    return dx * c + dy * s, -dx * s + dy * c


def _plane_parts(obj: _Object, u, v):
    L, S = obj.length, obj.width
    av = np.abs(v)
    fuselage = _capsule_u(u, v, -0.44 * L, 0.42 * L, 0.055 * L)
    wing = _convex(u, av, [(0.14 * L, 0.0), (-0.10 * L, 0.5 * S), (-0.19 * L, 0.5 * S), (-0.12 * L, 0.0)])
    tail = _convex(u, av, [(-0.33 * L, 0.0), (-0.45 * L, 0.17 * S), (-0.5 * L, 0.17 * S), (-0.45 * L, 0.0)])
    engines = _capsule_u(u, av - 0.17 * S, -0.02 * L, 0.10 * L, 0.03 * L)
    return fuselage, wing, tail, engines


def _plane_silhouette(obj, u, v):
    f, w, t, e = _plane_parts(obj, u, v)
    return np.minimum(np.minimum(f, w), np.minimum(t, e))


def _paint_plane(obj, canvas, u, v):
    f, w, t, e = _plane_parts(obj, u, v)
    body = obj.colour
    _paint(canvas, _coverage(w), [c * 0.93 for c in body])
    _paint(canvas, _coverage(t), obj.accent)
    _paint(canvas, _coverage(e), (120, 122, 128))
    _paint(canvas, _coverage(f), body)
    cockpit = _capsule_u(u, v, 0.36 * obj.length, 0.40 * obj.length, 0.03 * obj.length)
    _paint(canvas, _coverage(cockpit) * 0.8, (40, 50, 60))


def _ship_hull(obj, u, v):
    L, W = obj.length, obj.width
    bow = 0.22 * L
    return _convex(u, v, [(-0.5 * L, -0.5 * W), (0.5 * L - bow, -0.5 * W), (0.5 * L, 0.0), (0.5 * L - bow, 0.5 * W), (-0.5 * L, 0.5 * W)])


def _paint_ship(obj, canvas, u, v):
    L, W = obj.length, obj.width
    _paint(canvas, _coverage(_ship_hull(obj, u, v)), obj.colour)
    deck = _ship_hull(obj, u * 1.08, v * 1.3)
    deck_colour = (95, 100, 95) if obj.variant == 0 else (185, 150, 110)
    _paint(canvas, _coverage(deck), deck_colour)
    bridge = _box(u + 0.33 * L, v, 0.07 * L, 0.36 * W, 0.5)
    _paint(canvas, _coverage(bridge), obj.accent)
    if obj.variant == 0:  # cargo hatches
        for k in range(3):
            hatch = _box(u - (0.18 * k - 0.1) * L, v, 0.065 * L, 0.3 * W)
            _paint(canvas, _coverage(hatch) * 0.9, (150, 60, 45) if k % 2 else (60, 90, 130))


def _ship_wake(obj, canvas, u, v, water, X, Y, salt):
    L, W = obj.length, obj.width
    back = -(u + 0.5 * L)  # distance behind the stern
    spread = 0.5 * W + 0.22 * back
    inside = (back > 0) & (back < 2.5 * L) & (np.abs(v) < spread)
    if not inside.any():
        return
    av = np.abs(v)
    arms = np.clip(1.0 - np.abs(av - 0.85 * spread) / (0.1 * spread + 1.0), 0, 1) * np.exp(-back / (0.9 * L))
    trail = np.clip(1.0 - av / (0.5 * W + 0.04 * back), 0, 1) * np.exp(-back / (0.35 * L))
    grain = _hash01(np.floor(X).astype(np.int64)[None, :], np.floor(Y).astype(np.int64)[:, None], salt)
    alpha = np.where(inside, np.maximum(arms, trail) * (0.55 + 0.45 * grain), 0.0).astype(np.float32) * water
    _paint(canvas, alpha * 0.75, (215, 225, 225))


def _paint_tank(obj, canvas, u, v):
    R = obj.length / 2
    r = np.hypot(u, v)
    _paint(canvas, _coverage(r - R), (140, 140, 138))  # rim
    roof = np.clip(1.0 - 0.12 * (r / R) ** 2, 0, 1)[..., None] * np.asarray(obj.colour, dtype=np.float32)
    a = _coverage(r - (R - max(1.0, 0.08 * R)))[..., None]
    canvas += (roof - canvas) * a
    if obj.variant:  # floating roof: an inner ring
        ring = np.abs(r - 0.7 * R) - max(0.5, 0.03 * R)
        _paint(canvas, _coverage(ring) * 0.6, (160, 160, 158))
    _paint(canvas, _coverage(r - max(0.8, 0.07 * R)), (120, 120, 120))


def _paint_small_vehicle(obj, canvas, u, v):
    L, W = obj.length, obj.width
    _paint(canvas, _coverage(_box(u, v, L / 2, W / 2, 0.25 * W)), obj.colour)
    dark = (30, 35, 42)
    _paint(canvas, _coverage(_box(u - 0.2 * L, v, 0.08 * L, 0.4 * W)) * 0.9, dark)
    _paint(canvas, _coverage(_box(u + 0.3 * L, v, 0.05 * L, 0.38 * W)) * 0.8, dark)


def _paint_large_vehicle(obj, canvas, u, v):
    L, W = obj.length, obj.width
    if obj.variant:  # bus
        _paint(canvas, _coverage(_box(u, v, L / 2, W / 2, 0.3)), obj.colour)
        _paint(canvas, _coverage(_box(u, np.abs(v) - 0.42 * W, 0.46 * L, 0.06 * W)) * 0.8, (30, 35, 40))
        for k in (-0.25, 0.1):
            _paint(canvas, _coverage(_box(u - k * L, v, 0.06 * L, 0.25 * W)), (200, 202, 205))
        return
    cab_len = min(0.22 * L, 0.92 * W)  # a 2.3 m cab on a 2.5 m wide truck
    trailer_len = L - cab_len - 0.03 * L
    _paint(canvas, _coverage(_box(u + 0.5 * L - trailer_len / 2 - cab_len - 0.03 * L, v, trailer_len / 2, W / 2, 0.2)), obj.colour)
    _paint(canvas, _coverage(_box(u - (0.5 * L - cab_len / 2), v, cab_len / 2, 0.46 * W, 0.3)), obj.accent)
    _paint(canvas, _coverage(_box(u - (0.5 * L - 0.75 * cab_len), v, 0.12 * cab_len, 0.4 * W)) * 0.8, (30, 35, 42))


def _paint_building(obj, canvas, u, v):
    _paint(canvas, _coverage(_box(u, v, obj.length / 2, obj.width / 2)), obj.colour)
    ridge = _box(u, v, obj.length / 2 - 0.5, 0.6)
    _paint(canvas, _coverage(ridge) * 0.5, [c * 0.8 for c in obj.colour])


def _silhouette(obj: _Object, u, v):
    if obj.cls == "plane":
        return _plane_silhouette(obj, u, v)
    if obj.cls == "ship":
        return _ship_hull(obj, u, v)
    if obj.cls == "storage tank":
        return np.hypot(u, v) - obj.length / 2
    return _box(u, v, obj.length / 2, obj.width / 2, 0.2)


_PAINTERS: dict[str, Callable] = {
    "plane": _paint_plane,
    "ship": _paint_ship,
    "storage tank": _paint_tank,
    "small vehicle": _paint_small_vehicle,
    "large vehicle": _paint_large_vehicle,
    "building": _paint_building,
}


# ----------------------------------------------------------------------------- rendering
_FIELD_COLOURS = np.array(
    [(82, 102, 58), (60, 84, 48), (148, 134, 92), (122, 98, 72), (165, 152, 118), (104, 118, 66)],
    dtype=np.float32,
)


def _grain_table(salt: int) -> np.ndarray:
    """Per-pixel grain, tiled every 256 px (the period hides under the other noise layers)."""
    idx = np.arange(256)
    return _hash01(idx[None, :], idx[:, None], salt) - np.float32(0.5)


def _sparse_paint(flat: np.ndarray, sel: np.ndarray, alpha: np.ndarray, colour) -> None:
    """Blend ``colour`` into the selected pixels of a (N, 3) canvas view."""
    part = flat[sel]
    part += (np.asarray(colour, dtype=np.float32) - part) * alpha.astype(np.float32)[:, None]
    flat[sel] = part


def _frac(x: np.ndarray) -> np.ndarray:
    return x - np.floor(x)


def _ground(scene: _Scene, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """Patchwork fields with furrows, hedgerows and woods, a function of global position.

    Evaluated on a half-resolution grid by the caller: nothing here varies over less than
    a few pixels, and the ground is most of the rendering time.
    """
    px, salt = scene.px, scene.seed * 7919
    c, s = math.cos(scene.field_angle), math.sin(scene.field_angle)
    cell_u, cell_v = px(180.0), px(120.0)
    # field-grid coordinates in units of cells; float32 is ample at field scale
    Xc, Yc = X.astype(np.float32), Y.astype(np.float32)
    U = Xc[None, :] * np.float32(c / cell_u) + Yc[:, None] * np.float32(s / cell_u)
    V = Xc[None, :] * np.float32(-s / cell_v) + Yc[:, None] * np.float32(c / cell_v)
    iu_f = np.floor(U)
    iu = iu_f.astype(np.int64)
    iu_min = int(iu.min())
    iu_range = np.arange(iu_min, int(iu.max()) + 1)
    row_shift = _hash01(iu_range, np.zeros_like(iu_range), salt + 3) * np.float32(1.0)
    iu -= iu_min
    shifted = V + np.take(row_shift, iu)
    iv_f = np.floor(shifted)
    iv = iv_f.astype(np.int64)
    iv_min = int(iv.min())
    iv_range = np.arange(iv_min, int(iv.max()) + 1)
    picks = _hash01(iu_range[:, None], iv_range[None, :], salt + 5)
    cell = iu * len(iv_range) + (iv - iv_min)
    pick = np.take(picks.ravel(), cell)
    kinds = np.minimum((picks.ravel() * len(_FIELD_COLOURS)).astype(np.int64), len(_FIELD_COLOURS) - 1)
    # furrows: stripes 3 m apart along each field's own direction
    furrows = np.where(pick > 0.5, U * np.float32(cell_u / px(5.0)), shifted * np.float32(cell_v / px(5.0)))
    stripe = np.sin(_frac(furrows) * np.float32(2 * math.pi))
    broad = _fbm(X, Y, px(400), 3, salt + 11)
    detail = _fbm(X, Y, px(25), 2, salt + 17)
    light = np.float32(0.8) + np.float32(0.35) * broad + np.float32(0.15) * detail
    light += np.float32(0.03) * stripe
    canvas = np.empty(light.shape + (3,), dtype=np.float32)
    for ch in range(3):
        canvas[..., ch] = np.take(_FIELD_COLOURS[kinds, ch], cell) * light
    flat = canvas.reshape(-1, 3)
    # hedgerows along field borders (distance to the cell border, in pixels)
    edge_u = (np.float32(0.5) - np.abs(U - iu_f - np.float32(0.5))) * np.float32(cell_u)
    edge_v = (np.float32(0.5) - np.abs(shifted - iv_f - np.float32(0.5))) * np.float32(cell_v)
    edge = np.minimum(edge_u, edge_v).ravel()
    sel = np.flatnonzero(edge < px(1.5) + 0.5)
    if sel.size:
        _sparse_paint(flat, sel, _coverage(edge[sel] - px(1.5)) * 0.8, (48, 62, 38))
    # woods: dark canopy with crowns where the broad noise is high
    woods = broad.ravel()
    sel = np.flatnonzero(woods > 0.62)
    if sel.size:
        crowns = _fbm(X, Y, px(5), 2, salt + 23).ravel()[sel]
        alpha = np.clip((woods[sel] - 0.62) * 12, 0, 1)
        tone = np.array([38, 58, 34], dtype=np.float32) + crowns[:, None] * np.float32(50)
        part = flat[sel]
        flat[sel] = part + (tone - part) * alpha[:, None]
    return canvas


def _ground_full(scene: _Scene, x0: int, y0: int, w: int, h: int, grain: np.ndarray) -> np.ndarray:
    """The ground at full resolution: 2 x 2 blocks of the half-resolution ground, plus grain.

    Blocks sit on the global even-pixel lattice, so any window gets the same pixels.
    """
    bx, by = x0 - x0 % 2, y0 - y0 % 2
    w2, h2 = (x0 + w - bx + 1) // 2, (y0 + h - by + 1) // 2
    X2 = bx + 2.0 * np.arange(w2) + 1.0  # the centre of each 2 x 2 block
    Y2 = by + 2.0 * np.arange(h2) + 1.0
    half = _ground(scene, X2, Y2)
    blocks = np.empty((h2, 2, w2, 2, 3), dtype=np.float32)
    blocks[:] = half[:, None, :, None, :]
    canvas = blocks.reshape(2 * h2, 2 * w2, 3)[y0 - by : y0 - by + h, x0 - bx : x0 - bx + w]
    canvas = np.ascontiguousarray(canvas)
    canvas *= (np.float32(1.0) + np.float32(0.1) * grain)[..., None]
    return canvas


def _paint_dense_sites(scene: _Scene, flat, xf, yf, X, Y, grain, mid, half_diag, water) -> None:
    """Dense scenes: marina basins (concrete quays, still water, piers) and parking lots.

    The basin's water is left out of ``water``: boats moored there draw no wake.
    """
    px, salt = scene.px, scene.seed * 7919
    quay = px(2.0)
    grown = [_Rect(b.cx, b.cy, b.hu + quay, b.hv + quay, b.angle) for b in scene.basins]
    for _rect, sel, _u, _v, cover in _paved_pixels(grown, xf, yf, mid, half_diag, water):
        _sparse_paint(flat, sel, cover, (158, 155, 146))
    for _rect, sel, _u, _v, cover in _paved_pixels(scene.basins, xf, yf, mid, half_diag, water):
        ripple = _fbm(X, Y, px(12), 2, salt + 43).ravel()[sel]
        tone = np.array([40, 62, 72], dtype=np.float32) * (0.94 + 0.1 * ripple + 0.04 * grain.ravel()[sel])[:, None]
        part = flat[sel]
        flat[sel] = part + (tone - part) * cover[:, None]
    for _pier_rect, sel, u, _v, cover in _paved_pixels(scene.piers, xf, yf, mid, half_diag, water):
        planks = 0.9 + 0.1 * (np.mod(u, px(1.0)) < px(0.8))
        tone = np.array([150, 138, 118], dtype=np.float32) * planks.astype(np.float32)[:, None]
        part = flat[sel]
        flat[sel] = part + (tone - part) * cover[:, None]
    line_w = max(0.5, px(0.08))
    for lot, sel, u, v, cover in _paved_pixels(scene.lots, xf, yf, mid, half_diag, water):
        tone = (np.float32(84) + np.float32(12) * grain.ravel()[sel])[:, None] * np.array([1.0, 1.0, 1.03], dtype=np.float32)
        part = flat[sel]
        flat[sel] = part + (tone - part) * cover[:, None]
        across = v - (-lot.hv + lot.margin)
        in_module = np.mod(across, lot.module)
        in_rows = (across >= 0) & (across < lot.modules * lot.module) & (in_module < 2 * lot.depth)
        along = u - lot.first_u
        in_rows &= (along >= -line_w) & (along <= lot.stalls * lot.stall + line_w)
        du = np.mod(along, lot.stall)
        stall_edge = _coverage(np.minimum(du, lot.stall - du) - line_w)
        middle = _coverage(np.abs(in_module - lot.depth) - line_w)
        _sparse_paint(flat, sel, np.maximum(stall_edge, middle) * in_rows * cover * 0.85, (225, 225, 220))


def _render_chunk(scene: _Scene, x0: int, y0: int, w: int, h: int, objects: list[_Object]) -> np.ndarray:
    X = np.arange(x0, x0 + w, dtype=np.float64) + 0.5
    Y = np.arange(y0, y0 + h, dtype=np.float64) + 0.5
    px, salt = scene.px, scene.seed * 7919
    grain = _grain_table(salt + 19)[np.mod(np.floor(Y), 256).astype(np.intp)[:, None], np.mod(np.floor(X), 256).astype(np.intp)[None, :]]
    canvas = _ground_full(scene, x0, y0, w, h, grain)
    flat = canvas.reshape(-1, 3)
    half_diag = math.hypot(w, h) / 2
    mid_x, mid_y = x0 + w / 2, y0 + h / 2
    XX, YY = np.meshgrid(X, Y)
    xf, yf = XX.ravel(), YY.ravel()
    water = np.zeros(h * w, dtype=np.float32)

    for river in scene.rivers:
        coarse = river.signed_distance(XX[::16, ::16], YY[::16, ::16])
        if coarse.min() > px(10) + 72:  # the distance changes at most ~3 px per px
            continue
        d = river.signed_distance(xf, yf)
        sel = np.flatnonzero(d < px(10))
        if not sel.size:
            continue
        ripple = _fbm(X, Y, px(12), 2, salt + 29).ravel()[sel]
        d = d[sel] + (ripple - 0.5) * px(4)
        _sparse_paint(flat, sel, _coverage(d - px(3)), (170, 158, 120))  # sandy bank
        wet = _coverage(d).astype(np.float32)
        deep = np.clip(-d / px(25), 0, 1).astype(np.float32)[:, None]
        tone = np.array([52, 78, 82], dtype=np.float32) * (1 - deep) + np.array([28, 48, 62], dtype=np.float32) * deep
        tone *= (0.93 + 0.14 * ripple + 0.05 * grain.ravel()[sel])[:, None]
        part = flat[sel]
        flat[sel] = part + (tone - part) * wet[:, None]
        water[sel] = np.maximum(water[sel], wet)

    for road in scene.roads:
        if abs((mid_x - road.px) * road.dy - (mid_y - road.py) * road.dx) > half_diag + road.half_width + 2:
            continue
        across = (xf - road.px) * road.dy - (yf - road.py) * road.dx
        sel = np.flatnonzero(np.abs(across) < road.half_width + 1)
        if not sel.size:
            continue
        across = across[sel]
        along = (xf[sel] - road.px) * road.dx + (yf[sel] - road.py) * road.dy
        asphalt = _coverage(np.abs(across) - road.half_width).astype(np.float32)
        water[sel] *= 1 - asphalt
        tone = (np.float32(92) + np.float32(14) * grain.ravel()[sel])[:, None] * np.array([1.0, 1.0, 1.03], dtype=np.float32)
        part = flat[sel]
        flat[sel] = part + (tone - part) * asphalt[:, None]
        line_w = max(0.5, px(0.08))
        edge = _coverage(np.abs(np.abs(across) - (road.half_width - px(0.5))) - line_w) * asphalt * 0.7
        _sparse_paint(flat, sel, edge, (225, 225, 220))
        dashes = np.mod(along, px(12)) < px(4)
        _sparse_paint(flat, sel, _coverage(np.abs(across) - line_w) * dashes * 0.8, (230, 225, 200))

    for rect, sel, u, v, cover in _paved_pixels(scene.runways, xf, yf, (mid_x, mid_y), half_diag, water):
        _sparse_paint(flat, sel, cover, (98, 98, 100))
        centre = _coverage(np.abs(v) - max(0.6, px(0.45))) * (np.mod(u, px(50)) < px(30))
        bars = (np.abs(np.abs(u) - (rect.hu - px(20))) < px(15)) & (np.mod(v, px(4)) < px(1.8)) & (np.abs(v) < 0.8 * rect.hv)
        _sparse_paint(flat, sel, np.maximum(centre, bars) * cover * 0.9, (235, 235, 235))

    for rect, sel, u, v, cover in _paved_pixels(scene.aprons, xf, yf, (mid_x, mid_y), half_diag, water):
        stains = _fbm(X, Y, px(30), 2, salt + 37).ravel()[sel]
        tone = (np.float32(172) + np.float32(16) * stains + np.float32(6) * grain.ravel()[sel])[:, None]
        part = flat[sel]
        flat[sel] = part + (tone - part) * cover[:, None]
        slab = px(7.5)
        joints = np.minimum(np.abs(np.mod(u, slab) - slab / 2), np.abs(np.mod(v, slab) - slab / 2))
        _sparse_paint(flat, sel, _coverage(slab / 2 - joints - 0.5) * cover * 0.25, (120, 120, 118))
        taxi = _coverage(np.abs(v + 0.6 * rect.hv) - max(0.5, px(0.15)))
        _sparse_paint(flat, sel, taxi * cover * 0.9, (215, 180, 40))

    if scene.basins or scene.lots:
        _paint_dense_sites(scene, flat, xf, yf, X, Y, grain, (mid_x, mid_y), half_diag, water)

    water = water.reshape(h, w)
    # shadows and wakes first, then every body on top
    boxes = []
    for obj in objects:
        reach = obj.reach
        c0, c1 = max(x0, math.floor(obj.cx - reach)), min(x0 + w, math.ceil(obj.cx + reach))
        r0, r1 = max(y0, math.floor(obj.cy - reach)), min(y0 + h, math.ceil(obj.cy + reach))
        if c1 <= c0 or r1 <= r0:
            continue
        boxes.append((obj, slice(r0 - y0, r1 - y0), slice(c0 - x0, c1 - x0)))
    for obj, rows, cols in boxes:
        sx, sy = XX[rows, cols], YY[rows, cols]
        shift = (scene.sun[0] * obj.height, scene.sun[1] * obj.height)
        su, sv = _local(obj, sx, sy, shift)
        sub = canvas[rows, cols]
        _shade(sub, _coverage(_silhouette(obj, su, sv)).astype(np.float32), 0.5)
        if obj.cls == "ship":
            u, v = _local(obj, sx, sy)
            _ship_wake(obj, sub, u, v, water[rows, cols], X[cols], Y[rows], salt + 41)
    for obj, rows, cols in boxes:
        u, v = _local(obj, XX[rows, cols], YY[rows, cols])
        _PAINTERS[obj.cls](obj, canvas[rows, cols], u, v)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- entry point
_WORKER_SCENE: _Scene | None = None


def _init_worker(scene: _Scene) -> None:
    global _WORKER_SCENE
    _WORKER_SCENE = scene


def _render_job(job) -> np.ndarray:
    col, row, w, h, objects = job
    return _render_chunk(_WORKER_SCENE, col, row, w, h, objects)


def _render_all(scene: _Scene, jobs: list, workers: int | None):
    """Rendered chunks in job order; in worker processes when that pays off.

    Workers are spawned (not forked): the parent holds GDAL's writer threads, and a
    forked child could inherit one of their locks.
    """
    if workers is None:
        workers = min(2, os.cpu_count() or 1) if scene.size > 4096 else 1
    if workers <= 1 or len(jobs) < 4:
        for col, row, w, h, objects in jobs:
            yield _render_chunk(scene, col, row, w, h, objects)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker, initargs=(scene,)) as pool:
        pending = []
        ahead = 2 * workers  # bounded look-ahead keeps memory flat
        for job in jobs:
            pending.append(pool.submit(_render_job, job))
            if len(pending) > ahead:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


def _projected_crs(crs: str):
    from pyproj import CRS

    try:
        parsed = CRS.from_user_input(crs)
    except Exception as exc:  # noqa: BLE001
        raise UserError(f"{crs!r} is not a CRS PROJ knows; give a projected CRS such as EPSG:32633.") from exc
    if not parsed.is_projected:
        raise UserError(
            f"The synthetic scene needs a projected CRS in metres (its pixel size is in metres); "
            f"{crs} is not projected. Use a UTM zone such as EPSG:32633."
        )
    unit = parsed.axis_info[0].unit_conversion_factor if parsed.axis_info else 1.0
    if not math.isclose(unit or 1.0, 1.0):
        raise UserError(f"The CRS {crs} does not use metres; choose a projected CRS in metres.")
    return parsed


def _scene_origin(crs, size: int, gsd: float) -> tuple[float, float]:
    """Top-left corner so the scene is centred in the CRS's area of use."""
    from pyproj import Transformer

    area = crs.area_of_use
    lon, lat = ((area.west + area.east) / 2, (area.south + area.north) / 2) if area else (0.0, 0.0)
    if area and area.west > area.east:  # crosses the antimeridian
        lon = ((area.west + area.east + 360) / 2 + 180) % 360 - 180
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    if not (math.isfinite(x) and math.isfinite(y)):
        x, y = 0.0, 0.0
    half = size * gsd / 2
    return round(x - half, -2), round(y + half, -2)


def overview_factors(size: int) -> list[int]:
    factors, f = [], 2
    while size / f >= 256 or not factors:
        factors.append(f)
        f *= 2
    return factors


def make_scene(
    raster_path: str | os.PathLike[str],
    truth_path: str | os.PathLike[str],
    size: int = 2048,
    seed: int = 0,
    gsd: float = 0.5,
    crs: str = "EPSG:32633",
    workers: int | None = None,
    density: str = "normal",
) -> SceneSummary:
    """Render a ``size`` x ``size`` scene to a tiled GeoTIFF and its ground truth to a vector file.

    ``workers`` processes render chunks in parallel (default: up to 4 for scenes larger
    than 4096 px, else 1); the pixels are the same whatever the number.

    ``density="dense"`` adds, on open land, parking lots with 80-95 % of their stalls
    taken (cars 2.6 m apart, hundreds per lot) and marina basins whose piers have boats
    moored side by side (over a hundred per basin): many 512 px tiles then hold 100 or
    more objects, answers of thousands of tokens. They draw from a random stream of
    their own, and a ``"normal"`` scene is byte for byte what it always was.
    """
    import geopandas as gpd
    import rasterio
    import shapely
    from affine import Affine
    from rasterio.enums import ColorInterp, Resampling

    from rscovlm.atomic import atomic_write_with
    from rscovlm.georef import pixel_to_map
    from rscovlm.outputs import VECTOR_DRIVERS, write_vector

    size, seed = int(size), int(seed)
    if not 256 <= size <= 200_000:
        raise UserError(f"The scene size must be between 256 and 200000 pixels; got {size}.")
    if not 0.05 <= float(gsd) <= 10:
        raise UserError(f"The pixel size must be between 0.05 and 10 metres; got {gsd}.")
    gsd = float(gsd)
    raster_path, truth_path = Path(raster_path), Path(truth_path)
    if truth_path.suffix.lower() not in VECTOR_DRIVERS:
        raise UserError(
            f"Cannot write the ground truth to {truth_path.name}: use one of "
            f"{', '.join(sorted(VECTOR_DRIVERS))}."
        )
    for target in (raster_path, truth_path):
        if not target.parent.is_dir():
            raise UserError(f"Cannot write {target}: the folder {target.parent} does not exist.")
    parsed_crs = _projected_crs(crs)

    if density not in DENSITIES:
        raise UserError(f"The density must be one of {', '.join(DENSITIES)}; got {density!r}.")
    scene = _layout(size, gsd, seed, density)
    x0, y0 = _scene_origin(parsed_crs, size, gsd)
    transform = Affine(gsd, 0.0, x0, 0.0, -gsd, y0)

    # which objects touch which chunk
    chunks: dict[tuple[int, int], list[_Object]] = {}
    for obj in scene.objects:
        reach = obj.reach
        for i in range(max(0, math.floor((obj.cx - reach) / CHUNK)), min((size - 1) // CHUNK, math.floor((obj.cx + reach) / CHUNK)) + 1):
            for j in range(max(0, math.floor((obj.cy - reach) / CHUNK)), min((size - 1) // CHUNK, math.floor((obj.cy + reach) / CHUNK)) + 1):
                chunks.setdefault((i, j), []).append(obj)

    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint8", crs=parsed_crs.to_wkt(),
        transform=transform, tiled=True, blockxsize=BLOCK, blockysize=BLOCK, compress="deflate",
        predictor=2, interleave="pixel", photometric="RGB", BIGTIFF="IF_SAFER",
    )
    factors = overview_factors(size)

    def render(tmp_raster: Path) -> None:
        with rasterio.Env(GDAL_CACHEMAX=128 * 2**20, GDAL_NUM_THREADS="ALL_CPUS"):
            with rasterio.open(tmp_raster, "w", num_threads="ALL_CPUS", **profile) as dst:
                dst.colorinterp = (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
                jobs = [
                    (col, row, min(CHUNK, size - col), min(CHUNK, size - row), chunks.get((col // CHUNK, row // CHUNK), []))
                    for row in range(0, size, CHUNK)
                    for col in range(0, size, CHUNK)
                ]
                for (col, row, w, h, _objs), pixels in zip(jobs, _render_all(scene, jobs, workers)):
                    dst.write(np.moveaxis(pixels, -1, 0), window=rasterio.windows.Window(col, row, w, h))
                dst.build_overviews(factors, Resampling.average)
                dst.update_tags(ns="rio_overview", resampling="average")
                dst.update_tags(
                    SYNTH_SEED=str(seed), SYNTH_GSD=str(gsd),
                    TIFFTAG_SOFTWARE="rscovlm synth",
                )
                if density != "normal":  # normal scenes keep the tags (and bytes) they always had
                    dst.update_tags(SYNTH_DENSITY=density)

    atomic_write_with(raster_path, render)

    truth = [obj for obj in scene.objects if obj.cls in SCENE_CLASSES]
    quads = np.array([obj.quad() for obj in truth]).reshape(-1, 8)
    map_quads = pixel_to_map(quads, transform).reshape(-1, 4, 2)
    polygons = shapely.polygons(map_quads) if len(truth) else []
    gdf = gpd.GeoDataFrame(
        {"class": [obj.cls for obj in truth], "difficult": np.zeros(len(truth), dtype=np.int64)},
        geometry=gpd.GeoSeries(list(polygons), crs=parsed_crs),
        crs=parsed_crs,
    )
    write_vector(gdf, truth_path)

    counts = Counter(obj.cls for obj in truth)
    bounds = (x0, y0 - size * gsd, x0 + size * gsd, y0)
    return SceneSummary(
        raster_path=raster_path, truth_path=truth_path, size=size, gsd=gsd,
        crs=parsed_crs.to_string(), counts={c: counts.get(c, 0) for c in SCENE_CLASSES},
        bounds=bounds, overviews=factors, density=density,
    )
