"""Regenerate the knowledge-base test documents: ``python tests/data/knowledge/make_fixtures.py``.

``docs/`` holds one small health document per supported format, each on its own topic so a
search can tell them apart; ``bad/`` holds inputs ingestion must refuse with a code. The
PDF is written by hand (pypdf reads PDFs but does not lay out text) and the DOCX with
python-docx, so no extra package is needed.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent

MARKDOWN = """---
id: asthma-basics
lang: en
title: "Asthma: inhalers and attacks"
category: conditions
last_reviewed: 2026-10-01
sources:
  - title: "NHS: Asthma"
    url: https://www.nhs.uk/conditions/asthma/
---

# Asthma: inhalers and attacks

## Overview
Asthma narrows the airways in the lungs. It causes wheezing, a tight chest and
breathlessness, often worse at night or with exercise.

## Inhalers
A reliever inhaler (usually blue, salbutamol) opens the airways within minutes. A
preventer inhaler taken every day calms the inflammation.

## Asthma attack
Call 120 or 911 if the reliever inhaler does not help, you are too breathless to speak,
or your lips turn blue.
"""

HTML = """<!doctype html>
<html><head><title>Type 2 diabetes: blood sugar control</title>
<script>var tracking = "ignore me";</script></head>
<body><nav>Home | Conditions</nav>
<main>
<h1>Type 2 diabetes: blood sugar control</h1>
<h2>What it is</h2>
<p>In type 2 diabetes the body does not respond well to insulin, so glucose builds up in
the blood. Thirst, passing urine often and tiredness are common signs.</p>
<h2>Checking glucose</h2>
<p>An HbA1c test shows average blood glucose over about three months.</p>
<ul><li>Fasting glucose of 7.0 mmol/L or more suggests diabetes.</li>
<li>Metformin is the usual first medicine.</li></ul>
</main>
<footer>Copyright nobody</footer>
</body></html>
"""

TEXT = """Drinking enough water

Most adults need about 6 to 8 glasses of fluid a day, more in hot weather or during
exercise. Dark yellow urine, headache and dizziness are signs of dehydration.
"""

ZH_TEXT = """睡眠不足的危害

成年人每晚需要七到九小时的睡眠。长期睡眠不足会让人白天犯困、注意力下降，并增加高血压和糖尿病的风险。
如果长期失眠超过三个月，应去医院睡眠门诊就诊。
"""

PDF_LINES = [
    "High blood pressure (hypertension)",
    "Blood pressure of 140/90 mmHg or more is high.",
    "Cutting salt, losing weight and regular exercise lower it.",
    "Amlodipine and ramipril are common tablets for hypertension.",
]


def text_pdf(lines: list[str]) -> bytes:
    """A one-page PDF showing ``lines`` in Helvetica, with a correct cross-reference table."""
    ops = ["BT", "/F1 12 Tf", "72 720 Td", "14 TL"]
    for line in lines:
        escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        ops.append(f"({escaped}) Tj T*")
    ops.append("ET")
    stream = "\n".join(ops).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
        b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
        b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        b"<< /Title (Hypertension leaflet) >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\n" % (len(objects) + 1)
    out += b"startxref\n%d\n%%%%EOF\n" % xref
    return bytes(out)


def docx_bytes() -> bytes:
    import io

    import docx

    document = docx.Document()
    document.core_properties.title = "Migraine: triggers and treatment"
    document.add_heading("Migraine: triggers and treatment", level=0)
    document.add_heading("Symptoms", level=1)
    document.add_paragraph(
        "A migraine is a throbbing headache on one side of the head, often with nausea and "
        "sensitivity to light. Some people see an aura of flashing lights first."
    )
    document.add_heading("Treatment", level=1)
    document.add_paragraph("Triptans such as sumatriptan stop an attack.", style="List Bullet")
    table = document.add_table(rows=2, cols=2)
    table.cell(0, 0).text = "Trigger"
    table.cell(0, 1).text = "Example"
    table.cell(1, 0).text = "Food"
    table.cell(1, 1).text = "Cheese, chocolate"
    buffer = io.BytesIO()
    document.save(buffer)
    return buffer.getvalue()


def main() -> None:
    docs = HERE / "docs"
    bad = HERE / "bad"
    docs.mkdir(exist_ok=True)
    bad.mkdir(exist_ok=True)
    (docs / "asthma.md").write_text(MARKDOWN, "utf-8")
    (docs / "diabetes.html").write_text(HTML, "utf-8")
    (docs / "hydration.txt").write_text(TEXT, "utf-8")
    (docs / "sleep-zh.txt").write_text(ZH_TEXT, "utf-8")
    (docs / "hypertension.pdf").write_bytes(text_pdf(PDF_LINES))
    (docs / "migraine.docx").write_bytes(docx_bytes())
    (bad / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog /Pages 9 0 R\n%%EOF")
    (bad / "broken.docx").write_bytes(b"PK\x03\x04 this is not a zip archive")
    (bad / "empty.txt").write_bytes(b"")
    (bad / "blank.md").write_text("\n\n   \n", "utf-8")
    (bad / "notes.xyz").write_text("some notes in an unknown format", "utf-8")


if __name__ == "__main__":
    main()
