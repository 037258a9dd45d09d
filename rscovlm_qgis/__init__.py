"""RSCoVLM for QGIS: oriented object detection on rasters through a local RSCoVLM backend.

The plugin imports nothing beyond QGIS and the standard library; the model runs in the
separate ``rscovlm`` backend, which has its own Python environment.
"""


def classFactory(iface):  # noqa: N802 - the name QGIS looks for
    from .plugin import RSCoVLMPlugin

    return RSCoVLMPlugin(iface)
