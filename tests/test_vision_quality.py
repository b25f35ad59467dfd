"""Photo quality checks on synthetic scenes: each defect is introduced on purpose and flagged."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image

from healtrace.vision.quality import ANALYSIS_SIZE, QualityReport, check_quality

U8 = npt.NDArray[np.uint8]


def _scene(width: int = 1200, height: int = 900, seed: int = 0) -> U8:
    """Mid-grey background, coloured blocks and dark text: textured and neutral on average."""
    rng = np.random.default_rng(seed)
    img = np.full((height, width, 3), 128, np.uint8)
    for _ in range(60):
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(20, 200)), int(rng.integers(20, 200))
        cv2.rectangle(img, (x, y), (x + w, y + h), colour, -1)
    for i in range(height // 90):
        cv2.putText(
            img,
            "Potassium 4.2 mmol/L",
            (20, 60 + i * 80),
            cv2.FONT_HERSHEY_SIMPLEX,
            1.2,
            (20,) * 3,
            2,
        )
    return img


def _face(centre: tuple[int, int], axes: tuple[int, int] = (180, 120)) -> U8:
    """A textured skin-toned frame with a pink ellipse for the tongue."""
    img = (_scene(seed=1) // 2 + np.array([90, 70, 55], np.uint8)).astype(np.uint8)
    cv2.ellipse(img, centre, axes, 0, 0, 360, (200, 90, 110), -1)
    return img


def _tint(img: U8, gains: tuple[float, float, float]) -> U8:
    tinted: U8 = np.clip(img * np.array(gains), 0, 255).astype(np.uint8)
    return tinted


def test_sharp_well_exposed_scene_passes() -> None:
    report = check_quality(_scene())
    assert report.ok, report.to_dict()
    assert report.issues == ()
    for key in ("blur_laplacian_var", "luma_mean", "cast_red_blue", "short_side"):
        assert key in report.metrics
    assert check_quality(Image.fromarray(_scene()), purpose="document").ok


def test_blurred_copy_is_flagged() -> None:
    sharp = _scene()
    blurred = cv2.GaussianBlur(sharp, (0, 0), 6)
    report = check_quality(blurred)
    assert report.codes == {"blurry"}
    blur = report.issues[0]
    assert blur.value < blur.threshold < check_quality(sharp).metrics["blur_laplacian_var"]


def test_blur_score_does_not_depend_on_resolution() -> None:
    scene = _scene(2400, 1800)
    half: U8 = np.asarray(cv2.resize(scene, (1200, 900), interpolation=cv2.INTER_AREA))
    big = check_quality(scene).metrics["blur_laplacian_var"]
    small = check_quality(half).metrics["blur_laplacian_var"]
    assert small == pytest.approx(big, rel=0.25)

    # Measured at native resolution instead, the two would differ by far more.
    def native(img: U8) -> float:
        return float(cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())

    assert native(half) / native(scene) > 1.5


def test_dark_and_bright() -> None:
    dark = check_quality((_scene() * 0.25).astype(np.uint8))
    assert dark.codes == {"too_dark"}  # blur is not reported on top of darkness
    bright = check_quality(np.clip(_scene().astype(int) + 150, 0, 255).astype(np.uint8))
    assert "too_bright" in bright.codes
    # White paper is bright on purpose: a document may be brighter than a photo.
    paper = np.full((1200, 900, 3), 225, np.uint8)
    cv2.putText(paper, "ALT 35 U/L", (50, 600), cv2.FONT_HERSHEY_SIMPLEX, 3, (0, 0, 0), 6)
    assert "too_bright" in check_quality(paper).codes
    assert "too_bright" not in check_quality(paper, purpose="document").codes


@pytest.mark.parametrize("gains", [(1.4, 1.0, 0.6), (0.6, 1.0, 1.4), (0.8, 1.3, 0.8)])
def test_colour_cast(gains: tuple[float, float, float]) -> None:
    report = check_quality(_tint(_scene(), gains))
    assert report.codes == {"colour_cast"}


def test_too_small_depends_on_purpose() -> None:
    small = cv2.resize(_scene(), (400, 300), interpolation=cv2.INTER_AREA)
    assert check_quality(small).codes == {"too_small"}
    medium = cv2.resize(_scene(), (960, 720), interpolation=cv2.INTER_AREA)
    assert check_quality(medium).ok
    assert "too_small" in check_quality(medium, purpose="document").codes


def test_tongue_centred_passes() -> None:
    report = check_quality(_face((600, 450)), purpose="tongue")
    assert report.ok, report.to_dict()
    assert report.metrics["tongue_coverage"] > 0.05
    assert report.metrics["tongue_offset"] < 0.1


def test_tongue_in_corner_is_not_centred() -> None:
    report = check_quality(_face((150, 120), (120, 80)), purpose="tongue")
    assert "not_centred" in report.codes
    assert report.metrics["tongue_offset"] > 0.25


def test_tongue_too_small_in_frame_is_not_centred() -> None:
    report = check_quality(_face((600, 450), (40, 30)), purpose="tongue")
    assert "not_centred" in report.codes
    assert report.metrics["tongue_coverage"] < 0.05


def test_tongue_check_only_for_tongue_purpose() -> None:
    report = check_quality(_face((150, 120), (120, 80)))
    assert "tongue_coverage" not in report.metrics
    assert "not_centred" not in report.codes


def test_warm_light_on_tongue_photo_is_flagged_with_tongue_advice() -> None:
    report = check_quality(_tint(_face((600, 450)), (1.3, 1.0, 0.65)), purpose="tongue")
    assert "colour_cast" in report.codes
    cast = next(i for i in report.issues if i.code == "colour_cast")
    assert "tongue" in cast.message_en
    assert "舌" in cast.message_zh


def test_messages_in_both_languages_and_to_dict() -> None:
    dark_small = (cv2.resize(_scene(), (200, 150)) * 0.2).astype(np.uint8)
    report = check_quality(dark_small)
    assert isinstance(report, QualityReport)
    assert {"too_dark", "too_small"} <= report.codes
    for issue in report.issues:
        assert issue.message_en and issue.message_zh
        assert issue.message_en != issue.message_zh
    en, zh = report.to_dict("en"), report.to_dict("zh-CN")
    assert en["ok"] is False
    assert [i["code"] for i in en["issues"]] == [i["code"] for i in zh["issues"]]
    assert en["issues"][0]["message"] == report.issues[0].message_en
    assert zh["issues"][0]["message"] == report.issues[0].message_zh
    assert set(en["issues"][0]) == {"code", "value", "threshold", "message"}


def test_accepts_pil_grey_and_array_inputs() -> None:
    grey = cv2.cvtColor(_scene(), cv2.COLOR_RGB2GRAY)
    assert check_quality(grey).ok
    assert check_quality(Image.fromarray(grey)).ok
    assert check_quality(Image.fromarray(_scene()).convert("RGBA")).ok
    # Images smaller than the analysis size are analysed as they are, not upscaled (blurred).
    assert check_quality(_scene(ANALYSIS_SIZE // 2, ANALYSIS_SIZE // 2)).codes == {"too_small"}
    with pytest.raises(ValueError):
        check_quality(_scene(), purpose="selfie")
    with pytest.raises(ValueError):
        check_quality(np.zeros((10, 10, 3), np.float32))


def test_pil_and_array_inputs_measure_alike() -> None:
    scene = _scene(2400, 1800)
    from_array = check_quality(scene).metrics
    from_pil = check_quality(Image.fromarray(scene)).metrics
    for key in ("blur_laplacian_var", "luma_mean", "cast_red_blue"):
        assert from_pil[key] == pytest.approx(from_array[key], rel=0.1, abs=0.02), key
    assert (from_pil["width"], from_pil["height"]) == (2400, 1800)
