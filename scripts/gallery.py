"""Make the README gallery: small copies of a reproduction's figures in docs/.

Usage: .venv/bin/python scripts/gallery.py reproduction
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

WIDTH = 900


def main(folder: str) -> None:
    docs = Path(__file__).resolve().parents[1] / "docs"
    docs.mkdir(exist_ok=True)
    for index in range(1, 7):
        source = Path(folder) / f"fig{index}.png"
        image = Image.open(source)
        height = round(image.height * WIDTH / image.width)
        small = image.convert("RGB").resize((WIDTH, height), Image.LANCZOS)
        small.save(docs / f"fig{index}.png", optimize=True)
        print(docs / f"fig{index}.png")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reproduction")
