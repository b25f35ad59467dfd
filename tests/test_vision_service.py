"""Images end to end: ``POST /v1/images`` on a live server, the VLM route against a real
OpenAI-compatible server, photos attached to chat turns, and the CLI."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pydicom
import pytest
import websockets
from PIL import Image
from pydicom.data import get_testdata_file

from healtrace.agent.memory import ChatStore
from healtrace.agent.models.testing import DemoModel
from healtrace.agent.models.testing_server import Answer, ScriptedOpenAIServer
from healtrace.api.app import create_app
from healtrace.api.testing import LiveServer
from healtrace.config import Settings, VisionConfig
from healtrace.storage import Database
from tests.test_labs_ocr import ROWS, render
from tests.test_vision_tongue import make_tongue

IDENTIFYING = ("PatientName", "PatientID", "PatientBirthDate", "InstitutionName", "StudyDate")


def jpeg(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


async def _keys(settings: Settings) -> tuple[str, str]:
    db = Database(settings.resolved_database_url)
    await db.migrate()
    try:
        store = ChatStore(db)
        return (await store.create_api_key("a"))[1], (
            await store.create_api_key("b", tenant_id="other")
        )[1]
    finally:
        await db.dispose()


@pytest.fixture
async def live(settings: Settings) -> AsyncIterator[tuple[LiveServer, str, str, DemoModel]]:
    key, other = await _keys(settings)
    model = DemoModel(tool_rounds=0, answer="Here is what the picture shows.")
    async with LiveServer(create_app(settings, model=model)) as server:
        yield server, key, other, model


async def upload(
    server: LiveServer, key: str, data: bytes, name: str = "x.jpg", **form: str
) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.post(
            f"{server.http}/v1/images",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": (name, data, "image/jpeg")},
            data=form,
        )


async def test_tongue_photo(live: tuple[LiveServer, str, str, DemoModel]) -> None:
    server, key, other, _ = live
    r = await upload(server, key, jpeg(make_tongue("pale", coating="white", coverage=0.2)))
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["kind"] == "tongue" and out["engines"] == ["classic-cv"]
    features = out["tongue"]["features"]
    assert features["body_colour"]["category"] == "pale"
    assert "tcm-tongue-pale" in out["tongue"]["articles"]
    assert out["vlm"] is None and "No image model is configured" in out["note"]
    image_id = out["image"]["id"]
    async with httpx.AsyncClient() as client:
        thumb = await client.get(
            f"{server.http}/v1/images/{image_id}/thumbnail",
            headers={"Authorization": f"Bearer {key}"},
        )
        assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
        with Image.open(io.BytesIO(thumb.content)) as small:
            assert max(small.size) <= 256
        # Another tenant cannot see it.
        foreign = await client.get(
            f"{server.http}/v1/images/{image_id}/thumbnail",
            headers={"Authorization": f"Bearer {other}"},
        )
        assert foreign.status_code == 404
        assert foreign.json()["error"]["code"] == "image_not_found"


async def test_report_photo_flows_into_lab_results(
    live: tuple[LiveServer, str, str, DemoModel],
) -> None:
    server, key, _, _ = live
    rows = [*ROWS, ("阿莫西林胶囊", "0.5g", "tid", "")]
    r = await upload(server, key, render(rows), kind="report", sex="M", age="50")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["kind"] == "report" and "ocr:rapidocr" in out["engines"]
    by_key = {x["analyte"]: x for x in out["labs"]["results"]}
    assert by_key["potassium"]["value"] == 6.8 and by_key["potassium"]["critical"] is True
    assert by_key["hemoglobin"]["flag"] == "L"
    assert out["labs"]["urgent"] is True
    assert [m["article"] for m in out["medications"]] == ["antibiotics-correct-use"]


async def test_dicom_is_deidentified_before_it_is_stored(
    live: tuple[LiveServer, str, str, DemoModel], settings: Settings
) -> None:
    server, key, _, _ = live
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    original = pydicom.dcmread(path)
    present = [tag for tag in IDENTIFYING if tag in original and original.data_element(tag).value]
    assert present, "the test file should carry identifying tags"
    data = await asyncio.to_thread(Path(path).read_bytes)
    r = await upload(server, key, data, name="scan.jpg")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["kind"] == "dicom" and out["dicom"]["metadata"]["modality"] == "CT"
    stored = next((settings.data_dir / "images").rglob(f"{out['image']['id']}.dcm"))
    clean = pydicom.dcmread(stored)
    for tag in present:
        assert tag not in clean or not clean.data_element(tag).value, tag
    assert clean.PatientIdentityRemoved == "YES"
    assert clean.SOPInstanceUID != original.SOPInstanceUID
    previews = list((settings.data_dir / "images").rglob("*.png"))
    assert previews
    with Image.open(previews[0]) as preview:
        assert preview.format == "PNG" and preview.size[0] > 0
    # Nothing identifying is in the response either.
    text = json.dumps(out)
    assert str(original.PatientName) not in text and str(original.PatientID) not in text


def _bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buf, format="PNG")
    return buf.getvalue()


def _truncated_jpeg() -> bytes:
    data = jpeg(make_tongue("red"))
    return data[: len(data) // 2]


def _dicom_without_pixels() -> bytes:
    """A structured report: a valid DICOM object with no image in it."""
    path = get_testdata_file("test-SR.dcm")
    assert path is not None
    return Path(path).read_bytes()


def _ct_header_without_pixels() -> bytes:
    """pydicom's CT_small with its Pixel Data removed: an image header and no image."""
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    ds = pydicom.dcmread(path)
    del ds.PixelData
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda: b"%PDF-1.7\n" + bytes(500), 415, "image_unsupported_format"),
        (_bomb_png, 413, "image_too_many_pixels"),
        (_truncated_jpeg, 400, "image_corrupt"),
        (_dicom_without_pixels, 422, "dicom_no_pixels"),
        (_ct_header_without_pixels, 422, "dicom_no_pixels"),
        (lambda: b"", 400, "image_empty"),
    ],
    ids=[
        "pdf-named-jpg",
        "20000x20000-png",
        "truncated-jpeg",
        "dicom-sr-no-pixels",
        "dicom-ct-header-only",
        "empty",
    ],
)
async def test_bad_images_get_clear_errors(
    live: tuple[LiveServer, str, str, DemoModel], make: Any, status: int, code: str
) -> None:
    server, key, _, _ = live
    r = await upload(server, key, make(), name="photo.jpg")
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code
    async with httpx.AsyncClient() as client:
        zh = await client.post(
            f"{server.http}/v1/images",
            headers={"Authorization": f"Bearer {key}", "Accept-Language": "zh-CN"},
            files={"file": ("photo.jpg", make(), "image/jpeg")},
        )
        assert any("\u4e00" <= c <= "\u9fff" for c in zh.json()["error"]["message"])
        assert (await client.get(f"{server.http}/healthz")).status_code == 200


async def test_vlm_route_gets_the_cleaned_image(settings: Settings) -> None:
    key, _ = await _keys(settings)
    with ScriptedOpenAIServer([Answer("A pink tongue with a thin white coating.")]) as vlm:
        configured = settings.model_copy(
            update={"vision": VisionConfig(vlm_url=vlm.base_url, vlm_model="qwen2.5-vl")}
        )
        async with LiveServer(create_app(configured, model=DemoModel())) as server:
            r = await upload(server, key, jpeg(make_tongue("light_red")), question="What is this?")
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["vlm"] == {
            "engine": "vlm:qwen2.5-vl",
            "text": "A pink tongue with a thin white coating.",
        }
        assert out["engines"] == ["classic-cv", "vlm:qwen2.5-vl"]
        assert "vision model" in out["note"]
        request = vlm.requests[0]
        parts = request["messages"][1]["content"]
        assert parts[0] == {"type": "text", "text": "What is this?"}
        assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    # The VLM down: the built-in analysis still answers and says what failed.
    down = settings.model_copy(
        update={"vision": VisionConfig(vlm_url="http://127.0.0.1:9/v1", vlm_timeout_s=2)}
    )
    async with LiveServer(create_app(down, model=DemoModel())) as server:
        r = await upload(server, key, jpeg(make_tongue("red")))
    out = r.json()
    assert r.status_code == 200 and out["tongue"]["found"] is True
    assert "error" in out["vlm"] and "unavailable" in out["vlm"]["error"]


async def test_a_photo_attached_to_a_chat_turn(
    live: tuple[LiveServer, str, str, DemoModel],
) -> None:
    server, key, other, model = live
    image_id = (
        await upload(server, key, jpeg(make_tongue("red", coating="yellow", coverage=0.5)))
    ).json()["image"]["id"]
    ws = await websockets.connect(server.ws)
    await ws.send(json.dumps({"type": "hello", "api_key": key}))
    await ws.recv()
    await ws.send(json.dumps({"type": "user_message", "text": "", "image_ids": [image_id]}))
    events = []
    while True:
        event = json.loads(await ws.recv())
        events.append(event)
        if event["type"] == "answer_done":
            break
    await ws.close()
    call = next(e for e in events if e["type"] == "tool_call")
    result = next(e for e in events if e["type"] == "tool_result")
    assert call["name"] == "analyze_image" and call["arguments"] == {"image_id": image_id}
    assert result["ok"] is True and "body_colour" in result["content"]
    started = next(e for e in events if e["type"] == "turn_started")
    assert started["text"] == "Please look at this image."
    question = model.requests[-1].messages[-1].content
    assert "Analysis of the patient's attached image" in question and "yellow" in question
    # The image tool is offered in turns that carry images, and only in those.
    assert "analyze_image" in {t.name for t in model.requests[-1].tools}
    ws = await websockets.connect(server.ws)
    await ws.send(json.dumps({"type": "hello", "api_key": key}))
    await ws.recv()
    await ws.send(json.dumps({"type": "user_message", "text": "thanks"}))
    while json.loads(await ws.recv())["type"] != "answer_done":
        pass
    await ws.close()
    assert "analyze_image" not in {t.name for t in model.requests[-1].tools}
    # Another tenant's key cannot attach it.
    ws = await websockets.connect(server.ws)
    await ws.send(json.dumps({"type": "hello", "api_key": other}))
    await ws.recv()
    await ws.send(json.dumps({"type": "user_message", "text": "look", "image_ids": [image_id]}))
    while True:
        event = json.loads(await ws.recv())
        if event["type"] == "tool_result":
            assert event["ok"] is False and "not found" in event["content"]
        if event["type"] == "answer_done":
            break
    await ws.close()


def test_cli_vision_analyze(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from healtrace.cli import app

    photo = tmp_path / "tongue.jpg"
    photo.write_bytes(jpeg(make_tongue("purple")))
    result = CliRunner().invoke(app, ["vision", "analyze", str(photo), "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["tongue"]["features"]["body_colour"]["category"] == "purple"
    text = CliRunner().invoke(app, ["vision", "analyze", str(photo), "--locale", "zh-CN"])
    assert text.exit_code == 0 and "传统" in text.output
    bad = tmp_path / "fake.jpg"
    bad.write_bytes(b"%PDF-1.4 not an image")
    failed = CliRunner().invoke(app, ["vision", "analyze", str(bad)])
    assert failed.exit_code == 2 and "PDF" in failed.output


async def test_the_model_can_read_an_attached_photo_as_another_kind(settings: Settings) -> None:
    """A prescription photo uploaded as a plain photo has no medicines read; the model asks
    for a report reading of the attached image and gets them."""
    from healtrace.agent.models.testing import ScriptedModel, Step, call_step, text_step

    key, _ = await _keys(settings)
    photo = render([("处方", "", "", ""), ("布洛芬缓释胶囊", "0.3g", "bid", "")])
    image_id_holder: dict[str, str] = {}

    def calls(_: object) -> Step:
        return call_step("analyze_image", {"image_id": image_id_holder["id"], "kind": "report"})

    model = ScriptedModel([calls, text_step("Ibuprofen is on the prescription.")])
    async with LiveServer(create_app(settings, model=model)) as server:
        out = (await upload(server, key, photo, kind="photo")).json()
        image_id_holder["id"] = out["image"]["id"]
        assert out["kind"] == "photo" and out["medications"] == []
        ws = await websockets.connect(server.ws)
        await ws.send(json.dumps({"type": "hello", "api_key": key}))
        await ws.recv()
        await ws.send(
            json.dumps(
                {
                    "type": "user_message",
                    "text": "my prescription",
                    "image_ids": [out["image"]["id"]],
                }
            )
        )
        results = []
        while True:
            event = json.loads(await ws.recv())
            if event["type"] == "tool_result":
                results.append(event)
            if event["type"] == "answer_done":
                break
        await ws.close()
    reread = next(r for r in results if r["call_id"] != "attachment_1")
    assert reread["ok"] is True and "ibuprofen" in reread["content"]


async def test_a_photo_attached_to_a_rest_chat_turn(
    live: tuple[LiveServer, str, str, DemoModel],
) -> None:
    server, key, _, model = live
    image_id = (
        await upload(server, key, jpeg(make_tongue("pale", coating="white", coverage=0.2)))
    ).json()["image"]["id"]
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(timeout=60) as client:
        session = await client.post(f"{server.http}/v1/sessions", headers=headers, json={})
        assert session.status_code == 201, session.text
        sid = session.json()["id"]
        r = await client.post(
            f"{server.http}/v1/sessions/{sid}/messages",
            headers=headers,
            json={"text": "", "image_ids": [image_id]},
        )
        assert r.status_code == 200, r.text
        calls = r.json()["tool_calls"]
        assert calls[0] == {
            "id": "attachment_1",
            "name": "analyze_image",
            "arguments": {"image_id": image_id},
        }
        bad = await client.post(
            f"{server.http}/v1/sessions/{sid}/messages",
            headers=headers,
            json={"text": "look", "image_ids": ["not-an-id"]},
        )
        assert bad.status_code == 422
    question = model.requests[-1].messages[-1].content
    assert "pale tongue" in question
    assert "No vision model is configured" in question


def test_attachment_note_names_the_route() -> None:
    from healtrace.vision.service import attachment_note

    base: dict[str, Any] = {"kind": "tongue", "engines": ["classic-cv"], "vlm": None}
    builtin = attachment_note(base, "en")
    assert "HealTrace built-in" in builtin and "No vision model is configured" in builtin
    assert "未配置图像大模型" in attachment_note(base, "zh-CN")
    described = attachment_note(
        {
            **base,
            "engines": ["classic-cv", "vlm:qwen"],
            "vlm": {"engine": "vlm:qwen", "text": "A tongue."},
        },
        "en",
    )
    assert "plus the vision model" in described and "[vlm:qwen] A tongue." in described
    assert "No vision model" not in described
    failed = attachment_note({**base, "vlm": {"engine": "vlm:qwen", "error": "down"}}, "en")
    assert "vision model (vlm:qwen) could not analyse this image" in failed
    assert "plus the vision model" not in failed


async def test_dicom_goes_to_the_vlm_de_identified_unless_pixels_may_identify(
    settings: Settings,
) -> None:
    """The CT's window/levelled preview (pixels only, no header) reaches the model; a scan
    flagged Burned In Annotation YES is withheld, and the result says so instead of claiming
    that no model is configured."""
    import base64

    from healtrace.vision.service import analyze_upload

    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    data = await asyncio.to_thread(Path(path).read_bytes)
    ds = pydicom.dcmread(path)
    ds.BurnedInAnnotation = "YES"
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    burned = buf.getvalue()
    with ScriptedOpenAIServer([Answer("An axial CT slice.")]) as server:
        configured = settings.model_copy(
            update={"vision": VisionConfig(vlm_url=server.base_url, vlm_model="qwen2.5-vl")}
        )
        out = await analyze_upload(data, settings=configured, tenant_id="t1")
        assert out["vlm"] == {"engine": "vlm:qwen2.5-vl", "text": "An axial CT slice."}
        assert out["engines"] == ["pydicom", "vlm:qwen2.5-vl"]
        (request,) = server.requests
        url = request["messages"][1]["content"][1]["image_url"]["url"]
        sent = base64.b64decode(url.removeprefix("data:image/png;base64,"))
        assert sent.startswith(b"\x89PNG") and b"DICM" not in sent
        with Image.open(io.BytesIO(sent)) as preview:
            assert preview.size == (128, 128)
        assert str(ds.PatientName).encode() not in sent

        withheld = await analyze_upload(burned, settings=configured, tenant_id="t1", locale="zh-CN")
        assert len(server.requests) == 1  # nothing more was sent
        assert withheld["vlm"] == {"engine": "vlm:qwen2.5-vl", "withheld": "pixels_may_identify"}
        assert withheld["engines"] == ["pydicom"]
        assert "未发送给已配置的图像大模型" in withheld["note"]
        assert "未配置" not in withheld["note"]
