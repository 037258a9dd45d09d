"""Reading any raster a GIS user has as the 8-bit RGB tiles the model wants.

Real imagery is rarely 8-bit RGB in R,G,B order: bands come as B,G,R,A or NIR-first, data
is 16-bit or float, single-band or palette, with nodata values, NaN, alpha bands and
internal masks. This module makes the choices a careful analyst would (colour
interpretation first, a 2-98 % stretch computed once on a decimated read, masks honoured)
and records them in ``notes`` in plain words so the user can see what the model saw.

Georeferencing follows GDAL's own order: the geotransform; without one (GDAL reports the
identity), the ground control points; without those, the RPCs. A raster placed by GCPs or
RPCs gets a :class:`GDALPointMapping` as its ``transform`` (an exact affine when its GCPs
fit one), so ``georef.pixel_to_map(quads, source.transform)`` is right for every raster.
Files that cannot be used are refused at open with a sentence: missing paths, folders,
named pipes and devices (reading one waits forever), complex-valued (SAR) rasters.

Every read is windowed or decimated; the whole array is never read, so memory does not
grow with raster size. Decimated reads (``out_hw``) let GDAL use the file's overviews.
"""

from __future__ import annotations

import math
import os
import shlex
import stat
import threading
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
from rscovlm.georef import points_to_pixel
from rscovlm.tiling import Window

__all__ = ["GDALPointMapping", "RasterError", "RasterSource", "STRETCH_MODES", "MIN_REGION_PX"]

#: GDAL block cache while this module reads: enough for two rows of 512 px blocks across
#: a 60000 px wide RGB raster, small enough to keep the process well under 1 GB.
GDAL_CACHE_BYTES = 256 * 2**20
#: pixels read to compute the stretch percentiles
STATS_PIXELS = 1_000_000
STRETCH_PERCENTILES = (2.0, 98.0)
STRETCH_MODES = ("auto", "percentile", "none")
#: a region narrower than this (in raster pixels) is refused as too small to look at
MIN_REGION_PX = 8
#: GCPs that an affine geotransform fits this closely (in pixels) are used as that affine
GCP_AFFINE_TOLERANCE_PX = 0.05
#: GDAL's polynomial GCP transformer needs at least this many points (order 1)
MIN_GCPS = 3


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


def _special_file_kind(path: Path) -> str | None:
    """'a named pipe (FIFO)', 'a character device', ... for a path that exists but is no
    regular file or folder; None otherwise (or when it cannot be checked)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _rio_window(window: Any) -> rasterio.windows.Window:
    return rasterio.windows.Window(
        int(window.col_off), int(window.row_off), int(window.width), int(window.height)
    )


class GDALPointMapping:
    """Pixel <-> map coordinates through GDAL's GCP or RPC transformer (``georef.PointMapping``).

    It is what gdalwarp uses to place such a raster: the polynomial GCP transformer (order
    chosen by GDAL from the number of points) or the RPC model on flat ground at a given
    height. GDAL's transformer is created for each call, so the mapping holds no handle to
    close, outlives the dataset it came from and can be used from several threads.
    """

    is_identity = False  # for code that asks an Affine whether it places the raster at all

    def __init__(self, kind: str, model: Any, options: dict[str, Any] | None = None) -> None:
        if kind not in ("gcp", "rpc"):
            raise ValueError(f"kind must be 'gcp' or 'rpc', not {kind!r}")
        self.kind = kind
        self._model = list(model) if kind == "gcp" else model
        self._options = dict(options or {})

    @classmethod
    def from_gcps(cls, gcps: Sequence[Any]) -> GDALPointMapping:
        return cls("gcp", gcps)

    @classmethod
    def from_rpcs(cls, rpcs: Any, height: float) -> GDALPointMapping:
        return cls("rpc", rpcs, {"RPC_HEIGHT": float(height)})

    def _transformer(self) -> Any:
        from rasterio.transform import GCPTransformer, RPCTransformer

        if self.kind == "gcp":
            return GCPTransformer(self._model)
        return RPCTransformer(self._model, **self._options)

    def pixel_to_map(self, cols: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cols = np.asarray(cols, dtype=np.float64).reshape(-1)
        rows = np.asarray(rows, dtype=np.float64).reshape(-1)
        if cols.size == 0:
            return np.zeros(0), np.zeros(0)
        with _env(), self._transformer() as transformer:
            xs, ys = transformer.xy(rows, cols, offset="ul")  # "ul": no half-pixel shift
        return _float_array(xs, cols.size), _float_array(ys, cols.size)

    def map_to_pixel(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        xs = np.asarray(xs, dtype=np.float64).reshape(-1)
        ys = np.asarray(ys, dtype=np.float64).reshape(-1)
        if xs.size == 0:
            return np.zeros(0), np.zeros(0)
        with _env(), self._transformer() as transformer:
            # op=np.positive keeps fractional pixels (rasterio floors them by default)
            rows, cols = transformer.rowcol(xs, ys, op=np.positive)
        return _float_array(cols, xs.size), _float_array(rows, xs.size)

    def __repr__(self) -> str:
        what = f"{len(self._model)} GCPs" if self.kind == "gcp" else f"RPCs, {self._options}"
        return f"GDALPointMapping({what})"


def _float_array(values: Any, size: int) -> np.ndarray:
    out = np.asarray(values, dtype=np.float64).reshape(-1)
    return out if out.size == size else np.broadcast_to(out, (size,)).copy()


def _fit_affine(
    cols: np.ndarray, rows: np.ndarray, xs: np.ndarray, ys: np.ndarray
) -> tuple[Affine | None, float]:
    """The least-squares affine pixel -> map through control points, and its largest
    misfit in pixels; (None, inf) when the points cannot define one (collinear)."""
    design = np.column_stack([cols, rows, np.ones_like(cols)])
    if np.linalg.matrix_rank(design) < 3:
        return None, math.inf
    (a, b, c), *_ = np.linalg.lstsq(design, xs, rcond=None)
    (d, e, f), *_ = np.linalg.lstsq(design, ys, rcond=None)
    transform = Affine(a, b, c, d, e, f)
    if not all(map(math.isfinite, (a, b, c, d, e, f))) or abs(a * e - b * d) == 0.0:
        return None, math.inf
    inverse = ~transform
    back_cols = inverse.a * xs + inverse.b * ys + inverse.c
    back_rows = inverse.d * xs + inverse.e * ys + inverse.f
    misfit = float(np.max(np.hypot(back_cols - cols, back_rows - rows)))
    return transform, misfit


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
        # GDAL datasets are not thread-safe: reads take turns, so several reader threads
        # can share one source (decoding is serialised, resizing the tiles is not).
        self._read_lock = threading.Lock()
        try:
            ds = self._dataset
            self.width: int = ds.width
            self.height: int = ds.height
            self.count: int = ds.count
            self.dtype: str = ds.dtypes[0]
            # Affine, or a GDALPointMapping for rasters placed by GCPs/RPCs: either goes
            # to georef.pixel_to_map / georef.map_to_pixel.
            self.transform: Affine | GDALPointMapping = ds.transform
            self.crs: CRS | None = None
            self.georeferenced: bool = False
            self.notes: list[str] = []
            self._palette_lut: np.ndarray | None = None
            self.bands: tuple[int, ...] = self._choose_bands(bands)
            self._georeference()
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
        kind = _special_file_kind(path)
        if kind is not None:  # GDAL would wait forever for a pipe or device to say something
            raise RasterError(
                f"{path} is {kind}, not a regular file, so it cannot be read as a raster; "
                "give the path of an image file on disk."
            )
        try:
            with _env(), warnings.catch_warnings():
                warnings.simplefilter("ignore", NotGeoreferencedWarning)
                dataset = rasterio.open(path)
        except RasterioIOError as exc:
            raise RasterError(
                f"{path.name} is not a raster GDAL can read (it may be damaged or another kind "
                f"of file): {_reason(exc)}."
            ) from exc
        try:
            RasterSource._check_dataset(path, dataset)
        except BaseException:
            dataset.close()
            raise
        return dataset

    @staticmethod
    def _check_dataset(path: Path, dataset: Any) -> None:
        """Refuse, with a sentence, an opened raster that cannot be shown to the model."""
        if dataset.count == 0 or dataset.width == 0 or dataset.height == 0:
            raise RasterError(f"{path.name} has no pixel bands; give an image raster.")
        complex_types = sorted({t for t in dataset.dtypes if str(t).startswith("complex")})
        if complex_types:
            source = shlex.quote(f"DERIVED_SUBDATASET:AMPLITUDE:{path}")
            target = shlex.quote(str(path.with_name(f"{path.stem}_amplitude.tif")))
            raise RasterError(
                f"{path.name} holds complex values ({', '.join(complex_types)}), such as radar "
                "(SAR) single-look complex data, which cannot be shown as an image; convert it "
                f"to amplitude first, for example with: gdal_translate -ot Float32 {source} {target}"
            )
        # A VRT (or a raster with side-car files) reads pixels from other files: a pipe or
        # device among them would hang the first read just as the raster itself would.
        for name in list(dataset.files or [])[1:]:
            kind = _special_file_kind(Path(name))
            if kind is not None:
                raise RasterError(
                    f"{path.name} reads its pixels from {name}, which is {kind}, not a regular "
                    "file; point the raster at image files on disk."
                )

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

    # ------------------------------------------------------------------ georeference
    def _georeference(self) -> None:
        """Set ``transform``, ``crs`` and ``georeferenced`` the way GDAL places the raster."""
        ds = self._dataset
        if not ds.transform.is_identity:
            self._placed(ds.transform, _as_pyproj(ds.crs), "geotransform")
            return
        # GDAL reports the identity when a raster has no geotransform; an explicit identity
        # (rasterio's RGB.byte.gcp.vrt has one) puts pixel numbers where map coordinates
        # belong, which no CRS makes right. The GCPs, else the RPCs, say where pixels are.
        gcps, gcp_crs = ds.gcps
        if gcps:
            self._from_gcps(gcps, gcp_crs)
            return
        rpcs = ds.rpcs
        if rpcs:
            self._from_rpcs(rpcs)
            return
        labelled = _as_pyproj(ds.crs)
        self._unplaced(
            "the raster has no georeference (no geotransform, ground control points or RPCs)"
            + (f"; its CRS {labelled.name} alone cannot place its pixels, so it is not used" if labelled else "")
        )

    def _placed(self, transform: Affine | GDALPointMapping, crs: CRS | None, how: str) -> None:
        self.transform = transform
        self.crs = self._horizontal(crs)
        self.georeferenced = True
        if self.crs is None:
            self.notes.append(
                f"the raster has a {how} but no CRS: results use its coordinates with no CRS "
                "and areas are not computed; assign a CRS to the raster to get map output"
            )

    def _unplaced(self, why: str) -> None:
        self.transform = Affine.identity()
        self.crs = None
        self.georeferenced = False
        self.notes.append(
            f"{why}: results are in pixel coordinates (x to the right, y down), not map coordinates"
        )

    def _horizontal(self, crs: CRS | None) -> CRS | None:
        """A compound CRS (horizontal + vertical) as its horizontal part: outlines are 2-D."""
        if crs is None or not crs.is_compound or not crs.sub_crs_list:
            return crs
        horizontal = crs.sub_crs_list[0]
        self.notes.append(
            f"the raster's CRS {crs.name} is compound (horizontal + height); the outlines are "
            f"2-D, so they are given in its horizontal CRS {horizontal.name}"
        )
        return horizontal

    def _from_gcps(self, gcps: Sequence[Any], gcp_crs: Any) -> None:
        count = len(gcps)
        if count < MIN_GCPS:
            self._unplaced(
                f"the raster has only {count} ground control point{'s' if count != 1 else ''} and "
                f"no geotransform; {MIN_GCPS} or more are needed to place it (add GCPs with the "
                "QGIS Georeferencer)"
            )
            return
        cols = np.array([g.col for g in gcps], dtype=np.float64)
        rows = np.array([g.row for g in gcps], dtype=np.float64)
        xs = np.array([g.x for g in gcps], dtype=np.float64)
        ys = np.array([g.y for g in gcps], dtype=np.float64)
        affine, misfit = _fit_affine(cols, rows, xs, ys)
        if affine is None:
            self._unplaced(
                f"the raster's {count} ground control points lie on one line (or repeat), so "
                "they cannot place it; add GCPs spread over the image"
            )
            return
        if misfit <= GCP_AFFINE_TOLERANCE_PX:
            transform: Affine | GDALPointMapping = affine
            fit = "below 0.01 px" if misfit < 0.01 else f"{misfit:.2f} px"
            how = f": they fit one affine geotransform, which is used (largest misfit {fit})"
        else:
            transform = GDALPointMapping.from_gcps(gcps)
            try:  # GDAL refuses some point sets an affine fit accepts: find out now
                transform.pixel_to_map(np.array([self.width / 2]), np.array([self.height / 2]))
            except Exception as exc:  # noqa: BLE001 - GDAL raises CPLE_* errors, not RasterioError
                self._unplaced(
                    f"GDAL cannot build a transformation from the raster's {count} ground control "
                    f"points ({_reason(exc)}); fix them in the QGIS Georeferencer"
                )
                return
            how = (
                " with GDAL's polynomial GCP transformer, as gdalwarp does (no single affine fits "
                f"them: the best one misses by up to {misfit:.3g} px)"
            )
        self.notes.append(f"georeferenced through {count} ground control points{how}")
        self._placed(transform, _as_pyproj(gcp_crs), "set of ground control points")

    def _from_rpcs(self, rpcs: Any) -> None:
        height = float(rpcs.height_off)
        mapping = GDALPointMapping.from_rpcs(rpcs, height)
        try:
            xs, ys = mapping.pixel_to_map(np.array([self.width / 2]), np.array([self.height / 2]))
        except Exception as exc:  # noqa: BLE001 - GDAL raises CPLE_* errors, not RasterioError
            xs = ys = np.array([np.nan])
            reason = f" ({_reason(exc)})"
        else:
            reason = ""
        if not (np.isfinite(xs).all() and np.isfinite(ys).all()):
            self._unplaced(
                f"the raster's RPCs (rational polynomial coefficients) cannot be used to place it{reason}; "
                "orthorectify it first (gdalwarp -rpc)"
            )
            return
        self.notes.append(
            "georeferenced through its RPCs (rational polynomial coefficients) in WGS 84 "
            f"longitude/latitude, on flat ground {height:g} m above the ellipsoid (the RPCs' "
            "mean height); where the ground is higher or lower, positions shift: orthorectify "
            "with a DEM (gdalwarp -rpc -to RPC_DEM=dem.tif) for exact positions"
        )
        self._placed(mapping, CRS.from_epsg(4326), "set of RPCs")

    # ------------------------------------------------------------------ notes

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
            with self._read_lock, _env():
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
        full geotransform (or of the GCP/RPC mapping), so rotated rasters and curved
        reprojections are covered.
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
        try:
            cols, rows = points_to_pixel(xs, ys, self.transform)
        except Exception as exc:  # noqa: BLE001 - GDAL raises CPLE_* errors, not RasterioError
            raise RasterError(
                f"The region cannot be placed on the raster {self.path.name} through its "
                f"georeference ({_reason(exc)}); give the region in pixels instead."
            ) from exc
        inside = np.isfinite(cols) & np.isfinite(rows)
        if not inside.any():
            raise RasterError(
                f"The region cannot be placed on the raster {self.path.name} through its "
                "georeference; check the region's CRS, or give the region in pixels."
            )
        cols, rows = cols[inside], rows[inside]
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
