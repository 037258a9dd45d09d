"""The Processing algorithms through `processing.run`, against the real backend."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsRasterLayer, QgsSettings, QgsVectorLayer

from rscovlm_qgis.processing_provider import RSCoVLMProvider


@pytest.fixture()
def provider(qgis_processing, backend):
    """The provider registered as the plugin does, with the plugin's settings pointing at the backend."""
    store = QgsSettings()
    saved = {key: store.value(f"rscovlm/{key}") for key in ("backend_url", "token_file", "max_new_tokens")}
    store.setValue("rscovlm/backend_url", backend.url)
    store.setValue("rscovlm/token_file", str(backend.token_file))
    store.setValue("rscovlm/max_new_tokens", 32)
    provider = RSCoVLMProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    yield provider
    QgsApplication.processingRegistry().removeProvider(provider)
    for key, value in saved.items():
        if value is None:
            store.remove(f"rscovlm/{key}")
        else:
            store.setValue(f"rscovlm/{key}", value)


def test_the_provider_offers_both_algorithms(provider):
    ids = sorted(a.id() for a in provider.algorithms())
    assert ids == ["rscovlm:askaboutregion", "rscovlm:detectobjects"]


def test_detect_objects_writes_a_gpkg_in_the_rasters_crs(provider, small_scene, tmp_path):
    import processing

    target = tmp_path / "detections.gpkg"
    raster = QgsRasterLayer(str(small_scene), "scene")
    e = raster.extent()
    extent = f"{e.xMinimum()},{e.center().x()},{e.yMinimum()},{e.center().y()} [{raster.crs().authid()}]"
    result = processing.run("rscovlm:detectobjects", {
        "INPUT": str(small_scene), "CLASSES": "ship, plane", "TILE_SIZE": 256, "OVERLAP": 32,
        "MAX_MODE": False, "EXTENT": extent, "OUTPUT": str(target),
    })
    back = QgsVectorLayer(result["OUTPUT"], "back", "ogr")
    assert back.isValid() and back.crs() == raster.crs()
    assert [f.name() for f in back.fields()][-5:] == ["class", "support", "tile", "area_m2", "score"]


def test_detect_objects_refuses_a_bad_overlap_with_a_sentence(provider, small_scene, tmp_path):
    import processing

    with pytest.raises(QgsProcessingException, match="overlap"):
        processing.run("rscovlm:detectobjects", {
            "INPUT": str(small_scene), "TILE_SIZE": 128, "OVERLAP": 200, "OUTPUT": str(tmp_path / "x.gpkg"),
        })


def test_ask_about_a_region_returns_an_answer_string(provider, small_scene, tmp_path):
    import processing

    result = processing.run("rscovlm:askaboutregion", {
        "INPUT": str(small_scene), "QUESTION": "How many ships are there?", "ZOOM": False,
        "OUTPUT_ROI": str(tmp_path / "roi.gpkg"),
    })
    assert isinstance(result["ANSWER"], str)
    assert QgsVectorLayer(result["OUTPUT_ROI"], "roi", "ogr").isValid()
