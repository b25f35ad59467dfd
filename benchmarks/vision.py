"""Image analysis speed: intake + quality + tongue analysis per photo, report OCR, DICOM.

    python benchmarks/vision.py [--runs 5] [--write BENCHMARKS.md]

Photos are synthetic tongue scenes (the test generator) encoded as JPEG at 1080p and 12 MP;
the report photo is the 5-row Chinese table the OCR tests render; DICOM files are pydicom's
bundled CT_small (one frame) and a multi-frame JPEG example. In-process, one thread of
Python; OpenCV and onnxruntime use what they use.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from _report import write_block
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from healtrace.vision.dicom import preview_png, read_dicom
from healtrace.vision.intake import load_image
from healtrace.vision.quality import check_quality
from healtrace.vision.tongue import analyze_tongue
from tests.test_labs_ocr import ROWS, render
from tests.test_vision_tongue import make_tongue


def timed(fn: Callable[[], object], runs: int) -> tuple[float, float]:
    """(first call, median of the rest) in ms."""
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times[0], statistics.median(times[1:])


def photo(size: tuple[int, int]) -> bytes:
    array = make_tongue("red", coating="white", coverage=0.3, size=size)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    rows = []
    for label, size in (("1080p (1920×1080)", (1080, 1920)), ("12 MP (4000×3000)", (3000, 4000))):
        data = photo(size)
        loaded = load_image(data)
        steps = {
            "intake (sniff, decode, EXIF, strip, hash)": lambda d=data: load_image(d),
            "quality checks": lambda im=loaded.image: check_quality(im, purpose="tongue"),
            "tongue analysis": lambda im=loaded.image: analyze_tongue(im),
        }
        total = 0.0
        for step, fn in steps.items():
            _, median = timed(fn, args.runs)
            total += median
            rows.append(f"| {label} | {step} | {median:.0f} |")
        rows.append(f"| {label} | **all three** | **{total:.0f}** |")
    from healtrace.labs.ocr import ocr_lines

    report = render(ROWS)
    first, median = timed(lambda: ocr_lines(report), args.runs)
    rows.append(
        f"| report photo (1000×360 JPEG, 6 rows) | OCR (rapidocr) | {median:.0f} "
        f"(first call {first:.0f}, loads the models) |"
    )
    from pydicom.data import get_testdata_file

    for name in ("CT_small.dcm", "examples_ybr_color.dcm"):
        path = get_testdata_file(name)
        if path is None:
            continue
        data = Path(path).read_bytes()

        def dicom(d: bytes = data) -> bytes:
            return preview_png(read_dicom(d))

        _, median = timed(dicom, args.runs)
        rows.append(f"| DICOM {name} | read + de-identify + PNG preview | {median:.1f} |")
    body = "\n".join(
        [
            f"Median of {args.runs} runs after a first call; 2 cores.",
            "",
            "| image | step | ms |",
            "|---|---|---|",
            *rows,
        ]
    )
    print(body)
    if args.write:
        write_block(args.write, "vision", body)


if __name__ == "__main__":
    main()
