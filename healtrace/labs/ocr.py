"""Lab results from a photo of a printed report: OCR (rapidocr, bundled zh/en models), then
the table's rows rebuilt from the text boxes' positions and read by the text parser.

rapidocr ships its PP-OCR detection, recognition and orientation models inside the wheel,
so nothing is downloaded at run time. Boxes are grouped into rows by the vertical centre
(a box joins a row when its centre is within half a median box height of the row's), each
row is ordered left to right and joined with tabs — the shape of a table pasted from a
hospital portal, which :func:`healtrace.labs.parse_text.parse_lab_text` already reads.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
import statistics
import threading
from functools import cache
from typing import Any

from healtrace.errors import InputError
from healtrace.labs.parse_text import parse_lab_text
from healtrace.labs.types import ParseWarning, RawResult

#: Larger uploads are refused before decoding.
MAX_IMAGE_BYTES = 10 * 1024 * 1024
#: Decompression-bomb guard: more pixels than this is refused.
MAX_PIXELS = 40_000_000
#: Photos are scaled down to this longest side before OCR (speed; text stays legible).
MAX_SIDE = 2400

_lock = threading.Lock()
_CJK_LATIN = re.compile(r"([\u4e00-\u9fff])([A-Za-z])")
_LATIN_CJK = re.compile(r"([A-Za-z])([\u4e00-\u9fff])")


@cache
def _engine() -> Any:
    from rapidocr import RapidOCR

    logger = logging.getLogger("RapidOCR")
    logger.setLevel(logging.WARNING)
    engine = RapidOCR()
    logger.setLevel(logging.WARNING)  # it resets its own level while loading
    return engine


def _decode(data: bytes) -> Any:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not data:
        raise InputError("empty image", code="labs_not_an_image")
    if len(data) > MAX_IMAGE_BYTES:
        raise InputError("image too large", code="labs_input_too_large", limit=MAX_IMAGE_BYTES)
    try:
        opened = Image.open(io.BytesIO(data))
        if opened.width * opened.height > MAX_PIXELS:
            raise InputError("too many pixels", code="labs_input_too_large", limit=MAX_PIXELS)
        image = ImageOps.exif_transpose(opened).convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InputError("not an image", code="labs_not_an_image") from exc
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    return image


def _rows(boxes: list[tuple[float, float, float, str]]) -> list[str]:
    """``(y_centre, x_left, height, text)`` boxes → table rows, top to bottom."""
    if not boxes:
        return []
    tolerance = statistics.median(b[2] for b in boxes) / 2
    rows: list[list[tuple[float, float, float, str]]] = []
    for box in sorted(boxes):
        if rows:
            row = rows[-1]
            centre = sum(b[0] for b in row) / len(row)
            if abs(box[0] - centre) <= tolerance:
                row.append(box)
                continue
        rows.append([box])
    return ["\t".join(b[3] for b in sorted(row, key=lambda b: b[1])) for row in rows]


def ocr_lines(data: bytes) -> list[str]:
    """The photo's text as table rows."""
    import numpy as np

    image = _decode(data)
    with _lock:  # one inference at a time; the engine is shared
        result = _engine()(np.asarray(image))
    boxes: list[tuple[float, float, float, str]] = []
    quads = result.boxes if result.boxes is not None else ()
    for quad, text in zip(quads, result.txts or (), strict=False):
        ys = [float(p[1]) for p in quad]
        xs = [float(p[0]) for p in quad]
        # OCR drops the space between Chinese and Latin ("钾K"); the text parser and the
        # catalogue's aliases expect it.
        cell = _CJK_LATIN.sub(r"\1 \2", _LATIN_CJK.sub(r"\1 \2", str(text)))
        boxes.append(((min(ys) + max(ys)) / 2, min(xs), max(ys) - min(ys), cell))
    return _rows(boxes)


def parse_report_image(data: bytes) -> tuple[list[RawResult], list[ParseWarning]]:
    """Rows from a report photo; an image with no readable results is a clear error."""
    lines = ocr_lines(data)
    rows, warnings = parse_lab_text("\n".join(lines))
    if not rows:
        raise InputError("no results in the image", code="labs_no_results_in_image")
    return [dataclasses.replace(r, source="ocr") for r in rows], warnings
