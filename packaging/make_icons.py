"""Render the app icon from resources/icons/desktop-app.svg into the raster formats.

    python packaging/make_icons.py

Writes desktop-app.png (512 px, Linux/AppImage and the window icon), desktop-app-256.png,
desktop-app.ico (Windows exe and installer) and desktop-app.icns (macOS bundle). The SVG is
rendered with Qt's own SVG renderer, so the PNG matches what Qt shows from the SVG.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ICONS = Path(__file__).resolve().parent.parent / "resources" / "icons"
SVG = ICONS / "desktop-app.svg"
ICO_SIZES = [(16, 16), (24, 24), (32, 32), (48, 48), (64, 64), (128, 128), (256, 256)]


def render(size: int, target: Path) -> None:
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(SVG))
    if not renderer.isValid():
        raise SystemExit(f"cannot read {SVG}")
    image = QImage(size, size, QImage.Format.Format_ARGB32)
    image.fill(Qt.GlobalColor.transparent)
    painter = QPainter(image)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter)
    painter.end()
    if not image.save(str(target)):
        raise SystemExit(f"cannot write {target}")


def main() -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PIL import Image
    from PySide6.QtGui import QGuiApplication

    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])
    render(1024, ICONS / "desktop-app-1024.png")
    big = Image.open(ICONS / "desktop-app-1024.png").convert("RGBA")
    (ICONS / "desktop-app-1024.png").unlink()
    big.resize((512, 512), Image.Resampling.LANCZOS).save(ICONS / "desktop-app.png")
    big.resize((256, 256), Image.Resampling.LANCZOS).save(ICONS / "desktop-app-256.png")
    big.save(ICONS / "desktop-app.ico", sizes=ICO_SIZES)
    big.save(ICONS / "desktop-app.icns")
    del app
    return 0


if __name__ == "__main__":
    sys.exit(main())
