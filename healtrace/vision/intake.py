"""Accepting a patient's image safely: recognise it, bound it, decode it, strip it, store it.

Patients send phone photos (tongue, lab reports, prescriptions) and DICOM files. Everything
that arrives is untrusted, so intake works in an order that keeps the cheap checks first:

1. **Size in bytes** before anything else (``image_too_large``).
2. **Magic bytes** (:func:`sniff_image`), never the file name or the client's MIME type: a
   PDF renamed ``scan.jpg`` is still a PDF, and the error says so ("PDF document").
3. **Declared dimensions from the header**, before a single pixel is decoded. Pillow reads
   headers lazily, so a 20000×20000 PNG that compresses to a few kilobytes is refused
   without allocating 1.2 GB (``image_too_many_pixels``). Pillow's own decompression-bomb
   guard (``DecompressionBombError``, or its warning when warnings are errors) is mapped to
   the same code; we never change the global ``Image.MAX_IMAGE_PIXELS``.
4. **Full decode inside a try**: a truncated or damaged file becomes ``image_corrupt``.
   ``ImageFile.LOAD_TRUNCATED_IMAGES`` is left alone — half a lab report with grey bands
   must not be analysed as if it were whole.
5. **Orientation, then metadata removal**: the EXIF orientation is applied to the pixels
   (phones store portrait photos sideways plus a flag), then *all* metadata is dropped by
   copying the pixels into a fresh image: EXIF (including GPS — a home address), XMP,
   comments, DPI. An embedded ICC profile is used once to convert the pixels to sRGB and is
   then dropped too, so colour (which matters for tongue photos) is consistent everywhere
   downstream and nothing of the original file survives.

Storage ids are content hashes of the *cleaned pixels* (SHA-256 over a small header with
the size and mode followed by the raw RGB bytes), not of the uploaded file. That makes the
id independent of the encoder we store with, lets the same photo sent twice (or re-sent
after a messenger re-compressed only its metadata) land in one file, and means the id
cannot be used to confirm possession of the original, metadata-bearing upload.

DICOM is recognised by :func:`sniff_image` but not decoded here: callers route ``"dicom"``
to the DICOM reader, which de-identifies and may hand back a preview or the file for
:meth:`ImageStore.save_bytes`.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from healtrace.errors import InputError

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "SUPPORTED_RASTER",
    "THUMBNAIL_SIZE",
    "ImageStore",
    "LoadedImage",
    "StoredImage",
    "describe_kind",
    "load_image",
    "sniff_image",
]

#: 15 MiB: a 48-megapixel phone JPEG is ~8-12 MB; anything bigger is not a casual photo.
MAX_IMAGE_BYTES: Final = 15 * 1024 * 1024
#: 40 megapixels decodes to 120 MB of RGB — the most one request may cost in memory.
MAX_IMAGE_PIXELS: Final = 40_000_000
#: Long side of stored thumbnails, enough for a chat bubble or the clinician console list.
THUMBNAIL_SIZE: Final = 256
#: JPEG quality for stored photos: visually lossless, and 4:4:4 chroma keeps the red/pink
#: detail of tongue photos that 4:2:0 subsampling smears.
_JPEG_QUALITY: Final = 95

#: Kinds :func:`load_image` decodes, mapped to the Pillow format name it is allowed to use.
SUPPORTED_RASTER: Final[dict[str, str]] = {
    "jpeg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "heic": "HEIF",
}

#: Short English names for error messages ("That file is not an image ... (PDF document)").
_DESCRIPTIONS: Final[dict[str, str]] = {
    "jpeg": "JPEG image",
    "png": "PNG image",
    "webp": "WebP image",
    "heic": "HEIC image",
    "dicom": "DICOM file",
    "pdf": "PDF document",
    "gif": "GIF image",
    "tiff": "TIFF image",
    "bmp": "BMP image",
    "avif": "AVIF image",
    "jpeg2000": "JPEG 2000 image",
    "jxl": "JPEG XL image",
    "ico": "icon file",
    "psd": "Photoshop document",
    "svg": "SVG drawing",
    "zip": "ZIP archive or Office document",
    "gzip": "gzip archive",
    "rar": "RAR archive",
    "7z": "7-Zip archive",
    "video": "video",
    "isobmff": "MP4-family file",
    "audio": "audio",
    "text": "text file",
}

_HEIC_BRANDS: Final = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx"})
_HEIF_GENERIC_BRANDS: Final = frozenset({b"mif1", b"msf1"})
_AVIF_BRANDS: Final = frozenset({b"avif", b"avis"})
_VIDEO_BRANDS: Final = frozenset(
    {b"isom", b"iso2", b"mp41", b"mp42", b"avc1", b"qt  ", b"M4V ", b"3gp4", b"3gp5", b"3g2a"}
)
_AUDIO_BRANDS: Final = frozenset({b"M4A ", b"M4B "})


def _sniff_ftyp(data: bytes) -> str | None:
    """ISO base media files (HEIC, AVIF, MP4, MOV): decide by the ``ftyp`` brands."""
    if len(data) < 12 or data[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(data[0:4], "big")
    end = min(len(data), box_size if 16 <= box_size <= 4096 else 16)
    major = data[8:12]
    compatible = {data[i : i + 4] for i in range(16, end - 3, 4)}
    brands = {major} | compatible
    # Major brand first: an AVIF file lists mif1 as compatible, and so does HEIC.
    if major in _HEIC_BRANDS:
        return "heic"
    if major in _AVIF_BRANDS:
        return "avif"
    if major in _HEIF_GENERIC_BRANDS:
        if brands & _AVIF_BRANDS and not brands & _HEIC_BRANDS:
            return "avif"
        return "heic"
    if major in _AUDIO_BRANDS:
        return "audio"
    if major in _VIDEO_BRANDS or major.startswith(b"3g"):
        return "video"
    if brands & _HEIC_BRANDS:
        return "heic"
    return "isobmff"


def sniff_image(data: bytes) -> str | None:
    """What ``data`` is, from its magic bytes alone; ``None`` when unrecognised.

    Returns one of :data:`SUPPORTED_RASTER`'s keys or ``"dicom"`` for what HealTrace
    accepts, and a descriptive kind for recognisable files it refuses (``"pdf"``, ``"gif"``,
    ``"tiff"``, ``"zip"``, ``"video"``, …) so the error can name what was sent
    (:func:`describe_kind`). File names and declared MIME types are deliberately ignored.
    """
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "dicom"
    head = data[:32]
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if (ftyp := _sniff_ftyp(data)) is not None:
        return ftyp
    checks: tuple[tuple[bytes, str], ...] = (
        (b"%PDF", "pdf"),
        (b"GIF87a", "gif"),
        (b"GIF89a", "gif"),
        (b"II*\x00", "tiff"),
        (b"MM\x00*", "tiff"),
        (b"II+\x00", "tiff"),
        (b"MM\x00+", "tiff"),
        (b"BM", "bmp"),
        (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jpeg2000"),
        (b"\xff\x4f\xff\x51", "jpeg2000"),
        (b"\xff\x0a", "jxl"),
        (b"\x00\x00\x00\x0cJXL \r\n\x87\n", "jxl"),
        (b"\x00\x00\x01\x00", "ico"),
        (b"8BPS", "psd"),
        (b"PK\x03\x04", "zip"),
        (b"PK\x05\x06", "zip"),
        (b"\x1f\x8b", "gzip"),
        (b"Rar!\x1a\x07", "rar"),
        (b"7z\xbc\xaf\x27\x1c", "7z"),
        (b"\x1a\x45\xdf\xa3", "video"),  # Matroska / WebM
        (b"OggS", "audio"),
        (b"ID3", "audio"),
        (b"fLaC", "audio"),
    )
    for magic, kind in checks:
        if head.startswith(magic):
            return kind
    if head.startswith(b"RIFF") and head[8:12] in (b"WAVE", b"AVI "):
        return "audio" if head[8:12] == b"WAVE" else "video"
    text = head.lstrip().lower()
    if text.startswith((b"<svg", b"<?xml")) and b"<svg" in data[:1024].lower():
        return "svg"
    return None


def describe_kind(kind: str | None) -> str:
    """Short English description of a sniffed kind, for ``image_unsupported_format``."""
    if kind is None:
        return "unrecognised file type"
    return _DESCRIPTIONS.get(kind, kind)


@dataclass(frozen=True)
class LoadedImage:
    """A decoded, upright, metadata-free RGB image and what intake learned on the way."""

    #: RGB, orientation applied, no ``info``/EXIF/ICC — safe to store or show anyone.
    image: Image.Image
    #: Sniffed kind of the upload: ``"jpeg"``, ``"png"``, ``"webp"`` or ``"heic"``.
    format: str
    width: int
    height: int
    #: SHA-256 (hex) of the cleaned pixels; the storage id. See the module docstring.
    sha256: str
    #: The upload carried an EXIF orientation other than "normal" and it was applied.
    orientation_applied: bool
    #: The upload carried GPS tags (now removed); worth telling the patient once.
    had_gps: bool


def _too_many_pixels(width: int | str, height: int | str, max_pixels: int) -> InputError:
    return InputError(
        f"{width}x{height} pixels exceeds {max_pixels}",
        code="image_too_many_pixels",
        width=width,
        height=height,
        limit=f"{max_pixels / 1_000_000:g}",
    )


def _header_size(data: bytes, pil_format: str) -> tuple[int, int] | None:
    """Declared size read by the format plugin directly, bypassing Pillow's bomb guard.

    Used only to put real numbers in the error once Pillow's guard has refused the file.
    """
    plugin: type[Image.Image] | None
    if pil_format == "HEIF":
        from pillow_heif import HeifImageFile

        plugin = HeifImageFile
    else:
        Image.init()
        factory = Image.OPEN.get(pil_format)
        plugin = factory[0] if factory else None  # type: ignore[assignment]
    if plugin is None:
        return None
    try:
        im = plugin(io.BytesIO(data))  # type: ignore[call-arg]
        return im.size
    except Exception:  # noqa: BLE001 — best effort for an error message only
        return None


def _open_header(data: bytes, kind: str, max_pixels: int) -> Image.Image:
    """Open lazily (header only) as exactly the sniffed format and enforce the pixel limit."""
    pil_format = SUPPORTED_RASTER[kind]
    if kind == "heic":
        from pillow_heif import register_heif_opener

        register_heif_opener()
    try:
        im = Image.open(io.BytesIO(data), formats=[pil_format])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # DecompressionBombWarning only arrives here when warnings are errors (tests).
        size = _header_size(data, pil_format)
        width, height = size if size else ("?", "?")
        raise _too_many_pixels(width, height, max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read {kind} header: {exc}", code="image_corrupt") from exc
    width, height = im.size
    if width <= 0 or height <= 0:
        raise InputError("image has no pixels", code="image_corrupt")
    if width * height > max_pixels:
        im.close()
        raise _too_many_pixels(width, height, max_pixels)
    return im


_SRGB = ImageCms.createProfile("sRGB")


def _to_srgb(im: Image.Image) -> Image.Image:
    """Pixels converted to sRGB using the embedded ICC profile, when there is a usable one.

    Phones increasingly shoot Display P3; ignoring the profile would make a tongue look
    less red than it is. A broken profile is ignored rather than failing the upload.
    """
    icc = im.info.get("icc_profile")
    if not icc or im.mode not in ("RGB", "CMYK"):
        return im
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if "srgb" in ImageCms.getProfileDescription(source).lower().replace(" ", ""):
            return im  # already sRGB: skip a full-image transform that changes nothing
        converted = ImageCms.profileToProfile(im, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return im
    return converted if converted is not None else im


def _flatten_to_rgb(im: Image.Image) -> Image.Image:
    """RGB, with transparency composited on white (screenshots of reports are often RGBA)."""
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale PNG: scale to 8 bits instead of clipping at 255.
        im = im.point(lambda v: v / 256).convert("L")
    return im.convert("RGB") if im.mode != "RGB" else im


def _pixel_hash(im: Image.Image) -> str:
    digest = hashlib.sha256(f"{im.mode}:{im.width}x{im.height}\n".encode("ascii"))
    digest.update(im.tobytes())
    return digest.hexdigest()


def load_image(
    data: bytes, *, max_bytes: int = MAX_IMAGE_BYTES, max_pixels: int = MAX_IMAGE_PIXELS
) -> LoadedImage:
    """Decode an uploaded raster image into a clean, upright RGB :class:`LoadedImage`.

    Raises :class:`~healtrace.errors.InputError` with code ``image_empty``,
    ``image_too_large``, ``image_unsupported_format`` (including ``"dicom"``: route it to
    the DICOM reader first, see :func:`sniff_image`), ``image_too_many_pixels`` or
    ``image_corrupt``. The checks run cheapest first; nothing is decoded until the declared
    dimensions are known to be within ``max_pixels``.
    """
    if not data:
        raise InputError("empty upload", code="image_empty")
    if len(data) > max_bytes:
        raise InputError(
            f"{len(data)} bytes exceeds {max_bytes}",
            code="image_too_large",
            size=len(data),
            limit=max_bytes,
        )
    kind = sniff_image(data)
    if kind not in SUPPORTED_RASTER:
        raise InputError(describe_kind(kind), code="image_unsupported_format")

    im = _open_header(data, kind, max_pixels)
    try:
        # No warnings.catch_warnings() here: it mutates process-wide state and is not
        # thread-safe, and intake runs in worker threads. Damage that matters raises OSError.
        im.load()
        exif = im.getexif()
        orientation = exif.get(0x0112, 1)
        had_gps = bool(exif.get(0x8825)) or bool(exif.get_ifd(0x8825))
        rotated = orientation not in (None, 0, 1)
        upright = ImageOps.exif_transpose(im) if rotated else im
        rgb = _flatten_to_rgb(_to_srgb(upright))
        # A fresh image holds pixels only: no info dict, no cached EXIF, no ICC, no XMP.
        clean = Image.new("RGB", rgb.size)
        clean.paste(rgb)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"cannot decode {kind}: {exc}", code="image_corrupt") from exc
    finally:
        im.close()

    return LoadedImage(
        image=clean,
        format=kind,
        width=clean.width,
        height=clean.height,
        sha256=_pixel_hash(clean),
        orientation_applied=rotated,
        had_gps=had_gps,
    )


# --------------------------------------------------------------------------- storage

_TENANT_RE: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
_ID_RE: Final = re.compile(r"[0-9a-f]{64}")
_EXT_RE: Final = re.compile(r"[a-z0-9]{1,8}")
_KIND_RE: Final = re.compile(r"[a-z0-9_-]{1,32}")
#: File extension -> the ``format`` reported by :meth:`ImageStore.open`.
_EXT_FORMATS: Final[dict[str, str]] = {
    "jpg": "jpeg",
    "jpeg": "jpeg",
    "png": "png",
    "webp": "webp",
    "dcm": "dicom",
}
_THUMB_SUFFIX: Final = ".thumb.jpg"


@dataclass(frozen=True)
class StoredImage:
    """One stored file of a tenant, addressed by its content hash."""

    id: str
    tenant_id: str
    #: ``"jpeg"``/``"png"`` for re-encoded photos; the kind given to ``save_bytes`` otherwise.
    format: str
    #: Pixel size; ``None`` when the file is not an image Pillow or pydicom can size.
    width: int | None
    height: int | None
    path: Path
    #: ``None`` for files without a picture we can render (e.g. a DICOM without preview).
    thumbnail_path: Path | None
    size_bytes: int


def _check_tenant(tenant_id: str) -> str:
    if not isinstance(tenant_id, str) or not _TENANT_RE.fullmatch(tenant_id):
        raise InputError("tenant id must match [A-Za-z0-9_-]{1,64}", code="invalid_event")
    return tenant_id


def _atomic_write(path: Path, data: bytes) -> None:
    """Write via a temporary file in the same directory and rename: readers never see half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _thumbnail_bytes(image: Image.Image) -> bytes:
    thumb = image.convert("RGB")
    thumb.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    thumb.save(buf, format="JPEG", quality=85)
    return buf.getvalue()


class ImageStore:
    """Content-addressed, per-tenant image files under ``root``.

    Layout: ``root/<tenant>/<id[:2]>/<id>.<ext>`` plus ``<id>.thumb.jpg`` next to it. The
    tenant is part of every path, so one tenant cannot reach another's file even with its
    id (it gets ``image_not_found``, exactly as for an id that never existed). Tenant ids
    are validated against ``[A-Za-z0-9_-]{1,64}`` and image ids against 64 hex digits
    before they touch a path, which rules out traversal (``..``, ``/``, absolute paths).
    Writes are atomic and idempotent: the thumbnail is written before the main file, so a
    present main file implies a complete entry, and saving existing content is a no-op.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _dir(self, tenant_id: str, image_id: str) -> Path:
        return self.root / _check_tenant(tenant_id) / image_id[:2]

    def save(self, tenant_id: str, loaded: LoadedImage) -> StoredImage:
        """Store the cleaned image re-encoded (PNG for PNG uploads, else JPEG q95 4:4:4).

        Re-encoding from the metadata-free pixels guarantees nothing of the upload (EXIF,
        GPS, XMP, ICC) reaches disk. PNG uploads are usually screenshots of reports where
        lossless text edges matter; photos are stored as high-quality JPEG.
        """
        directory = self._dir(tenant_id, loaded.sha256)
        ext = "png" if loaded.format == "png" else "jpg"
        path = directory / f"{loaded.sha256}.{ext}"
        thumb = directory / f"{loaded.sha256}{_THUMB_SUFFIX}"
        if not path.exists():
            if not thumb.exists():
                _atomic_write(thumb, _thumbnail_bytes(loaded.image))
            buf = io.BytesIO()
            if ext == "png":
                loaded.image.save(buf, format="PNG", compress_level=6)
            else:
                loaded.image.save(buf, format="JPEG", quality=_JPEG_QUALITY, subsampling=0)
            _atomic_write(path, buf.getvalue())
        return StoredImage(
            id=loaded.sha256,
            tenant_id=tenant_id,
            format=_EXT_FORMATS[ext],
            width=loaded.width,
            height=loaded.height,
            path=path,
            thumbnail_path=thumb,
            size_bytes=path.stat().st_size,
        )

    def save_bytes(self, tenant_id: str, kind: str, data: bytes, ext: str) -> StoredImage:
        """Store bytes someone else already de-identified (a DICOM file or its preview).

        The bytes are written as given, under their SHA-256, in the same layout as
        :meth:`save`. ``kind`` is reported back as the ``format``; when the bytes are a
        raster image Pillow can open, a thumbnail is made too. The caller is responsible
        for the de-identification — this method does not inspect DICOM tags.
        """
        _check_tenant(tenant_id)
        ext = ext.lower().lstrip(".")
        if not _EXT_RE.fullmatch(ext) or ext == "thumb":
            raise InputError("file extension must be 1-8 lowercase letters or digits")
        if not _KIND_RE.fullmatch(kind):
            raise InputError("kind must be 1-32 lowercase letters, digits, - or _")
        if not data:
            raise InputError("empty file", code="image_empty")
        image_id = hashlib.sha256(data).hexdigest()
        directory = self._dir(tenant_id, image_id)
        path = directory / f"{image_id}.{ext}"
        thumb = directory / f"{image_id}{_THUMB_SUFFIX}"
        if not path.exists():
            preview = _raster_thumbnail(data)
            if preview is not None and not thumb.exists():
                _atomic_write(thumb, preview)
            _atomic_write(path, data)
        width, height = _file_size_px(path)
        return StoredImage(
            id=image_id,
            tenant_id=tenant_id,
            format=kind,
            width=width,
            height=height,
            path=path,
            thumbnail_path=thumb if thumb.exists() else None,
            size_bytes=path.stat().st_size,
        )

    def open(self, tenant_id: str, image_id: str) -> StoredImage:
        """The stored file ``image_id`` of ``tenant_id``; ``image_not_found`` otherwise."""
        _check_tenant(tenant_id)
        if not isinstance(image_id, str) or not _ID_RE.fullmatch(image_id):
            raise InputError("malformed image id", code="image_not_found")
        directory = self._dir(tenant_id, image_id)
        candidates = sorted(
            p
            for p in directory.glob(f"{image_id}.*")
            if not p.name.endswith(_THUMB_SUFFIX) and not p.name.startswith(".tmp-")
        )
        if not candidates:
            raise InputError("no such image for this tenant", code="image_not_found")
        path = candidates[0]
        ext = path.suffix.lstrip(".")
        thumb = directory / f"{image_id}{_THUMB_SUFFIX}"
        width, height = _file_size_px(path)
        return StoredImage(
            id=image_id,
            tenant_id=tenant_id,
            format=_EXT_FORMATS.get(ext, ext),
            width=width,
            height=height,
            path=path,
            thumbnail_path=thumb if thumb.exists() else None,
            size_bytes=path.stat().st_size,
        )


def _raster_thumbnail(data: bytes) -> bytes | None:
    """A thumbnail when ``data`` is a raster image we accept; ``None`` for anything else."""
    if sniff_image(data) not in SUPPORTED_RASTER:
        return None
    try:
        return _thumbnail_bytes(load_image(data).image)
    except InputError:
        return None


def _file_size_px(path: Path) -> tuple[int | None, int | None]:
    """Pixel size from the stored file's header (no decode); DICOM via Rows/Columns."""
    if path.suffix == ".dcm":
        try:
            import pydicom

            ds = pydicom.dcmread(path, stop_before_pixels=True)
            rows, cols = ds.get("Rows"), ds.get("Columns")
            return (int(cols), int(rows)) if rows and cols else (None, None)
        except Exception:  # noqa: BLE001 — sizing is informational only
            return None, None
    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, Image.DecompressionBombError, ValueError):
        return None, None
