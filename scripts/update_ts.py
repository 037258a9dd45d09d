#!/usr/bin/env python3
"""Refresh the plugin's Qt translation sources (i18n/*.ts) from the tr("...") calls.

pylupdate5 does not see tr() as a plain function in context "RSCoVLM", so the strings are
found with ast instead: every tr("literal") in rscovlm_qgis/*.py, plus the DOTA class
names (translated through tr(name) at run time). Existing translations are kept; strings
no longer in the code are marked vanished so lrelease leaves them out.

Usage: python scripts/update_ts.py [i18n/rscovlm_zh_CN.ts ...]   (default: every i18n/*.ts)
"""

from __future__ import annotations

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "rscovlm_qgis"
CONTEXT = "RSCoVLM"


def strings_in(path: Path) -> list[str]:
    """tr("...") literals and the DOTA_CLASSES tuple of one module, in source order."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
            first = node.args[0]
            if name == "tr" and isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.append(first.value)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and any(
            getattr(t, "id", "") == "DOTA_CLASSES" for t in getattr(node, "targets", [getattr(node, "target", None)])
        ):
            found.extend(e.value for e in getattr(node.value, "elts", []) if isinstance(e, ast.Constant))
    return found


def source_strings(folder: Path = PLUGIN) -> list[str]:
    seen: dict[str, None] = {}
    for path in sorted(folder.glob("*.py")):
        for text in strings_in(path):
            seen.setdefault(text, None)
    return list(seen)


def existing_translations(ts: Path) -> dict[str, str]:
    if not ts.is_file():
        return {}
    root = ET.parse(ts).getroot()
    known = {}
    for message in root.iter("message"):
        source, translation = message.findtext("source"), message.find("translation")
        if source is not None and translation is not None and translation.text:
            known[source] = translation.text
    return known


def write_ts(ts: Path, strings: list[str], translations: dict[str, str], language: str) -> tuple[int, int]:
    root = ET.Element("TS", version="2.1", language=language)
    context = ET.SubElement(root, "context")
    ET.SubElement(context, "name").text = CONTEXT
    missing = 0
    for text in strings:
        message = ET.SubElement(context, "message")
        ET.SubElement(message, "source").text = text
        translation = ET.SubElement(message, "translation")
        if text in translations:
            translation.text = translations[text]
        else:
            translation.set("type", "unfinished")
            missing += 1
    for text in sorted(set(translations) - set(strings)):
        message = ET.SubElement(context, "message")
        ET.SubElement(message, "source").text = text
        old = ET.SubElement(message, "translation", type="vanished")
        old.text = translations[text]
    ET.indent(root)
    ts.parent.mkdir(parents=True, exist_ok=True)
    with ts.open("wb") as handle:
        handle.write(b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE TS>\n')
        handle.write(ET.tostring(root, encoding="utf-8"))
        handle.write(b"\n")
    return len(strings), missing


def main(argv: list[str]) -> int:
    targets = [Path(a) for a in argv] or sorted((REPO / "i18n").glob("*.ts")) or [REPO / "i18n" / "rscovlm_zh_CN.ts"]
    strings = source_strings()
    for ts in targets:
        language = ts.stem.split("_", 1)[1] if "_" in ts.stem else ts.stem
        total, missing = write_ts(ts, strings, existing_translations(ts), language)
        print(f"{ts}: {total} strings, {missing} without a translation")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
