"""One entry point for an uploaded image: intake, quality, the right analysis, the VLM route.

:func:`analyze_upload` sniffs the bytes (never the name or the declared type), then:

- **DICOM**: read, de-identify (PS3.15 basic profile) and store only the de-identified file
  and a window/levelled PNG preview; metadata without identity.
- **Photos** (JPEG, PNG, WebP, HEIC): EXIF orientation applied, all metadata stripped,
  re-encoded and stored per tenant under the content hash with a thumbnail; quality checks
  with advice; then by ``kind`` (or, for ``auto``, what the picture looks like):
  ``tongue`` → classic-CV tongue features with their traditional meanings and the knowledge
  pack's article for each; ``report`` → OCR rows → lab interpretation, and medicine names
  matched to the pack; ``photo`` → quality only.
- The **VLM route**, when ``HEALTRACE_VISION__VLM_URL`` is set, gets the de-identified PNG and
  adds its description — except for DICOM whose pixels may carry burned-in identity (Burned
  In Annotation YES, or unstated for ultrasound/secondary capture), which is withheld and
  said so (``vlm.withheld``). Every part of the result names the engine that produced it, and
  when no VLM is configured the result says that only the built-in analysis ran.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Literal

from healtrace.config import Settings
from healtrace.errors import HealTraceError, InputError
from healtrace.vision.medications import find_medications
from healtrace.vision.vlm import VisionLanguageModel

__all__ = [
    "TONGUE_ARTICLES",
    "Kind",
    "analyze_upload",
    "attachment_note",
    "image_question",
    "load_analysis",
]

_ID = re.compile(r"[0-9a-f]{64}")
_TENANT = re.compile(r"[A-Za-z0-9_-]{1,64}")

Kind = Literal["auto", "tongue", "report", "photo", "dicom"]

#: Knowledge-pack articles behind each tongue finding (pack ids, both languages).
TONGUE_ARTICLES = {
    "pale": "tcm-tongue-pale",
    "red": "tcm-tongue-red-and-crimson",
    "crimson": "tcm-tongue-red-and-crimson",
    "purple": "tcm-tongue-purple",
    "white": "tcm-tongue-white-coating",
    "yellow": "tcm-tongue-yellow-coating",
    "grey_black": "tcm-tongue-grey-black-coating",
    "thick": "tcm-tongue-thick-and-thin-coating",
    "thin": "tcm-tongue-thick-and-thin-coating",
    "cracks": "tcm-tongue-cracks",
    "tooth_marks": "tcm-tongue-tooth-marks",
}
_OVERVIEW = "tcm-tongue-inspection-overview"

_NOTES = {
    "builtin": (
        "No image model is configured: this is HealTrace's built-in analysis (image quality, "
        "measured tongue features, text recognition, DICOM metadata). It does not interpret "
        "clinical image content.",
        "未配置图像大模型：以下为 HealTrace 内置分析（图像质量、舌象特征测量、文字识别、DICOM "
        "元数据），不对临床影像内容作解读。",
    ),
    "vlm": (
        "Parts marked 'vlm' were written by the configured vision model from the de-identified "
        "image; the rest is HealTrace's built-in analysis. Neither is a diagnosis.",
        "标注为“vlm”的部分由已配置的图像大模型根据去标识化后的图像生成，其余为 HealTrace "
        "内置分析。二者都不是诊断。",
    ),
    "withheld": (
        "This scan was not sent to the configured vision model: its pixels may show burned-in "
        "names, IDs or dates that header de-identification cannot remove. This is HealTrace's "
        "built-in analysis only (DICOM metadata and a preview); it does not interpret clinical "
        "image content.",
        "此影像未发送给已配置的图像大模型：其像素中可能含有无法通过去除文件头信息消除的姓名、编号或"
        "日期。以下仅为 HealTrace 内置分析（DICOM 元数据和预览图），不对临床影像内容作解读。",
    ),
}


def image_question(locale: str) -> str:
    """The question stored for a message that is only a picture."""
    return "请帮我看看这张图片。" if _zh(locale) else "Please look at this image."


def _zh(locale: str) -> bool:
    return locale.lower().startswith("zh")


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


async def analyze_upload(
    data: bytes,
    *,
    settings: Settings,
    tenant_id: str,
    locale: str = "en",
    kind: Kind = "auto",
    question: str | None = None,
    sex: str | None = None,
    age: float | None = None,
    vlm: VisionLanguageModel | None = None,
) -> dict[str, Any]:
    """Analyse one upload and store what may be stored; the result as JSON-ready data."""
    from healtrace.vision.intake import ImageStore, sniff_image

    if not data:
        raise InputError("empty", code="image_empty")
    cfg = settings.vision
    store = ImageStore(settings.data_dir / "images")
    vlm = vlm or VisionLanguageModel(cfg)
    engines: list[str] = []
    out: dict[str, Any] = {"kind": kind}
    if sniff_image(data) == "dicom" or kind == "dicom":
        preview = await _dicom(data, settings, store, tenant_id, locale, out, engines)
    else:
        preview = await _photo(
            data, settings, store, tenant_id, locale, kind, out, engines, sex, age
        )
    out["vlm"] = None
    deid = (out.get("dicom") or {}).get("deidentification") or {}
    if vlm.configured and preview is not None and deid.get("pixels_may_identify"):
        # Burned-in text is not de-identified by cleaning the header, and the model may be
        # another organisation's server: such pixels stay here.
        out["vlm"] = {"engine": f"vlm:{cfg.vlm_model}", "withheld": "pixels_may_identify"}
    elif vlm.configured and preview is not None:
        ask = question or (
            "请描述这张图片中与健康相关的可见内容。"
            if _zh(locale)
            else "Describe what is visible in this image that matters for health."
        )
        try:
            answer = await vlm.describe(preview, ask, locale=locale)
            out["vlm"] = {"engine": answer.engine, "text": answer.text}
            engines.append(answer.engine)
        except HealTraceError as exc:
            out["vlm"] = {"engine": f"vlm:{cfg.vlm_model}", "error": exc.message(locale)}
    out["engines"] = engines
    route = "builtin"
    if out["vlm"] and "text" in out["vlm"]:
        route = "vlm"
    elif out["vlm"] and "withheld" in out["vlm"]:
        route = "withheld"
    en, zh = _NOTES[route]
    out["note"] = zh if _zh(locale) else en
    await asyncio.to_thread(_save_analysis, settings, tenant_id, out["image"]["id"], out)
    return out


def _tenant_salt(settings: Settings, tenant_id: str) -> bytes:
    """A tenant's secret for DICOM UID replacement: the same original UID always maps to the
    same new one within a tenant (a study's files stay linked), and to different ones across
    tenants. Made on first use, kept with the tenant's images."""
    if not _TENANT.fullmatch(tenant_id):
        raise InputError("malformed tenant", code="invalid_event")
    path = settings.data_dir / "images" / "_salts" / tenant_id
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(32))
        try:
            os.link(tmp, path)  # first writer wins; a racing one reads the winner's salt
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        return path.read_bytes()


def _analysis_path(settings: Settings, tenant_id: str, image_id: str) -> Path:
    if not _TENANT.fullmatch(tenant_id) or not _ID.fullmatch(image_id):
        raise InputError("malformed image id", code="image_not_found")
    return settings.data_dir / "images" / "_analyses" / tenant_id / f"{image_id}.json"


def _save_analysis(settings: Settings, tenant_id: str, image_id: str, out: dict[str, Any]) -> None:
    """Keep the analysis so a chat turn that attaches the image can use it without redoing
    OCR or calling the VLM again (atomic write; the image itself is stored by intake)."""
    path = _analysis_path(settings, tenant_id, image_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(out, fh, ensure_ascii=False)
    os.replace(tmp, path)


async def load_analysis(settings: Settings, tenant_id: str, image_id: str) -> dict[str, Any]:
    """The stored analysis of a tenant's image; ``image_not_found`` for any other tenant."""
    path = _analysis_path(settings, tenant_id, image_id)
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except FileNotFoundError as exc:
        raise InputError("no analysis for this image", code="image_not_found") from exc
    data: dict[str, Any] = json.loads(text)
    return data


def attachment_note(analysis: dict[str, Any], locale: str) -> str:
    """What the model is told about an attached image: compact, labelled by engine."""
    zh = _zh(locale)
    vlm = analysis.get("vlm")
    if vlm and vlm.get("text"):
        head = (
            "【患者附图分析（HealTrace 内置分析 + 图像大模型，非诊断）】"
            if zh
            else "[Analysis of the patient's attached image — HealTrace built-in analysis plus "
            "the vision model, not a diagnosis]"
        )
    else:
        head = (
            "【患者附图分析（HealTrace 内置，非诊断）】"
            if zh
            else "[Analysis of the patient's attached image — HealTrace built-in, not a diagnosis]"
        )
    lines = [
        head,
        f"kind: {analysis.get('kind')}; engines: {', '.join(analysis.get('engines', []))}",
    ]
    for issue in (analysis.get("quality") or {}).get("issues", []):
        lines.append(f"quality: {issue.get('message') or issue.get('code')}")
    tongue = analysis.get("tongue")
    if tongue and tongue.get("found"):
        for name, feature in (tongue.get("features") or {}).items():
            if isinstance(feature, dict):
                label = feature.get("label") or feature.get("category")
                meaning = feature.get("meaning") or ""
                lines.append(f"{name}: {label} ({feature.get('confidence', 0):.2f}) {meaning}")
        if tongue.get("framing"):
            lines.append(str(tongue["framing"]))
    labs = analysis.get("labs")
    if labs:
        for r in labs.get("results", [])[:40]:
            value = r.get("qualitative") or r.get("value")
            lines.append(f"lab: {r.get('name')} {value} {r.get('unit') or ''} flag={r.get('flag')}")
        for p in labs.get("patterns", []):
            lines.append(f"pattern: {p.get('message')}")
    for med in analysis.get("medications") or []:
        lines.append(f"medicine: {med.get('name')} (article {med.get('article')})")
    dicom = analysis.get("dicom")
    if dicom:
        meta = dicom.get("metadata", {})
        lines.append("dicom: " + ", ".join(f"{k}={v}" for k, v in meta.items() if v))
    if vlm and vlm.get("text"):
        lines.append(f"[{vlm.get('engine')}] {vlm['text']}")
    elif vlm and vlm.get("withheld"):
        lines.append(
            "此影像可能含有烧录的身份信息，未发送给图像大模型；不要臆测图像的临床内容。"
            if zh
            else "This scan may carry burned-in identifying text and was not sent to the vision "
            "model: do not guess at clinical content of the image."
        )
    elif vlm:
        # Configured but it failed for this image: the model must not fill the gap either.
        lines.append(
            f"图像大模型（{vlm.get('engine')}）未能分析此图，不要臆测图像的临床内容。"
            if zh
            else f"The vision model ({vlm.get('engine')}) could not analyse this image: do not "
            "guess at clinical content of the image."
        )
    else:
        lines.append(
            "未配置图像大模型，不要臆测图像的临床内容。"
            if zh
            else "No vision model is configured: do not guess at clinical content of the image."
        )
    return "\n".join(lines)[:4000]


async def _dicom(
    data: bytes,
    settings: Settings,
    store: Any,
    tenant_id: str,
    locale: str,
    out: dict[str, Any],
    engines: list[str],
) -> bytes | None:
    from healtrace.vision.dicom import preview_png, read_dicom

    cfg = settings.vision
    salt = await asyncio.to_thread(_tenant_salt, settings, tenant_id)
    study = await asyncio.to_thread(
        read_dicom, data, max_bytes=cfg.max_dicom_bytes, max_pixels=cfg.max_pixels * 2, salt=salt
    )
    if not study.has_pixels:
        # A structured report or a header-only object: nothing to show or analyse.
        raise InputError("no pixel data", code="dicom_no_pixels")
    out["kind"] = "dicom"
    engines.append("pydicom")
    stored = await asyncio.to_thread(store.save_bytes, tenant_id, "dicom", study.to_bytes(), "dcm")
    out["image"] = {"id": stored.id, "format": "dicom", "size_bytes": stored.size_bytes}
    out["dicom"] = study.to_dict()
    png = await asyncio.to_thread(preview_png, study)
    await asyncio.to_thread(store.save_bytes, tenant_id, "dicom-preview", png, "png")
    return png


async def _photo(
    data: bytes,
    settings: Settings,
    store: Any,
    tenant_id: str,
    locale: str,
    kind: Kind,
    out: dict[str, Any],
    engines: list[str],
    sex: str | None,
    age: float | None,
) -> bytes:
    from healtrace.vision.intake import load_image
    from healtrace.vision.quality import check_quality
    from healtrace.vision.tongue import analyze_tongue

    cfg = settings.vision
    loaded = await asyncio.to_thread(
        load_image, data, max_bytes=cfg.max_image_bytes, max_pixels=cfg.max_pixels
    )
    stored = await asyncio.to_thread(store.save, tenant_id, loaded)
    out["image"] = {
        "id": stored.id,
        "format": stored.format,
        "width": stored.width,
        "height": stored.height,
    }
    tongue = None
    if kind in ("auto", "tongue"):
        tongue = await asyncio.to_thread(analyze_tongue, loaded.image)
        engines.append("classic-cv")
    chosen: str = kind
    if kind == "auto":
        chosen = "tongue" if tongue is not None and tongue.found else "report"
    png = await asyncio.to_thread(_png, loaded.image)
    lines: list[str] = []
    if chosen == "report":
        from healtrace.labs.ocr import ocr_lines

        lines = await asyncio.to_thread(ocr_lines, png)
        engines.append("ocr:rapidocr")
        if kind == "auto" and len(lines) < 2:
            chosen = "photo"
    purpose = {"tongue": "tongue", "report": "document"}.get(chosen, "general")
    quality = await asyncio.to_thread(check_quality, loaded.image, purpose=purpose)
    out["kind"] = chosen
    out["quality"] = quality.to_dict(locale)
    out["tongue"] = None
    out["labs"] = None
    out["medications"] = []
    if chosen == "tongue" and tongue is not None:
        result = tongue.to_dict(locale)
        result["articles"] = _tongue_articles(result)
        out["tongue"] = result
    elif chosen == "report":
        out["text_lines"] = len(lines)
        out["medications"] = [m.to_dict(locale) for m in find_medications("\n".join(lines))]
        out["labs"] = await _labs_from_lines(lines, sex, age, locale)
    return png


async def _labs_from_lines(
    lines: list[str], sex: str | None, age: float | None, locale: str
) -> dict[str, Any] | None:
    """Lab results read from the OCR'd rows (the same parser as pasted text)."""
    from healtrace.labs.interpret import interpret
    from healtrace.labs.parse_text import parse_lab_text

    rows, _ = parse_lab_text("\n".join(lines))
    if not rows:
        return None
    report = await asyncio.to_thread(interpret, rows, sex=sex, age=age, locale=locale)
    result = report.to_dict(locale)
    result["urgent"] = report.urgent
    return result


def _tongue_articles(result: dict[str, Any]) -> list[str]:
    """Pack articles for the findings, overview first, each once: a colour class names its
    article; cracks and tooth marks count when present."""
    articles = [_OVERVIEW]
    for name, feature in (result.get("features") or {}).items():
        if not isinstance(feature, dict):
            continue
        category = str(feature.get("category") or "")
        key = name if category == "present" else category
        article = TONGUE_ARTICLES.get(key)
        if article is not None and article not in articles:
            articles.append(article)
    return articles
