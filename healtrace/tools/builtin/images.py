"""Look at a stored image again, as a given kind (the images part of HealTrace).

Images a patient attaches to a message are analysed when uploaded and the analysis is given
to the model with the question. This tool is for the model to ask for a different reading
of one of those images — a photo the automatic choice took for a tongue that is really a
prescription, say. It is offered only in turns that carry images, and reads only the
tenant's own images.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from healtrace.errors import InputError
from healtrace.tools.core import ToolContext, ToolRetry, tool


class ImageResult(BaseModel):
    kind: str
    #: Which engine produced each part ("classic-cv", "ocr:rapidocr", "pydicom", "vlm:…").
    engines: list[str]
    summary: str
    note: str


@tool(timeout_s=60.0, permissions=("images",))
async def analyze_image(
    ctx: ToolContext,
    image_id: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")],
    kind: Literal["tongue", "report", "photo", "dicom"] = "report",
) -> ImageResult:
    """Analyse one of the images the user attached in this conversation again, as a
    particular kind: "tongue" (TCM tongue features), "report" (text recognition: lab results
    and medicine names), "photo" (quality only) or "dicom" (scan metadata).

    Use when the attached image's analysis looks like the wrong kind for what the user
    says it is. Describe results as measurements and traditional readings, never as a
    diagnosis.

    Args:
        image_id: The image's id, exactly as given with the user's message.
        kind: What the image is.
    """
    from healtrace.vision.intake import ImageStore
    from healtrace.vision.service import analyze_upload, attachment_note

    tenant = ctx.tenant_id or "default"
    store = ImageStore(ctx.settings.data_dir / "images")
    try:
        stored = await asyncio.to_thread(store.open, tenant, image_id)
        data = await asyncio.to_thread(stored.path.read_bytes)
        out: dict[str, Any] = await analyze_upload(
            data, settings=ctx.settings, tenant_id=tenant, locale=ctx.locale, kind=kind
        )
    except InputError as exc:
        raise ToolRetry(exc.message(ctx.locale)) from exc
    return ImageResult(
        kind=str(out["kind"]),
        engines=list(out["engines"]),
        summary=attachment_note(out, ctx.locale),
        note=str(out["note"]),
    )
