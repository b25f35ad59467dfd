"""REST: ``POST /v1/images`` — a photo or DICOM file in, the stored image's id and its
analysis out; ``GET /v1/images/{id}/thumbnail`` for the tenant that uploaded it."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import Response

from healtrace.api._http import KEY_ERRORS, KeyId, error_responses, request_locale, services_of
from healtrace.errors import InputError
from healtrace.vision.service import analyze_upload

router = APIRouter(tags=["images"])
_CHUNK = 1 << 20


async def _read_limited(upload: UploadFile, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while chunk := await upload.read(_CHUNK):
        size += len(chunk)
        if size > limit:
            raise InputError("too large", code="image_too_large", size=size, limit=limit)
        parts.append(chunk)
    return b"".join(parts)


@router.post("/v1/images", responses=error_responses(*KEY_ERRORS, 400, 413, 415))
async def upload_image(
    request: Request,
    key_id: KeyId,
    file: Annotated[UploadFile, File(description="JPEG, PNG, WebP, HEIC or DICOM")],
    kind: Annotated[Literal["auto", "tongue", "report", "photo", "dicom"], Form()] = "auto",
    question: Annotated[str | None, Form(max_length=500)] = None,
    sex: Annotated[Literal["M", "F"] | None, Form()] = None,
    age: Annotated[float | None, Form(ge=0, le=130)] = None,
) -> dict[str, Any]:
    """Store the image (metadata stripped, or DICOM de-identified) and analyse it: quality
    advice, tongue features, lab results and medicines from a report photo, DICOM metadata,
    and the vision model's description when one is configured. ``engines`` and ``note`` say
    which route produced what."""
    services = services_of(request)
    cfg = services.settings.vision
    data = await _read_limited(file, max(cfg.max_image_bytes, cfg.max_dicom_bytes))
    tenant = await services.store.key_tenant(key_id)
    return await analyze_upload(
        data,
        settings=services.settings,
        tenant_id=tenant,
        locale=request_locale(request),
        kind=kind,
        question=question,
        sex=sex,
        age=age,
    )


@router.get(
    "/v1/images/{image_id}/thumbnail",
    response_class=Response,
    responses={
        200: {
            "description": "The thumbnail",
            "content": {
                t: {"schema": {"type": "string", "format": "binary"}}
                for t in ("image/jpeg", "image/png")
            },
        },
        **error_responses(*KEY_ERRORS, 404),
    },
)
async def thumbnail(request: Request, key_id: KeyId, image_id: str) -> Response:
    """A small PNG/JPEG of a stored photo (only for the tenant that uploaded it)."""
    from healtrace.vision.intake import ImageStore

    services = services_of(request)
    tenant = await services.store.key_tenant(key_id)
    store = ImageStore(services.settings.data_dir / "images")
    stored = await asyncio.to_thread(store.open, tenant, image_id)
    path = stored.thumbnail_path
    if path is None:
        raise InputError("no thumbnail", code="image_not_found")
    media = "image/png" if path.suffix == ".png" else "image/jpeg"
    return Response(await asyncio.to_thread(path.read_bytes), media_type=media)
