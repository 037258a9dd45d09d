"""Reading any raster a GIS user has as the 8-bit RGB tiles the model wants.

Real imagery is rarely 8-bit RGB in R,G,B order: bands come as B,G,R,A or NIR-first, data
is 16-bit or float, single-band or palette, with nodata values, NaN, alpha bands and
internal masks. This module makes the choices a careful analyst would (colour
interpretation first, a 2-98 % stretch computed once on a decimated read, masks honoured)
and records them in ``notes`` in plain words so the user can see what the model saw.

Every read is windowed or decimated; the whole array is never read, so memory does not
grow with raster size. Decimated reads (``out_hw``) let GDAL use the file's overviews.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.windows
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError

from rscovlm.errors import UserError
from rscovlm.tiling import Window

__all__ = ["RasterError", "RasterSource", "STRETCH_MODES", "MIN_REGION_PX"]

#: GDAL block cache while this module reads: enough for two rows of 512 px blocks across
#: a 60000 px wide RGB raster, small enough to keep the process well under 1 GB.
GDAL_CACHE_BYTES = 256 * 2**20
#: pixels read to compute the stretch percentiles
STATS_PIXELS = 1_000_000
STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_MODES = ("auto", "percentile", "none")
#: a region narrower than this (in raster pixels) is refused as too small to look at
MIN_REGION_PX = 8


class RasterError(UserError, ValueError):
    """A raster that cannot be used as asked; the message is a sentence for the user."""


def _reason(exc: BaseException) -> str:
    """GDAL's message without its trailing full stop, to end our own sentence."""
    return str(exc).strip().rstrip(".")


def _env() -> rasterio.Env:
    return rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES)


def _as_pyproj(crs: Any) -> CRS | None:
    if crs is None:
        return None
    try:
        return CRS.from_wkt(crs.to_wkt()) if hasattr(crs, "to_wkt") else CRS.from_user_input(crs)
    except Exception:  # noqa: BLE001 - a CRS GDAL knows but PROJ cannot parse
        return CRS.from_user_input(crs.to_string())


def _rio_window(window: Any) -> rasterio.windows.Window:
    return rasterio.windows.Window(
        int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    )


class RasterSource:
    """An open raster that yields (uint8 RGB, valid mask) for any window; a context manager."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        bands: Sequence[int] | None = None,
        stretch: str = "auto",
    ) -> None:
        self.path = Path(path)
        if stretch not in STRETCH_MODES:
            raise RasterError(
                f"Unknown stretch {stretch!r}; use one of {', '.join(STRETCH_MODES)}."
            )
        self._dataset = self._open_dataset(self.path)
        try:
            ds = self._dataset
            self.width: int = ds.width
            self.height: int = ds.height
            self.count: int = ds.count
            self.dtype: str = ds.dtypes[0]
            self.transform: Affine = ds.transform
            self.crs: CRS | None = _as_pyproj(ds.crs)
            self.georeferenced: bool = self.crs is not None or not self.transform.is_identity
            self.notes: list[str] = []
            self._palette_lut: np.ndarray | None = None
            self.bands: tuple[int, ...] = self._choose_bands(bands)
            self._note_georeference()
            self._note_masks()
            self._stretch_ranges = self._choose_stretch(stretch)
        except BaseException:
            self._dataset.close()
            raise

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        bands: Sequence[int] | None = None,
        stretch: str = "auto",
    ) -> RasterSource:
        return cls(path, bands=bands, stretch=stretch)

    @staticmethod
    def _open_dataset(path: Path) -> Any:
        if not path.exists():
            raise RasterError(f"The raster {path} does not exist; check the path.")
        if path.is_dir():
            raise RasterError(f"{path} is a folder, not a raster file; give the path of the image file.")
        try:
            with _env(), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                dataset = rasterio.open(path)
        except RasterioIOError as exc:
            raise RasterError(
                f"{path.name} is not a raster GDAL can read (it may be damaged or another kind "
                f"of file): {_reason(exc)}."
            ) from exc
        if dataset.count == 0 or dataset.width == 0 or dataset.height == 0:
            dataset.close()
            raise RasterError(f"{path.name} has no pixel bands; give an image raster.")
        return dataset

    def close(self) -> None:
        self._dataset.close()

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._dataset.closed

    # ------------------------------------------------------------------ bands
    def _choose_bands(self, bands: Sequence[int] | None) -> tuple[int, ...]:
        ds = self._dataset
        count = ds.count
        interp = list(ds.colorinterp)
        if bands is not None:
            chosen = tuple(int(b) for b in bands)
            for band in chosen:
                if band < 1 or band > count:
                    plural = "band" if count == 1 else "bands"
                    raise RasterError(f"band {band} does not exist: the raster has {count} {plural}.")
            if len(chosen) not in (1, 3):
                raise RasterError(
                    f"Give 1 band (shown as grey) or 3 bands (red, green, blue); got {len(chosen)}."
                )
            if len(chosen) == 1:
                self.notes.append(f"band {chosen[0]} shown as grey (chosen by the user)")
                return chosen * 3
            self.notes.append(
                "bands " + ",".join(map(str, chosen)) + " used as red, green, blue (chosen by the user)"
            )
            return chosen

        by_interp = {ci: i + 1 for i, ci in reversed(list(enumerate(interp)))}
        if all(ci in by_interp for ci in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
            chosen = (by_interp[ColorInterp.red], by_interp[ColorInterp.green], by_interp[ColorInterp.blue])
            self.notes.append(
                "bands " + ",".join(map(str, chosen)) + " used as red, green, blue (colour interpretation)"
            )
            return chosen
        if interp[0] == ColorInterp.palette and self._load_palette(1):
            self.notes.append("band 1 expanded to colours through its palette")
            return (1, 1, 1)
        data_bands = [i + 1 for i, ci in enumerate(interp) if ci != ColorInterp.alpha] or [1]
        if len(data_bands) >= 3:
            chosen = tuple(data_bands[:3])
            self.notes.append(
                "bands " + ",".join(map(str, chosen)) + " used as red, green, blue "
                "(no colour interpretation says which band is which; choose bands if colours look wrong)"
            )
            return chosen
        self.notes.append(f"band {data_bands[0]} shown as grey")
        return (data_bands[0],) * 3

    def _load_palette(self, band: int) -> bool:
        """Build a lookup table index -> (R, G, B, A) from the band's colour map."""
        try:
            colormap = self._dataset.colormap(band)
        except (ValueError, RasterioError):
            return False
        if not colormap:
            return False
        size = 65536 if self.dtype == "uint16" else 256
        lut = np.zeros((size, 4), dtype=np.uint8)
        for index, rgba in colormap.items():
            if 0 <= index < size:
                lut[index, : len(rgba)] = rgba[:4]
                if len(rgba) < 4:
                    lut[index, 3] = 255
        self._palette_lut = lut
        return True

    @property
    def _read_indexes(self) -> list[int]:
        """Distinct bands to read, in first-use order (grey reads one band, not three)."""
        return list(dict.fromkeys(self.bands))

    # ------------------------------------------------------------------ notes
    def _note_georeference(self) -> None:
        if not self.georeferenced:
            self.notes.append(
                "the raster has no georeference (no CRS, no geotransform): results are in "
                "pixel coordinates (x to the right, y down), not map coordinates"
            )
        elif self.crs is None:
            self.notes.append(
                "the raster has a geotransform but no CRS: results use its coordinates with no CRS "
                "and areas are not computed; assign a CRS to the raster to get map output"
            )

    def _note_masks(self) -> None:
        ds = self._dataset
        flags = set()
        for index in self._read_indexes:
            flags.update(ds.mask_flag_enums[index - 1])
        if MaskFlags.alpha in flags:
            alpha = [i + 1 for i, ci in enumerate(ds.colorinterp) if ci == ColorInterp.alpha]
            which = f"alpha band {alpha[0]}" if alpha else "the alpha band"
            self.notes.append(f"{which} used to mask out empty pixels")
        elif MaskFlags.nodata in flags:
            self.notes.append(f"pixels equal to the nodata value {ds.nodata:g} treated as empty")
        elif MaskFlags.per_dataset in flags:
            self.notes.append("the raster's mask used to leave out empty pixels")
        if np.dtype(self.dtype).kind == "f":
            self.notes.append("NaN and infinite values treated as empty")

    # ------------------------------------------------------------------ stretch
    def _choose_stretch(self, stretch: str) -> dict[int, tuple[float, float]] | None:
        """Per-band (low, high) to map onto 0..255, or None when values pass through."""
        if self._palette_lut is not None:
            return None
        if stretch == "none" or (stretch == "auto" and self.dtype == "uint8"):
            if self.dtype != "uint8":
                self.notes.append(f"{self.dtype} values clipped to 0-255 without stretching")
            return None
        ranges = self._percentile_ranges()
        low_p, high_p = STRETCH_PERCENTILES
        detail = "; ".join(f"band {b}: {lo:g}-{hi:g}" for b, (lo, hi) in ranges.items())
        self.notes.append(
            f"{self.dtype} values stretched to 8 bits per band between the {low_p:g} and "
            f"{high_p:g} percentiles ({detail})"
        )
        return ranges

    def _stats_shape(self) -> tuple[int, int]:
        scale = max(1.0, math.sqrt(self.width * self.height / STATS_PIXELS))
        return max(1, round(self.height / scale)), max(1, round(self.width / scale))

    def _percentile_ranges(self) -> dict[int, tuple[float, float]]:
        out_h, out_w = self._stats_shape()
        indexes = self._read_indexes
        full = rasterio.windows.Window(0, 0, self.width, self.height)
        # Nearest keeps real values (an average would narrow the distribution's tails);
        # GDAL serves the read from the best overview when there is one.
        data, masks = self._read_arrays(indexes, full, (out_h, out_w), Resampling.nearest)
        ranges: dict[int, tuple[float, float]] = {}
        for k, band in enumerate(indexes):
            values = data[k][masks[k]]
            if values.dtype.kind == "f":
                values = values[np.isfinite(values)]
            if values.size == 0:
                ranges[band] = (0.0, 1.0)
                continue
            low, high = np.percentile(values, STRETCH_PERCENTILES)
            low, high = float(low), float(high)
            if not high > low:
                high = low + 1.0
            ranges[band] = (low, high)
        return ranges

    # ------------------------------------------------------------------ reading
    def _read_arrays(
        self,
        indexes: list[int],
        window: rasterio.windows.Window,
        out_hw: tuple[int, int] | None,
        resampling: Resampling,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Band data (k, h, w) and per-band validity (k, h, w) for one in-raster window."""
        shape = None if out_hw is None else (len(indexes), int(out_hw[0]), int(out_hw[1]))
        try:
            with _env():
                data = self._dataset.read(
                    indexes, window=window, out_shape=shape, resampling=resampling
                )
                masks = self._dataset.read_masks(
                    indexes, window=window, out_shape=shape, resampling=Resampling.nearest
                )
        except RasterioError as exc:
            raise RasterError(
                f"Could not read pixels from {self.path.name} (the file may be damaged or "
                f"truncated): {_reason(exc)}."
            ) from exc
        valid = masks > 0
        if data.dtype.kind == "f":
            valid &= np.isfinite(data)
        return data, valid

    def _to_rgb(self, data: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        indexes = self._read_indexes
        if self._palette_lut is not None:
            lut = self._palette_lut
            idx = np.clip(data[0], 0, len(lut) - 1).astype(np.intp)
            rgba = lut[idx]
            rgb = np.ascontiguousarray(rgba[..., :3])
            pixel_valid = valid[0] & (rgba[..., 3] > 0)
        else:
            position = {band: k for k, band in enumerate(indexes)}
            channels = []
            for band in self.bands:
                values = data[position[band]]
                if self._stretch_ranges is None:
                    if values.dtype == np.uint8:
                        channels.append(values)
                        continue
                    scaled = np.nan_to_num(values.astype(np.float32), nan=0.0, posinf=255, neginf=0)
                else:
                    low, high = self._stretch_ranges[band]
                    scaled = (values.astype(np.float32) - np.float32(low)) * np.float32(255.0 / (high - low))
                    scaled = np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0)
                channels.append(np.clip(np.rint(scaled), 0, 255).astype(np.uint8))
            rgb = np.stack(channels, axis=-1)
            # GDAL's rule for per-band nodata: a pixel is empty only when every band is;
            # a pixel with NaN in any shown band cannot be drawn, so it is empty too.
            pixel_valid = valid.any(axis=0)
            if data.dtype.kind == "f":
                pixel_valid &= np.isfinite(data).all(axis=0)
        rgb[~pixel_valid] = 0
        return rgb, pixel_valid

    def read_rgb(
        self, window: Window, out_hw: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(uint8 H x W x 3, bool H x W valid) for ``window``; resampled to ``out_hw`` if given.

        A window reaching past the raster's edge is read where it overlaps the raster and
        reported invalid elsewhere.
        """
        width, height = int(window.width), int(window.height)
        if width <= 0 or height <= 0:
            raise ValueError(f"window must have a positive size, got {width} x {height}")
        out_h, out_w = (height, width) if out_hw is None else (int(out_hw[0]), int(out_hw[1]))
        if out_h <= 0 or out_w <= 0:
            raise ValueError(f"out_hw must be positive, got {out_hw}")
        col0, row0 = int(window.col_off), int(window.row_off)
        inter_c0, inter_r0 = max(col0, 0), max(row0, 0)
        inter_c1, inter_r1 = min(col0 + width, self.width), min(row0 + height, self.height)
        rgb = np.zeros((out_h, out_w, 3), dtype=np.uint8)
        valid = np.zeros((out_h, out_w), dtype=bool)
        if inter_c1 <= inter_c0 or inter_r1 <= inter_r0:
            return rgb, valid
        sx, sy = out_w / width, out_h / height
        dst_c0, dst_r0 = round((inter_c0 - col0) * sx), round((inter_r0 - row0) * sy)
        dst_c1, dst_r1 = round((inter_c1 - col0) * sx), round((inter_r1 - row0) * sy)
        if dst_c1 <= dst_c0 or dst_r1 <= dst_r0:
            return rgb, valid
        inside = rasterio.windows.Window(inter_c0, inter_r0, inter_c1 - inter_c0, inter_r1 - inter_r0)
        sub_hw = (dst_r1 - dst_r0, dst_c1 - dst_c0)
        resampled = sub_hw != (inside.height, inside.width)
        resampling = Resampling.nearest if self._palette_lut is not None else Resampling.average
        data, band_valid = self._read_arrays(
            self._read_indexes, inside, sub_hw if resampled else None, resampling
        )
        sub_rgb, sub_valid = self._to_rgb(data, band_valid)
        rgb[dst_r0:dst_r1, dst_c0:dst_c1] = sub_rgb
        valid[dst_r0:dst_r1, dst_c0:dst_c1] = sub_valid
        return rgb, valid

    # ------------------------------------------------------------------ regions
    def region_window(
        self, bounds: Sequence[float], crs: Any | None = None
    ) -> Window:
        """The pixel window covering a map extent (minx, miny, maxx, maxy), clamped to the raster.

        ``crs`` is the extent's CRS (anything pyproj accepts); None means the raster's own.
        The extent's outline is densified, reprojected, and taken through the inverse of the
        full geotransform, so rotated rasters and curved reprojections are covered.
        """
        try:
            minx, miny, maxx, maxy = (float(v) for v in bounds)
        except (TypeError, ValueError) as exc:
            raise RasterError(
                "A region must be four numbers: min x, min y, max x, max y."
            ) from exc
        if not all(map(math.isfinite, (minx, miny, maxx, maxy))) or not (maxx > minx and maxy > miny):
            raise RasterError(
                f"The region ({minx:g}, {miny:g}, {maxx:g}, {maxy:g}) is not a valid extent: "
                "give min x, min y, max x, max y with max greater than min."
            )
        xs, ys = _densified_outline(minx, miny, maxx, maxy)
        if crs is not None:
            region_crs = _parse_crs(crs)
            if self.crs is None:
                raise RasterError(
                    f"The region is given in {region_crs.name} but the raster {self.path.name} has "
                    "no CRS; give the region in the raster's own coordinates or pixels."
                )
            if not region_crs.equals(self.crs):
                transformer = Transformer.from_crs(region_crs, self.crs, always_xy=True)
                xs, ys = transformer.transform(xs, ys, errcheck=False)
                finite = np.isfinite(xs) & np.isfinite(ys)
                if not finite.any():
                    raise RasterError(
                        f"The region cannot be expressed in the raster's CRS ({self.crs.name}); "
                        "check the region's CRS."
                    )
                xs, ys = np.asarray(xs)[finite], np.asarray(ys)[finite]
        inverse = ~self.transform
        cols = inverse.a * xs + inverse.b * ys + inverse.c
        rows = inverse.d * xs + inverse.e * ys + inverse.f
        col0 = max(0, math.floor(float(np.min(cols)) + 1e-9))
        row0 = max(0, math.floor(float(np.min(rows)) + 1e-9))
        col1 = min(self.width, math.ceil(float(np.max(cols)) - 1e-9))
        row1 = min(self.height, math.ceil(float(np.max(rows)) - 1e-9))
        if col1 <= col0 or row1 <= row0:
            raise RasterError(
                f"The region lies outside the raster {self.path.name}; draw it over the image "
                "(and check the region's CRS)."
            )
        if col1 - col0 < MIN_REGION_PX or row1 - row0 < MIN_REGION_PX:
            raise RasterError(
                f"The region covers only {col1 - col0} x {row1 - row0} pixels of the raster; "
                f"draw a region at least {MIN_REGION_PX} pixels across."
            )
        return Window(col0, row0, col1 - col0, row1 - row0)

    def __repr__(self) -> str:
        crs = self.crs.to_string() if self.crs is not None else "no CRS"
        return f"RasterSource({str(self.path)!r}, {self.width}x{self.height}, bands={self.bands}, {crs})"


def _parse_crs(crs: Any) -> CRS:
    try:
        return _as_pyproj(crs) if hasattr(crs, "to_wkt") else CRS.from_user_input(crs)
    except Exception as exc:  # noqa: BLE001 - pyproj raises CRSError and others
        raise RasterError(
            f"The region's CRS {crs!r} is not a CRS PROJ knows; give it as 'EPSG:code' or WKT."
        ) from exc


def _densified_outline(
    minx: float, miny: float, maxx: float, maxy: float, points_per_edge: int = 21
) -> tuple[np.ndarray, np.ndarray]:
    """Points along the four edges of an extent: a reprojected edge can bulge."""
    t = np.linspace(0.0, 1.0, points_per_edge)
    xs = np.concatenate([minx + t * (maxx - minx), np.full_like(t, maxx), maxx - t * (maxx - minx), np.full_like(t, minx)])
    ys = np.concatenate([np.full_like(t, miny), miny + t * (maxy - miny), np.full_like(t, maxy), maxy - t * (maxy - miny)])
    return xs, ys
