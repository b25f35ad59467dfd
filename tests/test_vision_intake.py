"""Image intake: sniffing, limits before decode, EXIF orientation and metadata removal, storage.

Every image is synthesised here; nothing is downloaded.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import ExifTags, Image, ImageCms, ImageFile

from healtrace.errors import InputError
from healtrace.vision.intake import (
    THUMBNAIL_SIZE,
    ImageStore,
    LoadedImage,
    describe_kind,
    load_image,
    sniff_image,
)


def _pattern(width: int = 400, height: int = 300, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def _encode(im: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _heic(im: Image.Image) -> bytes:
    pillow_heif.register_heif_opener()
    return _encode(im, "HEIF", quality=90)


def _code(exc: pytest.ExceptionInfo[InputError]) -> str:
    return exc.value.code


# --------------------------------------------------------------------------- sniffing


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\xff\xd8\xff\xe0" + b"\0" * 40, "jpeg"),
        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "png"),
        (b"RIFF\0\0\0\0WEBPVP8 " + b"\0" * 40, "webp"),
        (b"\0\0\0\x18ftypheic\0\0\0\0mif1heic", "heic"),
        (b"\0\0\0\x18ftypmif1\0\0\0\0mif1heic", "heic"),
        (b"\0\0\0\x1cftypavif\0\0\0\0avifmif1miaf", "avif"),
        (b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif", "avif"),
        (b"\0\0\0\x18ftypisom\0\0\0\0isomavc1", "video"),
        (b"\0\0\0\x14ftypqt  \0\0\0\0qt  ", "video"),
        (b"\0" * 128 + b"DICM" + b"\0" * 20, "dicom"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n", "pdf"),
        (b"GIF89a" + b"\0" * 20, "gif"),
        (b"II*\0" + b"\0" * 20, "tiff"),
        (b"PK\x03\x04" + b"\0" * 20, "zip"),
        (b"hello, this is text", None),
        (b"", None),
    ],
)
def test_sniff_by_magic_bytes(data: bytes, kind: str | None) -> None:
    assert sniff_image(data) == kind


def test_sniff_real_encodings() -> None:
    im = _pattern(64, 48)
    assert sniff_image(_encode(im, "JPEG")) == "jpeg"
    assert sniff_image(_encode(im, "PNG")) == "png"
    assert sniff_image(_encode(im, "WEBP")) == "webp"
    assert sniff_image(_heic(im)) == "heic"
    assert sniff_image(_encode(im, "GIF")) == "gif"
    assert sniff_image(_encode(im, "TIFF")) == "tiff"
    assert describe_kind("pdf") == "PDF document"
    assert describe_kind(None) == "unrecognised file type"


# --------------------------------------------------------------------------- loading


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "HEIC"])
def test_each_format_loads_as_clean_rgb(fmt: str) -> None:
    im = _pattern(320, 240)
    data = _heic(im) if fmt == "HEIC" else _encode(im, fmt)
    loaded = load_image(data)
    assert loaded.format == {"WEBP": "webp", "HEIC": "heic"}.get(fmt, fmt.lower())
    assert (loaded.width, loaded.height) == (320, 240)
    assert loaded.image.mode == "RGB"
    assert loaded.image.info == {}
    assert len(loaded.sha256) == 64
    assert not loaded.orientation_applied
    assert not loaded.had_gps


def test_png_is_lossless_and_hash_is_of_the_pixels() -> None:
    im = _pattern(50, 40)
    loaded = load_image(_encode(im, "PNG"))
    assert np.array_equal(np.asarray(loaded.image), np.asarray(im))
    # Same pixels, different container metadata → same id.
    again = load_image(_encode(im, "PNG", dpi=(300, 300)))
    assert again.sha256 == loaded.sha256


def test_transparent_png_is_flattened_on_white() -> None:
    im = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    loaded = load_image(_encode(im, "PNG"))
    assert loaded.image.getpixel((5, 5)) == (255, 255, 255)


def _oriented_jpeg_with_gps() -> bytes:
    # 200×100 stored: left half red, right half blue; orientation 6 = rotate 90° clockwise.
    arr = np.zeros((100, 200, 3), np.uint8)
    arr[:, :100] = (255, 0, 0)
    arr[:, 100:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "PhoneMaker"
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (39.0, 54.0, 27.0)
    gps[3] = "E"
    gps[4] = (116.0, 23.0, 50.0)
    return _encode(Image.fromarray(arr), "JPEG", exif=exif.tobytes(), quality=95)


def test_exif_orientation_applied_and_gps_dropped(tmp_path: Path) -> None:
    data = _oriented_jpeg_with_gps()
    with Image.open(io.BytesIO(data)) as original:
        assert original.getexif().get_ifd(0x8825)  # the fixture really carries GPS

    loaded = load_image(data)
    assert loaded.orientation_applied
    assert loaded.had_gps
    assert (loaded.width, loaded.height) == (100, 200)
    top = loaded.image.getpixel((50, 20))
    bottom = loaded.image.getpixel((50, 180))
    assert isinstance(top, tuple)
    assert isinstance(bottom, tuple)
    assert top[0] > 200 and top[2] < 60  # the red (left) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60

    stored = ImageStore(tmp_path).save("clinic-1", loaded)
    raw = stored.path.read_bytes()
    assert b"Exif" not in raw
    assert b"PhoneMaker" not in raw
    with Image.open(stored.path) as reopened:
        assert reopened.size == (100, 200)
        exif = reopened.getexif()
        assert len(exif) == 0
        assert "GPSInfo" not in {ExifTags.TAGS.get(k) for k in exif}
        assert not exif.get_ifd(0x8825)
        assert "exif" not in reopened.info
        assert "icc_profile" not in reopened.info
    assert stored.thumbnail_path is not None
    with Image.open(stored.thumbnail_path) as thumb:
        assert len(thumb.getexif()) == 0


def test_icc_profile_is_applied_then_dropped() -> None:
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    loaded = load_image(_encode(_pattern(40, 30), "JPEG", icc_profile=srgb))
    assert "icc_profile" not in loaded.image.info


def test_pdf_named_jpg_is_refused_by_content() -> None:
    pdf = b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n%%EOF\n"
    with pytest.raises(InputError) as exc:
        load_image(pdf)
    assert _code(exc) == "image_unsupported_format"
    assert "PDF document" in exc.value.message("en")
    assert "PDF document" in exc.value.message("zh-CN")


def test_dicom_is_not_decoded_here() -> None:
    with pytest.raises(InputError) as exc:
        load_image(b"\0" * 128 + b"DICM" + b"\0" * 64)
    assert _code(exc) == "image_unsupported_format"
    assert "DICOM" in exc.value.message("en")


def test_huge_png_refused_from_header(monkeypatch: pytest.MonkeyPatch) -> None:
    # 20000×20000 1-bit PNG: ~50 KB on disk, 1.2 GB as RGB. Beyond Pillow's own bomb limit.
    data = _encode(Image.new("1", (20000, 20000)), "PNG")
    assert len(data) < 200_000

    def no_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(InputError) as exc:
        load_image(data)
    assert _code(exc) == "image_too_many_pixels"
    assert exc.value.params == {"width": 20000, "height": 20000, "limit": "40"}
    assert "20000×20000" in exc.value.message("en")


def test_our_pixel_limit_applies_before_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    # Under Pillow's bomb limit but over ours: our header check must stop it.
    data = _encode(Image.new("1", (3000, 3000)), "PNG")

    def no_decode(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decode)
    with pytest.raises(InputError) as exc:
        load_image(data, max_pixels=1_000_000)
    assert _code(exc) == "image_too_many_pixels"
    assert exc.value.params["limit"] == "1"


def test_pillow_bomb_warning_band_is_refused() -> None:
    # 9500² ≈ 90 MP sits where Pillow only *warns*; pytest makes warnings errors, production
    # does not — either way the answer is image_too_many_pixels.
    data = _encode(Image.new("1", (9500, 9500)), "PNG")
    with pytest.raises(InputError) as exc:
        load_image(data)
    assert _code(exc) == "image_too_many_pixels"


def test_truncated_jpeg_is_corrupt() -> None:
    data = _encode(_pattern(400, 300), "JPEG", quality=90)
    with pytest.raises(InputError) as exc:
        load_image(data[: len(data) // 2])
    assert _code(exc) == "image_corrupt"
    assert not ImageFile.LOAD_TRUNCATED_IMAGES


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "HEIC"])
def test_truncated_other_formats_are_corrupt(fmt: str) -> None:
    im = _pattern(400, 300)
    data = _heic(im) if fmt == "HEIC" else _encode(im, fmt)
    with pytest.raises(InputError) as exc:
        load_image(data[: len(data) // 2])
    assert _code(exc) == "image_corrupt"


def test_garbage_after_magic_is_corrupt() -> None:
    with pytest.raises(InputError) as exc:
        load_image(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 10)
    assert _code(exc) == "image_corrupt"


def test_empty_and_too_large() -> None:
    with pytest.raises(InputError) as exc:
        load_image(b"")
    assert _code(exc) == "image_empty"

    data = _encode(_pattern(200, 200), "PNG")
    with pytest.raises(InputError) as exc:
        load_image(data, max_bytes=len(data) - 1)
    assert _code(exc) == "image_too_large"
    assert exc.value.params == {"size": len(data), "limit": len(data) - 1}


def test_error_messages_exist_in_both_languages() -> None:
    errors = []
    cases: list[tuple[bytes, dict[str, int]]] = [
        (b"", {}),
        (b"%PDF-1.4", {}),
        (_encode(_pattern(8, 8), "PNG"), {"max_bytes": 10}),
        (_encode(Image.new("1", (3000, 3000)), "PNG"), {"max_pixels": 1000}),
        (b"\xff\xd8\xff\xe0junk", {}),
    ]
    for data, kwargs in cases:
        with pytest.raises(InputError) as exc:
            load_image(data, **kwargs)
        errors.append(exc.value)
    for err in errors:
        en, zh = err.message("en"), err.message("zh")
        assert en and zh and en != zh
        assert "{" not in en and "{" not in zh, err.code


# --------------------------------------------------------------------------- storage


@pytest.fixture
def loaded() -> LoadedImage:
    return load_image(_encode(_pattern(800, 600), "JPEG", quality=92))


def test_store_is_idempotent_and_makes_a_thumbnail(tmp_path: Path, loaded: LoadedImage) -> None:
    store = ImageStore(tmp_path)
    first = store.save("tenant_A", loaded)
    mtime = first.path.stat().st_mtime_ns
    second = store.save("tenant_A", loaded)
    assert second == first
    assert first.path.stat().st_mtime_ns == mtime
    assert first.path == tmp_path / "tenant_A" / first.id[:2] / f"{first.id}.jpg"
    assert (first.width, first.height, first.format) == (800, 600, "jpeg")
    assert first.size_bytes == first.path.stat().st_size
    assert first.thumbnail_path is not None
    with Image.open(first.thumbnail_path) as thumb:
        assert max(thumb.size) <= THUMBNAIL_SIZE
    assert not list(tmp_path.rglob(".tmp-*"))
    assert store.open("tenant_A", first.id) == first


def test_png_upload_stored_lossless(tmp_path: Path) -> None:
    im = _pattern(64, 64)
    stored = ImageStore(tmp_path).save("t", load_image(_encode(im, "PNG")))
    assert stored.path.suffix == ".png"
    with Image.open(stored.path) as back:
        assert np.array_equal(np.asarray(back.convert("RGB")), np.asarray(im))


def test_other_tenant_cannot_open(tmp_path: Path, loaded: LoadedImage) -> None:
    store = ImageStore(tmp_path)
    stored = store.save("tenant_A", loaded)
    with pytest.raises(InputError) as exc:
        store.open("tenant_B", stored.id)
    assert _code(exc) == "image_not_found"
    with pytest.raises(InputError) as exc:
        store.open("tenant_A", "0" * 64)
    assert _code(exc) == "image_not_found"
    with pytest.raises(InputError) as exc:
        store.open("tenant_A", "../" + stored.id)
    assert _code(exc) == "image_not_found"


@pytest.mark.parametrize("tenant", ["", "../etc", "a/b", "a\\b", ".", "x" * 65, "tenant.1", "é"])
def test_bad_tenant_ids_refused(tmp_path: Path, loaded: LoadedImage, tenant: str) -> None:
    store = ImageStore(tmp_path)
    with pytest.raises(InputError):
        store.save(tenant, loaded)
    with pytest.raises(InputError):
        store.open(tenant, loaded.sha256)
    with pytest.raises(InputError):
        store.save_bytes(tenant, "dicom", b"x", "dcm")
    assert not any(tmp_path.iterdir())


def test_save_bytes_dicom_and_preview(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    fake_dicom = b"\0" * 128 + b"DICM" + b"\0" * 64
    stored = store.save_bytes("t1", "dicom", fake_dicom, "dcm")
    assert stored.format == "dicom"
    assert stored.thumbnail_path is None
    assert stored.path.read_bytes() == fake_dicom
    assert stored.path.parent == tmp_path / "t1" / stored.id[:2]
    assert store.save_bytes("t1", "dicom", fake_dicom, "dcm") == stored

    png = _encode(_pattern(600, 300), "PNG")
    preview = store.save_bytes("t1", "dicom-preview", png, "png")
    assert (preview.width, preview.height) == (600, 300)
    assert preview.thumbnail_path is not None
    with Image.open(preview.thumbnail_path) as thumb:
        assert max(thumb.size) <= THUMBNAIL_SIZE
    assert store.open("t1", preview.id).format == "png"
    with pytest.raises(InputError):
        store.save_bytes("t1", "dicom", fake_dicom, "../x")
    with pytest.raises(InputError):
        store.save_bytes("t1", "Dicom/..", fake_dicom, "dcm")
