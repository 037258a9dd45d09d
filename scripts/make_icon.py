"""Draw the plugin icon (resources/icon.png, 64x64) with QPainter.

Run with the project's venv: ``.venv/bin/python scripts/make_icon.py``. The icon is an
aerial tile with two oriented detection boxes: what the plugin does, at toolbar size.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from qgis.PyQt.QtCore import QPointF, QRectF, Qt  # noqa: E402
from qgis.PyQt.QtGui import QColor, QGuiApplication, QImage, QPainter, QPen, QPolygonF  # noqa: E402

SIZE = 64


def rotated_box(cx: float, cy: float, w: float, h: float, angle_deg: float) -> QPolygonF:
    from math import cos, radians, sin

    a = radians(angle_deg)
    corners = [(-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)]
    return QPolygonF([QPointF(cx + x * cos(a) - y * sin(a), cy + x * sin(a) + y * cos(a)) for x, y in corners])


def draw() -> QImage:
    image = QImage(SIZE, SIZE, QImage.Format_ARGB32)
    image.fill(Qt.transparent)
    p = QPainter(image)
    p.setRenderHint(QPainter.Antialiasing)
    p.setPen(Qt.NoPen)
    p.setBrush(QColor("#5b6b4e"))  # fields
    p.drawRoundedRect(QRectF(2, 2, 60, 60), 8, 8)
    p.setBrush(QColor("#8a8f96"))  # a runway
    p.drawPolygon(rotated_box(32, 32, 78, 12, -35))
    p.setBrush(QColor("#3d6fa3"))  # water
    p.drawPolygon(QPolygonF([QPointF(40, 62), QPointF(62, 40), QPointF(62, 54), QPointF(54, 62)]))
    p.setBrush(Qt.NoBrush)
    p.setPen(QPen(QColor("#ff3b30"), 3))
    p.drawPolygon(rotated_box(22, 22, 22, 12, -35))
    p.setPen(QPen(QColor("#ffd60a"), 3))
    p.drawPolygon(rotated_box(44, 44, 18, 9, 20))
    p.end()
    return image


def main() -> int:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 - painting needs one
    target = Path(__file__).resolve().parents[1] / "resources" / "icon.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not draw().save(str(target), "PNG"):
        print(f"could not write {target}", file=sys.stderr)
        return 1
    print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
