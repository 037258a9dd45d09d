"""RasterSource on real GeoTIFFs written here: bands, stretch, masks, reads, regions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Transformer
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning

from rscovlm.errors import UserError
from rscovlm.raster import RasterError, RasterSource
from rscovlm.tiling import Window

UTM = Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 4_650_000.0)


def write_tif(path, data, *, transform=UTM, crs="EPSG:32633", nodata=None, colorinterp=None,
              overviews=None, colormap=None, **profile):
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    count, height, width = data.shape
    if transform is not None:  # None: a plain image without a geotransform
        profile["transform"] = transform
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        dst = rasterio.open(
            path, "w", driver="GTiff", width=width, height=height, count=count, dtype=data.dtype,
            crs=crs, nodata=nodata, **profile,
        )
    with dst:
        dst.write(data)
        if colorinterp:
            dst.colorinterp = colorinterp
        if colormap:
            dst.write_colormap(1, colormap)
        if overviews:
            dst.build_overviews(overviews, Resampling.average)
    return path


def full(src):
    return Window(0, 0, src.width, src.height)


def test_bgra_uint16_uses_colour_interpretation_alpha_and_stretch(tmp_path):
    rng = np.random.default_rng(0)
    h, w = 60, 80
    blue = rng.integers(1000, 2000, (h, w), dtype=np.uint16)
    green = rng.integers(3000, 5000, (h, w), dtype=np.uint16)
    red = np.tile(np.linspace(10_000, 20_000, w).astype(np.uint16), (h, 1))
    alpha = np.full((h, w), 255, dtype=np.uint16)
    alpha[:, :10] = 0
    path = write_tif(
        tmp_path / "bgra.tif", np.stack([blue, green, red, alpha]),
        colorinterp=[ColorInterp.blue, ColorInterp.green, ColorInterp.red, ColorInterp.alpha],
        photometric="MINISBLACK", alpha="UNSPECIFIED",
    )
    with RasterSource.open(path) as src:
        assert src.bands == (3, 2, 1)
        assert any("3,2,1" in note for note in src.notes)
        assert any("alpha" in note for note in src.notes)
        assert any("stretched" in note for note in src.notes)
        rgb, valid = src.read_rgb(full(src))
    assert rgb.dtype == np.uint8 and rgb.shape == (h, w, 3) and valid.shape == (h, w)
    assert not valid[:, :10].any() and valid[:, 10:].all()
    assert (rgb[:, :10] == 0).all()
    # red rises left to right across the valid part: the stretch spans the 8-bit range
    red_out = rgb[0, 10:, 0].astype(int)
    assert (np.diff(red_out) >= 0).all()
    assert red_out[0] <= 5 and red_out[-1] >= 250
    # blue (band 1) went to the blue channel: its mean sits mid-range after stretching
    assert 80 < rgb[valid][:, 2].mean() < 175


def test_uint8_passes_through_unchanged(tmp_path):
    data = np.random.default_rng(1).integers(0, 256, (3, 40, 50), dtype=np.uint8)
    path = write_tif(tmp_path / "rgb.tif", data, photometric="RGB")
    with RasterSource.open(path) as src:
        assert src.bands == (1, 2, 3)
        rgb, valid = src.read_rgb(Window(5, 7, 30, 20))
    np.testing.assert_array_equal(rgb, np.moveaxis(data[:, 7:27, 5:35], 0, -1))
    assert valid.all()


def test_float_with_nan_is_stretched_and_masked(tmp_path):
    data = np.linspace(-1.0, 1.0, 100 * 100, dtype=np.float32).reshape(100, 100)
    data[10:20, 10:20] = np.nan
    path = write_tif(tmp_path / "f.tif", data)  # no nodata value: NaN alone marks holes
    with RasterSource.open(path) as src:
        assert src.bands == (1, 1, 1)
        rgb, valid = src.read_rgb(full(src))
    assert not valid[10:20, 10:20].any()
    assert valid.sum() == 100 * 100 - 100
    assert (rgb[10:20, 10:20] == 0).all()
    assert (rgb[..., 0] == rgb[..., 1]).all()  # grey replicated
    assert rgb[0, 0, 0] == 0 and rgb[-1, -1, 0] == 255
    assert 100 < rgb[50, 50, 0] < 155


def test_nodata_tile_is_all_invalid(tmp_path):
    data = np.full((3, 64, 64), 7, dtype=np.uint8)
    data[:, :, :32] = 0  # the left half is empty
    path = write_tif(tmp_path / "nd.tif", data, nodata=0, photometric="RGB")
    with RasterSource.open(path) as src:
        assert any("nodata" in note for note in src.notes)
        rgb, valid = src.read_rgb(Window(0, 0, 32, 64))
        assert not valid.any() and not rgb.any()
        rgb, valid = src.read_rgb(Window(32, 0, 32, 64))
        assert valid.all() and (rgb == 7).all()


def test_a_pixel_is_empty_only_when_every_band_is_nodata(tmp_path):
    data = np.full((3, 8, 8), 50, dtype=np.uint8)
    data[0, 0, 0] = 0  # red is zero there, but the pixel is real
    data[:, 1, 1] = 0
    path = write_tif(tmp_path / "nd.tif", data, nodata=0, photometric="RGB")
    with RasterSource.open(path) as src:
        rgb, valid = src.read_rgb(full(src))
    assert valid[0, 0] and not valid[1, 1]


def test_palette_is_expanded(tmp_path):
    data = np.zeros((20, 20), dtype=np.uint8)
    data[:, 10:] = 1
    path = write_tif(tmp_path / "pal.tif", data, colormap={0: (255, 0, 0, 255), 1: (0, 0, 255, 255)},
                     photometric="PALETTE")
    with RasterSource.open(path) as src:
        assert any("palette" in note for note in src.notes)
        rgb, valid = src.read_rgb(full(src))
    assert valid.all()
    assert tuple(rgb[0, 0]) == (255, 0, 0) and tuple(rgb[0, 15]) == (0, 0, 255)


def test_user_bands_and_missing_band_message(tmp_path):
    data = np.stack([np.full((8, 8), v, dtype=np.uint8) for v in (10, 20, 30)])
    path = write_tif(tmp_path / "rgb.tif", data)
    with RasterSource.open(path, bands=(3, 1, 2)) as src:
        rgb, _ = src.read_rgb(full(src))
        assert tuple(rgb[0, 0]) == (30, 10, 20)
    with RasterSource.open(path, bands=(2,)) as src:
        rgb, _ = src.read_rgb(full(src))
        assert tuple(rgb[0, 0]) == (20, 20, 20)
    with pytest.raises(RasterError, match=r"^band 4 does not exist: the raster has 3 bands\.$"):
        RasterSource.open(path, bands=(1, 2, 4))
    with pytest.raises(UserError, match="1 band"):
        RasterSource.open(path, bands=(1, 2))


def test_unreadable_inputs_say_what_is_wrong(tmp_path):
    with pytest.raises(RasterError, match="does not exist"):
        RasterSource.open(tmp_path / "nope.tif")
    text = tmp_path / "notes.tif"
    text.write_text("not an image\n")
    with pytest.raises(RasterError, match="not a raster GDAL can read"):
        RasterSource.open(text)
    with pytest.raises(RasterError, match="folder"):
        RasterSource.open(tmp_path)
    # a file cut short: the header opens, the pixels are gone
    data = np.random.default_rng(2).integers(0, 256, (3, 512, 512), dtype=np.uint8)
    good = write_tif(tmp_path / "good.tif", data, tiled=True, blockxsize=256, blockysize=256, photometric="RGB")
    blob = good.read_bytes()
    cut = tmp_path / "cut.tif"
    cut.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(RasterError, match="damaged"):
        with RasterSource.open(cut) as src:
            src.read_rgb(full(src))


def test_georeference_flags(tmp_path):
    data = np.zeros((3, 16, 16), dtype=np.uint8)
    plain = write_tif(tmp_path / "plain.tif", data, transform=None, crs=None)
    with RasterSource.open(plain) as src:
        assert src.georeferenced is False and src.crs is None
        assert any("pixel coordinates" in note for note in src.notes)
    with RasterSource.open(write_tif(tmp_path / "utm.tif", data)) as src:
        assert src.georeferenced is True and src.crs.to_epsg() == 32633
        assert src.transform == UTM


def test_decimated_read_uses_overviews(tmp_path):
    data = np.full((3, 1024, 1024), 100, dtype=np.uint8)
    path = write_tif(tmp_path / "ov.tif", data, overviews=[2, 4, 8], tiled=True, blockxsize=256,
                     blockysize=256, photometric="RGB")
    # Change the full-resolution pixels but not the overviews: only a read served by the
    # overviews still sees 100.
    with rasterio.open(path, "r+") as dst:
        dst.write(np.full((3, 1024, 1024), 200, dtype=np.uint8))
    with RasterSource.open(path) as src:
        small, valid = src.read_rgb(full(src), out_hw=(128, 128))
        assert small.shape == (128, 128, 3) and valid.all()
        assert (small == 100).all()
        tile, _ = src.read_rgb(Window(0, 0, 256, 256))
        assert (tile == 200).all()


def test_decimated_read_without_overviews_averages(tmp_path):
    data = np.zeros((3, 64, 64), dtype=np.uint8)
    data[:, :, 1::2] = 200  # alternating columns average to 100
    path = write_tif(tmp_path / "stripes.tif", data, photometric="RGB")
    with RasterSource.open(path) as src:
        small, valid = src.read_rgb(full(src), out_hw=(32, 32))
    assert valid.all() and (small == 100).all()


def test_stretch_is_the_same_in_every_window(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(5000, 1500, (3, 300, 300)).clip(0, 65535).astype(np.uint16)
    path = write_tif(tmp_path / "u16.tif", data)
    with RasterSource.open(path) as src:
        a, _ = src.read_rgb(Window(0, 0, 200, 200))
        b, _ = src.read_rgb(Window(100, 100, 200, 200))
    np.testing.assert_array_equal(a[100:, 100:], b[:100, :100])


def test_window_past_the_edge_is_invalid_outside(tmp_path):
    data = np.full((3, 50, 50), 9, dtype=np.uint8)
    path = write_tif(tmp_path / "small.tif", data, photometric="RGB")
    with RasterSource.open(path) as src:
        rgb, valid = src.read_rgb(Window(30, 30, 40, 40))
    assert valid[:20, :20].all() and not valid[20:].any() and not valid[:, 20:].any()
    assert (rgb[:20, :20] == 9).all() and not rgb[20:].any()


def test_region_window_from_another_crs(tmp_path):
    path = write_tif(tmp_path / "utm.tif", np.zeros((3, 400, 600), dtype=np.uint8))
    with RasterSource.open(path) as src:
        target = Window(100, 50, 300, 200)
        # the pixel window's map extent, expressed in WGS 84 lon/lat
        left, top = UTM @ (target.col_off, target.row_off)
        right, bottom = UTM @ (target.col_end, target.row_end)
        to_wgs84 = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
        xs, ys = to_wgs84.transform([left, right, right, left], [top, top, bottom, bottom])
        window = src.region_window((min(xs), min(ys), max(xs), max(ys)), crs="EPSG:4326")
        # the geographic box encloses the UTM box, so the window covers it, with a thin margin
        assert window.col_off <= 100 and window.row_off <= 50
        assert window.col_end >= 400 and window.row_end >= 250
        assert 100 - window.col_off < 10 and window.col_end - 400 < 10
        # the raster's own CRS and None agree
        own = src.region_window((left, bottom, right, top))
        assert own == target
        assert src.region_window((left, bottom, right, top), crs="EPSG:32633") == target
        # clamped to the raster
        big = src.region_window((left - 1000, bottom - 1000, right + 1000, top + 1000))
        assert big == Window(0, 0, 600, 400)
        with pytest.raises(RasterError, match="outside"):
            src.region_window((0, 0, 10, 10), crs="EPSG:4326")
        with pytest.raises(RasterError, match="pixels"):
            src.region_window((left, bottom, left + 1, bottom + 1))
        with pytest.raises(RasterError, match="valid extent"):
            src.region_window((right, bottom, left, top))


def test_region_window_on_a_rotated_raster(tmp_path):
    rotated = Affine.translation(1000, 2000) @ Affine.rotation(30) @ Affine.scale(1, -1)
    path = write_tif(tmp_path / "rot.tif", np.zeros((3, 200, 200), dtype=np.uint8), transform=rotated)
    with RasterSource.open(path) as src:
        corners = [rotated @ (c, r) for c, r in ((50, 60), (120, 60), (120, 150), (50, 150))]
        xs, ys = zip(*corners)
        window = src.region_window((min(xs), min(ys), max(xs), max(ys)))
    # The map box around a rotated pixel box maps back to a larger pixel box that holds it.
    inverse = ~rotated
    back = [inverse @ (x, y) for x in (min(xs), max(xs)) for y in (min(ys), max(ys))]
    cols, rows = zip(*back)
    assert window.col_off == max(0, int(np.floor(min(cols) + 1e-9)))
    assert window.row_off == max(0, int(np.floor(min(rows) + 1e-9)))
    assert window.col_off <= 50 and window.row_off <= 60 and window.col_end >= 120 and window.row_end >= 150


def test_region_in_a_crs_needs_a_georeferenced_raster(tmp_path):
    path = write_tif(tmp_path / "plain.tif", np.zeros((3, 30, 30), dtype=np.uint8),
                     transform=None, crs=None)
    with RasterSource.open(path) as src:
        with pytest.raises(RasterError, match="no CRS"):
            src.region_window((0, 0, 10, 10), crs="EPSG:4326")
        assert src.region_window((2, 2, 20, 20)) == Window(2, 2, 18, 18)
