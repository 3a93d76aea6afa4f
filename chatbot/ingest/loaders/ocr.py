"""OCR of a scanned page with Debian's tesseract, run as a child of the parse worker (same limits).

Measured on generated scans (3 pages of rendered text, 300 dpi, 2-core box shared with other jobs):
tesseract 5 (eng) 2.4 pages/s, character accuracy 100%; rapidocr 3.10 (PP-OCRv6 on onnxruntime)
0.21 pages/s, 99.6% (it drops spaces between words). Tesseract is ten times faster and exact, and needs
no Python package: scripts/provision.sh installs it.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from typing import Any, Final

from chatbot.errors import UnreadableDocument

OCR_SECONDS: Final = 60.0  # per page; the worker's CPU and wall-clock budgets bound the whole document


def available() -> bool:
    return shutil.which("tesseract") is not None


def read_image(image: Any) -> str:
    """The text tesseract reads in a PIL image (blank when it reads nothing)."""
    binary = shutil.which("tesseract")
    if binary is None:
        raise UnreadableDocument(
            "The PDF has scanned pages and OCR is not installed on the server (tesseract-ocr).",
            code="ocr_unavailable",
        )
    png = io.BytesIO()
    image.convert("L").save(png, "PNG")
    try:
        done = subprocess.run(  # noqa: S603  # fixed arguments; the image goes in on stdin
            [binary, "stdin", "stdout", "-l", "eng", "--psm", "3"],
            input=png.getvalue(),
            capture_output=True,
            timeout=OCR_SECONDS,
            check=True,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        raise UnreadableDocument("OCR of a scanned page failed.") from exc
    return done.stdout.decode("utf-8", errors="replace").replace("\f", "\n")
