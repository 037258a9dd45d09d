"""The Simplified Chinese catalogue: complete, compiled by lrelease, loaded for a zh locale."""

from __future__ import annotations

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from qgis.core import QgsSettings

import rscovlm_qgis
from rscovlm_qgis.translation import CATALOGUE_DIR, tr

REPO = Path(__file__).resolve().parents[2]
TS = REPO / "i18n" / "rscovlm_zh_CN.ts"


def test_every_string_in_the_code_has_a_chinese_translation():
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import update_ts
    finally:
        sys.path.pop(0)
    strings = update_ts.source_strings()
    translations = update_ts.existing_translations(TS)
    missing = [s for s in strings if s not in translations]
    assert missing == [], f"untranslated (run scripts/update_ts.py and translate): {missing[:5]}"
    assert translations["Detect"] == "检测" and translations["ship"] == "船只"
    for source, text in translations.items():  # placeholders survive translation
        for placeholder in ("{name}", "{url}", "{path}", "{count}"):
            assert (placeholder in source) == (placeholder in text), (source, text)
    root = ET.parse(TS).getroot()
    assert root.find("context/name").text == "RSCoVLM"


@pytest.fixture()
def zh_locale():
    lrelease = shutil.which("lrelease")
    if lrelease is None:
        pytest.skip("lrelease (qttools5-dev-tools) is not installed")
    CATALOGUE_DIR.mkdir(exist_ok=True)
    subprocess.run([lrelease, str(TS), "-qm", str(CATALOGUE_DIR / "rscovlm_zh_CN.qm")], check=True, capture_output=True)
    store = QgsSettings()
    saved = (store.value("locale/userLocale"), store.value("locale/overrideFlag"))
    store.setValue("locale/userLocale", "zh_CN")
    store.setValue("locale/overrideFlag", True)
    yield
    for key, value in zip(("locale/userLocale", "locale/overrideFlag"), saved):
        if value is None:
            store.remove(key)
        else:
            store.setValue(key, value)


def test_the_plugin_speaks_chinese_for_a_zh_locale_and_stops_when_unloaded(qgis_iface, zh_locale):
    plugin = rscovlm_qgis.classFactory(qgis_iface)
    plugin.initGui()
    try:
        assert plugin.translator is not None
        assert plugin.action.text() == "RSCoVLM 目标检测"
        tabs = plugin.dock.tabs
        assert [tabs.tabText(i) for i in range(tabs.count())] == ["检测", "提问", "后端"]
        assert plugin.dock.detect_panel.class_boxes["ship"].text() == "船只"
    finally:
        plugin.unload()
    assert tr("Detect") == "Detect"
