"""Renders the app's PNG icons from the two SVGs with headless Chromium (Debian's, as the
browser tests use): `.venv/bin/python devsupport/render_icons.py`. The PNGs are committed; run this
again after changing an SVG. iOS takes only a PNG for the home screen (`apple-touch-icon`),
and Android's install prompt wants 192 and 512 px PNGs in the manifest."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

ICONS = Path(__file__).resolve().parent.parent / "clients" / "web" / "icons"
CHROMIUM = Path("/usr/bin/chromium")
# (source SVG, PNG written, size in px, transparent corners?)
RENDERS = [
    ("icon.svg", "icon-192.png", 192, True),
    ("icon.svg", "icon-512.png", 512, True),
    ("maskable.svg", "maskable-512.png", 512, False),
    # iOS rounds the corners itself and shows transparency as black: a full square.
    ("maskable.svg", "apple-touch-icon.png", 180, False),
]


def render(source: str, target: str, size: int, *, transparent: bool) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--default-background-color={'00000000' if transparent else 'ffffffff'}",
                f"--window-size={size},{size}",
                f"--screenshot={ICONS / target}",
                (ICONS / source).as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )  # fmt: skip
    print(f"{target}: {size}x{size} from {source}")


if __name__ == "__main__":
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is missing: apt-get install chromium")
    for source, target, size, transparent in RENDERS:
        render(source, target, size, transparent=transparent)
