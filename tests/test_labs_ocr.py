"""A photographed report: an image rendered from a zh report table round-trips through
OCR (rapidocr, bundled models) into the same results as the text version."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFont

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings
from healtrace.errors import InputError
from healtrace.labs.interpret import interpret
from healtrace.labs.ocr import parse_report_image
from healtrace.labs.parse_text import parse_lab_text
from healtrace.storage import Database

FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")
ROWS = [
    ("项目", "结果", "单位", "参考范围"),
    ("血红蛋白 HGB", "98", "g/L", "130-175"),
    ("钾 K", "6.8", "mmol/L", "3.5-5.3"),
    ("肌酐 CREA", "110", "μmol/L", "57-111"),
    ("葡萄糖 GLU", "7.4", "mmol/L", "3.9-6.1"),
    ("丙氨酸氨基转移酶 ALT", "56", "U/L", "9-50"),
]
TEXT = "\n".join("\t".join(row) for row in ROWS)

pytestmark = pytest.mark.skipif(
    not FONT.exists(), reason="the CJK font is not installed (make apt installs it)"
)


def render(rows: list[tuple[str, ...]], *, angle: float = 0) -> bytes:
    font = ImageFont.truetype(str(FONT), 28)
    image = Image.new("RGB", (1000, 60 + 50 * len(rows)), "white")
    draw = ImageDraw.Draw(image)
    for i, row in enumerate(rows):
        for x, cell in zip((30, 400, 540, 740), row, strict=True):
            draw.text((x, 30 + 50 * i), cell, fill="black", font=font)
    if angle:
        image = image.rotate(angle, expand=True, fillcolor="white")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90)
    return out.getvalue()


def summary(rows: list[object]) -> list[tuple[object, ...]]:
    report = interpret(rows, sex="M", age=50)  # type: ignore[arg-type]
    return [
        (r.analyte.key if r.analyte else None, r.canonical_value, r.flag) for r in report.results
    ]


def test_photo_round_trips_to_the_same_results_as_text() -> None:
    from_text, _ = parse_lab_text(TEXT)
    from_photo, _ = parse_report_image(render(ROWS))
    assert len(from_photo) == len(ROWS) - 1
    assert {r.source for r in from_photo} == {"ocr"}
    assert summary(from_photo) == summary(from_text)
    potassium = next(r for r in from_photo if r.value == 6.8)
    assert (potassium.ref_low, potassium.ref_high) == (3.5, 5.3)


def test_images_that_are_not_reports_get_clear_errors() -> None:
    blank = io.BytesIO()
    Image.new("RGB", (400, 300), (200, 220, 240)).save(blank, format="PNG")
    with pytest.raises(InputError) as caught:
        parse_report_image(blank.getvalue())
    assert caught.value.code == "labs_no_results_in_image"
    for junk in (b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100):
        with pytest.raises(InputError) as caught:
            parse_report_image(junk)
        assert caught.value.code == "labs_not_an_image"


async def test_photo_over_rest(settings: Settings) -> None:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    key = (await ChatStore(db).create_api_key("labs"))[1]
    await db.dispose()
    photo = base64.b64encode(render(ROWS)).decode()
    async with (
        LiveServer(create_app(settings, model=DemoModel())) as live,
        httpx.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as client,
    ):
        url = f"{live.http}/v1/labs/interpret"
        r = await client.post(url, json={"image_base64": photo, "sex": "M", "age": 50})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["urgent"] is True
        assert any(x["flag"] == "HH" and x["critical"] for x in body["results"])
        r = await client.post(
            url, json={"image_base64": "%%%"}, headers={"Accept-Language": "zh-CN"}
        )
        assert r.status_code == 415 and "照片" in r.json()["error"]["message"]


def test_cli_reads_a_photo(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from healtrace.cli import app

    photo = tmp_path / "report.jpg"
    photo.write_bytes(render(ROWS))
    result = CliRunner().invoke(app, ["labs", "interpret", str(photo), "--image", "--json"])
    assert result.exit_code == 0, result.output
    assert '"critical": true' in result.output
