"""Parse and interpret throughput for a pasted 30-analyte lab report (text, in-process).

python benchmarks/labs.py [--runs 200] [--write BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _report import pct, write_block

from healtrace.labs.catalogue import load_catalogue
from healtrace.labs.interpret import interpret
from healtrace.labs.parse_text import parse_lab_text

REPORT_ZH = """项目\t结果\t单位\t参考范围
白细胞计数 WBC\t12.3\t×10^9/L\t↑\t3.5-9.5
红细胞计数 RBC\t3.9\t×10^12/L\t\t4.3-5.8
血红蛋白 HGB\t98\tg/L\t↓\t130-175
红细胞压积 HCT\t0.31\tL/L\t↓\t0.40-0.50
平均红细胞体积 MCV\t72\tfL\t↓\t82-100
平均血红蛋白量 MCH\t24\tpg\t↓\t27-34
血小板计数 PLT\t85\t×10^9/L\t↓\t125-350
中性粒细胞绝对值 NEUT#\t9.1\t×10^9/L\t↑\t1.8-6.3
淋巴细胞绝对值 LYMPH#\t1.9\t×10^9/L\t\t1.1-3.2
谷丙转氨酶 ALT\t56\tU/L\t↑\t9-50
谷草转氨酶 AST\t40\tU/L\t\t15-40
碱性磷酸酶 ALP\t98\tU/L\t\t45-125
谷氨酰转肽酶 GGT\t60\tU/L\t\t10-60
总胆红素 TBIL\t18\tμmol/L\t\t0-21
白蛋白 ALB\t38\tg/L\t↓\t40-55
总蛋白 TP\t66\tg/L\t\t65-85
尿素 UREA\t7.9\tmmol/L\t\t2.8-7.2
肌酐 CREA\t110\tμmol/L\t\t57-111
尿酸 UA\t460\tμmol/L\t↑\t208-428
葡萄糖 GLU\t7.4\tmmol/L\t↑\t3.9-6.1
钾 K\t5.6\tmmol/L\t↑\t3.5-5.3
钠 Na\t138\tmmol/L\t\t137-147
氯 Cl\t101\tmmol/L\t\t99-110
二氧化碳结合力 CO2\t21\tmmol/L\t\t22-29
钙 Ca\t2.10\tmmol/L\t\t2.11-2.52
总胆固醇 TC\t5.8\tmmol/L\t↑\t0-5.2
甘油三酯 TG\t2.1\tmmol/L\t↑\t0-1.7
高密度脂蛋白胆固醇 HDL-C\t0.9\tmmol/L\t↓\t1.04-
糖化血红蛋白 HbA1c\t6.8\t%\t↑\t4.0-6.0
超敏C反应蛋白 hs-CRP\t12\tmg/L\t↑\t0-3
"""


def ocr_rows(runs: int = 5) -> list[str]:
    """OCR latency for a photo of the same report (rendered here; needs the CJK font)."""
    import io

    from PIL import Image, ImageDraw, ImageFont

    from healtrace.labs.ocr import parse_report_image

    font_path = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
    if not font_path.exists():
        return ["", "OCR: skipped (fonts-wqy-microhei not installed)."]
    table = [line.split("\t") for line in REPORT_ZH.strip().splitlines()]
    font = ImageFont.truetype(str(font_path), 26)
    image = Image.new("RGB", (1200, 60 + 44 * len(table)), "white")
    draw = ImageDraw.Draw(image)
    for i, row in enumerate(table):
        for x, cell in zip((30, 420, 540, 720, 800), row, strict=False):
            draw.text((x, 30 + 44 * i), cell, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    photo = buffer.getvalue()
    start = time.perf_counter()
    rows, _ = parse_report_image(photo)  # first call loads the models
    first_ms = (time.perf_counter() - start) * 1000
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        rows, _ = parse_report_image(photo)
        times.append((time.perf_counter() - start) * 1000)
    return [
        "",
        f"OCR of a photo of the same report ({image.width}×{image.height} JPEG, rapidocr "
        f"PP-OCRv6 small, onnxruntime CPU): {len(rows)} of 30 rows read; first call "
        f"{first_ms:.0f} ms (loads the models); then p50 {pct(times, 50):.0f} ms, "
        f"max {max(times):.0f} ms over {runs} runs.",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()

    start = time.perf_counter()
    load_catalogue()
    load_ms = (time.perf_counter() - start) * 1000
    rows, _ = parse_lab_text(REPORT_ZH)
    report = interpret(rows, sex="M", age=58, locale="zh-CN")
    found = sum(1 for r in report.results if r.analyte is not None)

    parse_ms, interp_ms, total_ms = [], [], []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        rows, _ = parse_lab_text(REPORT_ZH)
        t1 = time.perf_counter()
        interpret(rows, sex="M", age=58, locale="zh-CN").to_dict()
        t2 = time.perf_counter()
        parse_ms.append((t1 - t0) * 1000)
        interp_ms.append((t2 - t1) * 1000)
        total_ms.append((t2 - t0) * 1000)
    p50 = pct(total_ms, 50)
    lines = [
        f"A pasted Chinese report of 30 results (tab-separated portal table with flags and "
        f"ranges); {len(rows)} rows parsed, {found} matched to the catalogue, "
        f"{len(report.derived)} derived values, {len(report.patterns)} patterns. "
        f"Catalogue load {load_ms:.0f} ms (once). {args.runs} runs, one thread, "
        f"{os.cpu_count()} cores.",
        "",
        "| step | p50 (ms) | p95 (ms) |",
        "|---|---|---|",
        f"| parse text | {pct(parse_ms, 50):.2f} | {pct(parse_ms, 95):.2f} |",
        f"| interpret (flags, units, derived, patterns, JSON) | {pct(interp_ms, 50):.2f} | "
        f"{pct(interp_ms, 95):.2f} |",
        f"| both | {p50:.2f} | {pct(total_ms, 95):.2f} |",
        "",
        f"Throughput: {1000 / p50:.0f} reports/s ({30 * 1000 / p50:.0f} results/s) per core.",
    ]
    lines += ocr_rows()
    body = "\n".join(lines)
    print(body)
    if args.write:
        write_block(args.write, "labs", body)


if __name__ == "__main__":
    main()
