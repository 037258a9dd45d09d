"""RasterSource on real GeoTIFFs written here: bands, stretch, masks, reads, regions."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import warnings

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS, Transformer
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import NotGeoreferencedWarning

from rscovlm.errors import UserError
from rscovlm.geometry import quads_to_polygons
from rscovlm.georef import map_to_pixel, pixel_to_map, polygon_areas_m2
from rscovlm.raster import GDALPointMapping, RasterError, RasterSource
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


# --- rasters placed by ground control points, RPCs, compound CRSs --------------------------

#: the geotransform and CRS of rasterio's RGB.byte.tif (Landsat, 300 m pixels, UTM 18N)
LANDSAT = Affine(300.0379266750948, 0.0, 101985.0, 0.0, -300.041782729805, 2826915.0)
LANDSAT_CRS = "EPSG:32618"
LANDSAT_HW = (718, 791)
#: detections in image pixels: inside, on the far corner, and a small one in the middle
DETECTIONS = np.array([
    [10.5, 20.25, 60.0, 25.0, 55.0, 80.0, 5.0, 75.0],
    [700.0, 600.0, 790.0, 600.0, 790.0, 718.0, 700.0, 718.0],
    [395.0, 359.0, 400.5, 359.0, 400.5, 364.5, 395.0, 364.5],
])


def landsat_like(path, transform=LANDSAT, crs=LANDSAT_CRS):
    data = np.random.default_rng(3).integers(1, 255, (3, *LANDSAT_HW), dtype=np.uint8)
    return write_tif(path, data, transform=transform, crs=crs, photometric="RGB")


def gcps_from(transform, to_crs=None, steps=4):
    """A grid of GCPs that say where pixels are according to ``transform`` (in ``to_crs``)."""
    from rasterio.control import GroundControlPoint

    height, width = LANDSAT_HW
    project = None if to_crs is None else Transformer.from_crs(LANDSAT_CRS, to_crs, always_xy=True)
    gcps = []
    for row in np.linspace(0, height, steps):
        for col in np.linspace(0, width, steps):
            x, y = transform @ (col, row)
            if project is not None:
                x, y = project.transform(x, y)
            gcps.append(GroundControlPoint(row=float(row), col=float(col), x=float(x), y=float(y)))
    return gcps


def write_gcp_tif(path, gcps, gcp_crs):
    """A GeoTIFF with GCPs and no geotransform, like a scan placed in the QGIS Georeferencer."""
    data = np.random.default_rng(3).integers(1, 255, (3, *LANDSAT_HW), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=LANDSAT_HW[1], height=LANDSAT_HW[0], count=3,
                           dtype="uint8", photometric="RGB") as dst:
            dst.write(data)
            dst.gcps = (gcps, rasterio.crs.CRS.from_user_input(gcp_crs))
    return path


def write_vrt(path, source, *, srs_wkt=None, geotransform=None, gcps=None, gcp_srs_wkt=None):
    """A VRT over ``source``'s three bands: what gdal_translate -of VRT writes, by hand."""
    from xml.sax.saxutils import quoteattr

    height, width = LANDSAT_HW
    parts = [f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">']
    if srs_wkt:
        parts.append(f'<SRS dataAxisToSRSAxisMapping="1,2">{srs_wkt}</SRS>')
    if geotransform is not None:
        parts.append(f"<GeoTransform>{', '.join(repr(float(v)) for v in geotransform)}</GeoTransform>")
    if gcps:
        parts.append(f'<GCPList Projection={quoteattr(gcp_srs_wkt)} dataAxisToSRSAxisMapping="2,1">')
        parts += [f'<GCP Id="{k}" Pixel="{g.col!r}" Line="{g.row!r}" X="{g.x!r}" Y="{g.y!r}" />'
                  for k, g in enumerate(gcps)]
        parts.append("</GCPList>")
    for band, colour in zip((1, 2, 3), ("Red", "Green", "Blue")):
        parts.append(
            f'<VRTRasterBand dataType="Byte" band="{band}"><ColorInterp>{colour}</ColorInterp>'
            f'<SimpleSource><SourceFilename relativeToVRT="0">{source}</SourceFilename>'
            f"<SourceBand>{band}</SourceBand></SimpleSource></VRTRasterBand>"
        )
    parts.append("</VRTDataset>")
    path.write_text("\n".join(parts))
    return path


def test_gcps_that_fit_an_affine_become_that_geotransform(tmp_path):
    reference = landsat_like(tmp_path / "ref.tif")
    placed = write_gcp_tif(tmp_path / "gcp.tif", gcps_from(LANDSAT, steps=3), LANDSAT_CRS)
    with RasterSource.open(reference) as ref, RasterSource.open(placed) as src:
        assert src.georeferenced and src.crs.equals(ref.crs)
        assert isinstance(src.transform, Affine) and src.transform.almost_equals(LANDSAT, precision=1e-6)
        assert any("georeferenced through 9 ground control points" in note for note in src.notes), src.notes
        mapped = pixel_to_map(DETECTIONS, src.transform)
        np.testing.assert_allclose(mapped, pixel_to_map(DETECTIONS, ref.transform), rtol=0, atol=1e-3)
        # areas in m², not pixels counted as square metres
        areas = polygon_areas_m2(quads_to_polygons(mapped), src.crs)
        assert areas[2] == pytest.approx(5.5 * 5.5 * 300.0379266750948 * 300.041782729805, rel=1e-6)
        bounds = (150_000.0, 2_700_000.0, 200_000.0, 2_750_000.0)
        assert src.region_window(bounds) == ref.region_window(bounds)


def test_gcps_in_another_crs_are_used_through_gdals_gcp_transformer(tmp_path):
    """RGB.byte.gcp.vrt style: an identity geotransform labelled UTM, GCPs in WGS 84 lon/lat."""
    reference = landsat_like(tmp_path / "ref.tif")
    pixels = landsat_like(tmp_path / "pixels.tif", transform=None, crs=None)
    gcps = gcps_from(LANDSAT, to_crs="EPSG:4326")
    vrt = write_vrt(tmp_path / "gcp.vrt", pixels, srs_wkt=CRS(LANDSAT_CRS).to_wkt("WKT1_GDAL"),
                    geotransform=(0, 1, 0, 0, 0, 1), gcps=gcps, gcp_srs_wkt=CRS(4326).to_wkt("WKT1_GDAL"))
    with RasterSource.open(reference) as ref, RasterSource.open(vrt) as src:
        # the GCPs' CRS, never the label of the meaningless identity geotransform
        assert src.georeferenced and src.crs.equals(CRS(4326))
        assert isinstance(src.transform, GDALPointMapping)
        note = next(n for n in src.notes if "ground control points" in n)
        assert "georeferenced through 16 ground control points" in note and "polynomial" in note
        mapped = pixel_to_map(DETECTIONS, src.transform).reshape(-1, 2)
        expected = pixel_to_map(DETECTIONS, ref.transform).reshape(-1, 2)
        back_x, back_y = Transformer.from_crs(4326, LANDSAT_CRS, always_xy=True).transform(mapped[:, 0], mapped[:, 1])
        miss_m = np.hypot(back_x - expected[:, 0], back_y - expected[:, 1])
        assert miss_m.max() < 300.0, miss_m  # within a pixel
        areas = polygon_areas_m2(quads_to_polygons(mapped.reshape(-1, 8)), src.crs)
        ref_areas = polygon_areas_m2(quads_to_polygons(expected.reshape(-1, 8)), ref.crs)
        np.testing.assert_allclose(areas, ref_areas, rtol=0.02)  # UTM's scale error is ~0.1 %
        # a region maps back to (nearly) the same pixels, in the raster's CRS or another one
        window = src.region_window((-77.0, 24.5, -76.5, 25.0), "EPSG:4326")
        ref_window = ref.region_window((-77.0, 24.5, -76.5, 25.0), "EPSG:4326")
        assert np.abs(np.subtract(window.as_tuple(), ref_window.as_tuple())).max() <= 1
        utm_box = (150_000.0, 2_700_000.0, 200_000.0, 2_750_000.0)
        window = src.region_window(utm_box, LANDSAT_CRS)
        assert np.abs(np.subtract(window.as_tuple(), ref.region_window(utm_box).as_tuple())).max() <= 1


@pytest.mark.skipif(shutil.which("gdaltransform") is None, reason="gdaltransform is not installed")
def test_gcp_mapping_agrees_with_gdaltransform(tmp_path):
    # GCPs with measurement error, as a hand-placed set has: no affine fits them
    gcps = gcps_from(LANDSAT, steps=4)
    noise = np.random.default_rng(5).normal(0.0, 400.0, (len(gcps), 2))
    gcps = [type(g)(row=g.row, col=g.col, x=g.x + dx, y=g.y + dy) for g, (dx, dy) in zip(gcps, noise)]
    placed = write_gcp_tif(tmp_path / "noisy.tif", gcps, LANDSAT_CRS)
    points = DETECTIONS.reshape(-1, 2)
    result = subprocess.run(["gdaltransform", str(placed)], input="".join(f"{x} {y}\n" for x, y in points),
                            capture_output=True, text=True, check=True, timeout=60)
    expected = np.array([[float(v) for v in line.split()[:2]] for line in result.stdout.strip().splitlines()])
    with RasterSource.open(placed) as src:
        assert not isinstance(src.transform, Affine)
        mapped = pixel_to_map(DETECTIONS, src.transform).reshape(-1, 2)
        np.testing.assert_allclose(mapped, expected, rtol=0, atol=1e-3)
        # and back: map -> pixel inverts it to a small fraction of a pixel
        np.testing.assert_allclose(map_to_pixel(mapped.reshape(-1, 8), src.transform), DETECTIONS, atol=0.05)


def test_compound_crs_gives_its_horizontal_part(tmp_path):
    pixels = landsat_like(tmp_path / "pixels.tif", transform=None, crs=None)
    compound = CRS("EPSG:32618+5773")  # UTM 18N + EGM96 height
    vrt = write_vrt(tmp_path / "compd.vrt", pixels, srs_wkt=compound.to_wkt("WKT1_GDAL"),
                    geotransform=LANDSAT.to_gdal())
    gcp_vrt = write_vrt(tmp_path / "compd_gcp.vrt", pixels, gcps=gcps_from(LANDSAT, steps=2),
                        gcp_srs_wkt=compound.to_wkt("WKT1_GDAL"))
    for path in (vrt, gcp_vrt):
        with RasterSource.open(path) as src:
            assert src.georeferenced and not src.crs.is_compound and src.crs.to_epsg() == 32618, path
            assert isinstance(src.transform, Affine) and src.transform.almost_equals(LANDSAT, precision=1e-6)
            assert any("compound" in note and "horizontal" in note for note in src.notes), src.notes


def test_too_few_or_collinear_gcps_and_a_bare_crs_leave_pixel_coordinates(tmp_path):
    from rasterio.control import GroundControlPoint as Gcp

    two = write_gcp_tif(tmp_path / "two.tif", gcps_from(LANDSAT, steps=2)[:2], LANDSAT_CRS)
    line = write_gcp_tif(tmp_path / "line.tif", [Gcp(row=k, col=k, x=100.0 * k, y=-100.0 * k) for k in range(4)],
                         LANDSAT_CRS)
    bare = write_tif(tmp_path / "bare.tif", np.zeros((3, 16, 16), dtype=np.uint8), transform=None, crs="EPSG:32633")
    for path, why in ((two, "only 2 ground control points"), (line, "one line"), (bare, "alone cannot place")):
        with RasterSource.open(path) as src:
            assert src.georeferenced is False and src.crs is None, path
            assert isinstance(src.transform, Affine) and src.transform.is_identity
            assert any(why in note and "pixel coordinates" in note for note in src.notes), src.notes


def write_rpc_tif(path, width=400, height=300):
    """A raster with RPCs that place it on a plain lon/lat grid (0.0001° pixels) at 250 m."""
    from rasterio.rpc import RPC

    def term(index, value=1.0):
        coefficients = [0.0] * 20
        coefficients[index] = value
        return coefficients

    rpcs = RPC(height_off=250.0, height_scale=500.0, lat_off=45.015, lat_scale=0.015, line_den_coeff=term(0),
               line_num_coeff=term(2, -1.0), line_off=height / 2, line_scale=height / 2, long_off=14.02,
               long_scale=0.02, samp_den_coeff=term(0), samp_num_coeff=term(1), samp_off=width / 2,
               samp_scale=width / 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8") as dst:
            dst.write(np.full((3, height, width), 90, dtype=np.uint8))
            dst.rpcs = rpcs
    return path


def test_rpcs_place_the_raster_in_wgs84(tmp_path):
    path = write_rpc_tif(tmp_path / "rpc.tif")
    # GDAL's RPC model puts RPC line/sample on pixel centres: a half-pixel shift from the grid
    grid = Affine(0.0001, 0.0, 14.0, 0.0, -0.0001, 45.03) @ Affine.translation(-0.5, -0.5)
    with RasterSource.open(path) as src:
        assert src.georeferenced and src.crs.to_epsg() == 4326
        assert any("RPCs" in note and "250 m" in note for note in src.notes), src.notes
        quads = np.array([[0.0, 0.0, 400.0, 0.0, 400.0, 300.0, 0.0, 300.0], [100.5, 20.25, 130.0, 22.0, 128.0, 60.0, 99.0, 58.0]])
        np.testing.assert_allclose(pixel_to_map(quads, src.transform), pixel_to_map(quads, grid), rtol=0, atol=1e-7)
        window = src.region_window((14.01, 45.01, 14.02, 45.02), "EPSG:4326")
        assert np.abs(np.subtract(window.as_tuple(), (100, 100, 100, 100))).max() <= 1
        with pytest.raises(RasterError, match="outside"):
            src.region_window((100.0, 10.0, 101.0, 11.0), "EPSG:4326")
    if shutil.which("gdaltransform"):
        result = subprocess.run(["gdaltransform", "-rpc", "-to", "RPC_HEIGHT=250", str(path)], input="100.5 20.25\n",
                                capture_output=True, text=True, check=True, timeout=60)
        expected = [float(v) for v in result.stdout.split()[:2]]
        np.testing.assert_allclose(pixel_to_map(quads, src.transform)[1, :2], expected, rtol=0, atol=1e-9)


# --- files that must be refused at open, with a sentence ------------------------------------


@pytest.mark.parametrize("dtype", ["complex64", "complex128", "complex_int16"])
def test_complex_rasters_are_refused_with_a_way_out(tmp_path, dtype):
    path = tmp_path / "slc.tif"
    with rasterio.open(path, "w", driver="GTiff", width=16, height=16, count=1, dtype=dtype,
                       crs="EPSG:32633", transform=UTM) as dst:
        if dtype != "complex_int16":
            dst.write(np.full((1, 16, 16), 3 + 4j, dtype=dtype))
    with pytest.raises(RasterError, match="complex values") as caught:
        RasterSource.open(path)
    assert "amplitude" in str(caught.value) and "gdal_translate" in str(caught.value)


def _unblock_after(path, seconds=5.0):
    """Open the FIFO for writing after a while so a regressed open fails instead of hanging."""
    def writer():
        time.sleep(seconds)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError:  # nobody is reading it: the open was refused, as it should be
            return
        os.close(fd)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    return thread


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this system")
def test_pipes_and_devices_are_refused_without_waiting(tmp_path):
    fifo = tmp_path / "scene.tif"
    os.mkfifo(fifo)
    _unblock_after(fifo)
    started = time.monotonic()
    with pytest.raises(RasterError, match="named pipe"):
        RasterSource.open(fifo)
    assert time.monotonic() - started < 2.0
    # a device behind a .tif name (a symbolic link to /dev/null)
    device = tmp_path / "null.tif"
    device.symlink_to("/dev/null")
    with pytest.raises(RasterError, match="character device"):
        RasterSource.open(device)
    # a VRT whose pixels come from the pipe: the first read would wait forever
    vrt = write_vrt(tmp_path / "pipe.vrt", fifo, geotransform=LANDSAT.to_gdal())
    with pytest.raises(RasterError, match=r"reads its pixels from .*scene\.tif.*named pipe"):
        RasterSource.open(vrt)
    assert time.monotonic() - started < 2.0


def test_detections_on_a_gcp_raster_come_out_in_map_coordinates(tmp_path):
    """The whole path, replayed from model answers: polygons, CRS and area_m2 as on the original."""
    from rscovlm.pipelines.detect import detect_from_responses
    from rscovlm.responses import ResponseRecord, ResponsesWriter

    reference = landsat_like(tmp_path / "ref.tif")
    pixels = landsat_like(tmp_path / "pixels.tif", transform=None, crs=None)
    vrt = write_vrt(tmp_path / "gcp.vrt", pixels, gcps=gcps_from(LANDSAT, to_crs="EPSG:4326"),
                    gcp_srs_wkt=CRS(4326).to_wkt("WKT1_GDAL"))
    answer = "100,100,200,100,200,160,100,160 plane"  # model-input pixels of a 504 px input
    responses = tmp_path / "r.jsonl"
    with ResponsesWriter(responses) as writer:
        for col in (0, 279):
            for row in (0, 206):
                writer.write(ResponseRecord(col, row, 512, 512, 504, 504, answer if (col, row) == (0, 0) else
                                            "There are none."))
    on_gcps = detect_from_responses(vrt, responses)
    on_affine = detect_from_responses(reference, responses)
    assert on_gcps.crs.equals(CRS(4326)) and on_gcps.gdf.crs.equals(CRS(4326))
    assert len(on_gcps.gdf) == len(on_affine.gdf) == 1
    corners = np.asarray(on_gcps.gdf.geometry[0].exterior.coords)[:4]
    xs, ys = Transformer.from_crs(4326, LANDSAT_CRS, always_xy=True).transform(corners[:, 0], corners[:, 1])
    expected = np.asarray(on_affine.gdf.geometry[0].exterior.coords)[:4]
    assert np.hypot(xs - expected[:, 0], ys - expected[:, 1]).max() < 300.0  # within a pixel
    area = on_gcps.gdf["area_m2"][0]
    assert area == pytest.approx(on_affine.gdf["area_m2"][0], rel=0.02)
    assert area > 1e8  # about 100 x 60 pixels of 300 m, not 6,000 "square metres" of pixels
