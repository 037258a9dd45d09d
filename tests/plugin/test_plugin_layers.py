"""GeoJSON results become categorized layers in the right CRS, and export round-trips."""

from __future__ import annotations

import pytest
from qgis.core import (
    NULL,
    QgsCategorizedSymbolRenderer,
    QgsCoordinateReferenceSystem,
    QgsVectorLayer,
    QgsWkbTypes,
)

from rscovlm_qgis.layers import (
    ExportError,
    apply_filter,
    crs_of_collection,
    detections_layer,
    export_layer,
    filter_expression,
    has_scores,
)

UTM33_WKT = QgsCoordinateReferenceSystem("EPSG:32633").toWkt(QgsCoordinateReferenceSystem.WKT_PREFERRED)


def quad(x: float, y: float, w: float = 30.0, h: float = 12.0) -> list[list[list[float]]]:
    return [[[x, y], [x + w, y], [x + w, y + h], [x, y + h], [x, y]]]


def collection(crs_name: str | None = "EPSG:32633", crs_wkt: str | None = UTM33_WKT) -> dict:
    features = [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": quad(500000, 4500000)},
         "properties": {"class": "plane", "support": 2, "tile": "c0_r0", "area_m2": 360.0, "score": 0.91}},
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": quad(500100, 4500050, 60, 20)},
         "properties": {"class": "ship", "support": 1, "tile": "c412_r0", "area_m2": 1200.0, "score": 0.35}},
        {"type": "Feature", "geometry": {"type": "MultiPolygon",
                                         "coordinates": [quad(500200, 4500000, 8, 4), quad(500220, 4500000, 8, 4)]},
         "properties": {"class": "small vehicle", "support": 1, "tile": "c412_r412_256x256", "area_m2": 32.0,
                        "score": None}},
    ]
    fc: dict = {"type": "FeatureCollection", "features": features}
    if crs_name:
        fc["crs"] = {"type": "name", "properties": {"name": crs_name}}
    if crs_wkt:
        fc["crs_wkt"] = crs_wkt
    return fc


def test_collection_becomes_a_categorized_layer_in_its_crs(qgis_app):
    layer = detections_layer(collection(), "detections")

    assert layer.isValid()
    assert layer.crs().authid() == "EPSG:32633"
    assert layer.geometryType() == QgsWkbTypes.PolygonGeometry
    assert [f.name() for f in layer.fields()] == ["class", "support", "tile", "area_m2", "score"]
    assert layer.featureCount() == 4  # the multipolygon's two parts become two features
    renderer = layer.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer)
    assert renderer.classAttribute() == "class"
    assert [c.value() for c in renderer.categories()] == ["plane", "ship", "small vehicle"]
    colours = {c.symbol().symbolLayer(0).strokeColor().name() for c in renderer.categories()}
    assert len(colours) == 3
    assert layer.labelsEnabled() and layer.labeling().settings().fieldName == "class"
    assert layer.attributeDisplayName(layer.fields().indexOf("area_m2")) == "Area (m²)"
    assert layer.attributeDisplayName(layer.fields().indexOf("score")) == "Score"
    ship = next(f for f in layer.getFeatures() if f["class"] == "ship")
    assert ship["support"] == 1 and ship["tile"] == "c412_r0" and ship["area_m2"] == pytest.approx(1200.0)
    assert ship["score"] == pytest.approx(0.35)
    assert all(f["score"] is None or f["score"] == NULL for f in layer.getFeatures() if f["class"] == "small vehicle")
    assert ship.geometry().area() == pytest.approx(60 * 20)


def test_crs_from_urn_name_or_wkt_alone(qgis_app):
    assert crs_of_collection(collection("urn:ogc:def:crs:EPSG::32633", None)).authid() == "EPSG:32633"
    from_wkt = crs_of_collection(collection(None, UTM33_WKT))
    assert from_wkt.isValid() and from_wkt == QgsCoordinateReferenceSystem("EPSG:32633")
    assert not crs_of_collection(collection(None, None)).isValid()


def test_raster_crs_is_the_fallback_when_the_collection_names_none(qgis_app):
    layer = detections_layer(collection(None, None), "x", QgsCoordinateReferenceSystem("EPSG:32633"))
    assert layer.crs().authid() == "EPSG:32633"


@pytest.mark.parametrize("suffix", [".shp", ".gpkg", ".geojson"])
def test_export_reads_back_with_crs_fields_and_features(qgis_app, tmp_path, suffix):
    layer = detections_layer(collection(), "detections")
    target = export_layer(layer, tmp_path / f"result{suffix}")

    assert target == tmp_path / f"result{suffix}"
    back = QgsVectorLayer(str(target), "back", "ogr")
    assert back.isValid()
    assert back.crs().authid() == "EPSG:32633"
    names = [f.name() for f in back.fields()]
    for expected in ("class", "support", "tile", "area_m2", "score"):
        assert expected in names
    assert back.featureCount() == 4
    assert sorted(f["class"] for f in back.getFeatures()) == ["plane", "ship", "small vehicle", "small vehicle"]
    if suffix == ".shp":
        assert target.with_suffix(".prj").is_file()
    leftovers = [p.name for p in tmp_path.iterdir() if ".tmp" in p.name]
    assert leftovers == []


def test_export_replaces_an_existing_shapefile_and_its_sidecars(qgis_app, tmp_path):
    target = tmp_path / "result.shp"
    export_layer(detections_layer(collection(), "first"), target)
    stale_index = target.with_suffix(".qix")
    stale_index.write_bytes(b"stale")
    smaller = collection()
    smaller["features"] = smaller["features"][:1]
    export_layer(detections_layer(smaller, "second"), target)

    assert QgsVectorLayer(str(target), "back", "ogr").featureCount() == 1
    assert not stale_index.exists()


def test_export_refuses_unknown_extension_with_a_sentence(qgis_app, tmp_path):
    with pytest.raises(ExportError, match=r"\.shp, \.gpkg or \.geojson"):
        export_layer(detections_layer(collection(), "x"), tmp_path / "result.kml")
    assert list(tmp_path.iterdir()) == []


def classes_shown(layer) -> list[str]:
    return sorted(f["class"] for f in layer.getFeatures())


def test_a_minimum_score_and_support_hide_objects_and_clearing_them_shows_all(qgis_app):
    layer = detections_layer(collection(), "detections")
    assert filter_expression() == "" and filter_expression(0.5, 2) == '"score" >= 0.5 AND "support" >= 2'
    assert apply_filter(layer, min_score=0.5)
    assert classes_shown(layer) == ["plane"]  # the ship scored 0.35; the unscored vehicle has nothing to vouch
    assert apply_filter(layer, min_score=0.3)
    assert classes_shown(layer) == ["plane", "ship"]
    assert apply_filter(layer, min_support=2) and classes_shown(layer) == ["plane"]
    assert apply_filter(layer) and layer.subsetString() == "" and layer.featureCount() == 4
    assert has_scores(layer)
    unscored = collection()
    for feature in unscored["features"]:
        feature["properties"]["score"] = None
    assert not has_scores(detections_layer(unscored, "old engine"))


def test_the_detect_panels_score_slider_filters_the_last_result(qgis_iface, qtbot):
    from rscovlm_qgis.detect_panel import DetectPanel
    from rscovlm_qgis.settings import PluginSettings

    panel = DetectPanel(qgis_iface, PluginSettings)
    qtbot.addWidget(panel)
    panel.last_layer = detections_layer(collection(), "detections")
    panel.min_score.setValue(50)  # the user slides to 0.50
    assert panel.min_score_label.text() == "≥ 0.50" and classes_shown(panel.last_layer) == ["plane"]
    panel.min_score.setValue(0)
    assert panel.last_layer.featureCount() == 4
    panel.min_support.setValue(2)
    assert classes_shown(panel.last_layer) == ["plane"]

    unscored = collection()
    for feature in unscored["features"]:
        feature["properties"]["score"] = None
    panel.min_support.setValue(1)
    panel.min_score.setValue(80)
    panel.last_layer = detections_layer(unscored, "old engine")
    panel.filter_last_layer()  # as a new result arrives: nothing to filter by, so nothing is hidden
    assert not panel.min_score.isEnabled() and "no scores" in panel.min_score.toolTip()
    assert panel.last_layer.featureCount() == 4
