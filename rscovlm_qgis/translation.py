"""User-visible strings: one translation context and the translator for the QGIS locale.

Every module calls ``tr()`` from here so that all strings share the context ``RSCoVLM``
and one compiled catalogue (``i18n/rscovlm_<locale>.qm`` inside the plugin folder)
translates the whole plugin.
"""

from __future__ import annotations

from pathlib import Path

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import QCoreApplication, QLocale, QTranslator

CONTEXT = "RSCoVLM"
CATALOGUE_DIR = Path(__file__).resolve().parent / "i18n"


def tr(text: str) -> str:
    """Translate ``text`` in the plugin's context (identity when no catalogue is loaded)."""
    return QCoreApplication.translate(CONTEXT, text)


def qgis_locale() -> str:
    """The locale QGIS runs in (e.g. ``zh_CN``), falling back to the system's."""
    return QgsApplication.locale() or QLocale.system().name()


def catalogue_for(locale: str, folder: Path = CATALOGUE_DIR) -> Path | None:
    """The .qm file for ``locale``: the exact one (zh_CN), else the language's (zh)."""
    for name in (locale, locale.split("_")[0]):
        if not name:
            continue
        candidate = folder / f"rscovlm_{name}.qm"
        if candidate.is_file():
            return candidate
    return None


def install_translator(locale: str | None = None) -> QTranslator | None:
    """Load and install the catalogue for the QGIS locale; None when there is none."""
    path = catalogue_for(locale or qgis_locale())
    if path is None:
        return None
    translator = QTranslator()
    if not translator.load(str(path)):
        return None
    QCoreApplication.installTranslator(translator)
    return translator
