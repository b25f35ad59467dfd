"""Is this photo good enough to analyse? Cheap checks that tell the patient what to fix.

A blurry, dark or orange-tinted photo gives a wrong answer with full confidence, so before a
photo reaches OCR or the image model we measure a few things and, when one is off, say in
the patient's language what to do differently ("hold the phone still", "turn on a light").
All checks are heuristics on a downscaled copy and take a few milliseconds; they flag likely
problems, they do not prove a photo is good.

Metrics and thresholds (module constants below; the comment at each gives the reasoning):

``blur_laplacian_var``
    Variance of the Laplacian of the greyscale image area-averaged down so its long side is
    :data:`ANALYSIS_SIZE` px (smaller images are not upscaled: interpolation would blur
    them). Sharp edges give large second derivatives; defocus and motion blur remove them.
    Resizing first makes the number independent of the camera resolution
    (a 12 MP photo is not "sharper" than a 1080p one of the same scene). Flagged ``blurry``
    below :data:`BLUR_MIN_VARIANCE` (documents: :data:`BLUR_MIN_VARIANCE_DOCUMENT`). The
    Laplacian also scales with contrast, so ``blurry`` is not reported for a ``too_dark``
    photo: more light is the advice that helps, and the next photo is judged again.
``luma_mean``, ``dark_fraction``, ``bright_fraction``
    Mean Rec.601 luma (0-255) and the fractions of pixels at or below
    :data:`DARK_CLIP_LEVEL` / at or above :data:`BRIGHT_CLIP_LEVEL`. ``too_dark`` when the
    mean or the crushed-shadow fraction is past its limit; ``too_bright`` likewise for
    highlights. Documents are allowed a brighter mean because white paper *should* be bright.
``cast_red_blue``, ``cast_green_magenta``
    Grey-world estimate: averaged over a scene, colours are roughly neutral, so
    ``log(mean R / mean B)`` measures a warm (+) or cool (−) cast and
    ``log(mean G / mean(R, B))`` a green (+) or magenta (−) one. Near-clipped pixels are
    excluded (they carry no colour). For tongue photos the tongue-coloured region itself is
    excluded and the warm limit is asymmetric: a face is naturally warm, but tungsten or
    phone "warm" filters shift a pale tongue towards red — exactly the colour change a TCM
    reading looks at — so the warm limit is what matters there.
``short_side``
    ``too_small`` when the short side of the original is below :data:`MIN_SHORT_SIDE`
    (:data:`MIN_SHORT_SIDE_DOCUMENT` for documents, where small print must stay legible).
``tongue_coverage``, ``tongue_offset`` (``purpose="tongue"`` only)
    Pixels with a clearly red/pink hue (Lab a* high, HSV saturation and value not low) form
    a mask; the largest connected blob is taken as the tongue (lips and reflections are
    smaller). ``not_centred`` when it covers less than :data:`TONGUE_MIN_COVERAGE` of the
    frame, or when its centroid is more than :data:`TONGUE_MAX_OFFSET` from the centre
    (distance in fractions of width/height). This is a framing hint, not tongue detection.

Input arrays are ``H×W×3`` RGB (or ``H×W`` greyscale) ``uint8``; PIL images are converted
to RGB.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

__all__ = [
    "ANALYSIS_SIZE",
    "Purpose",
    "QualityIssue",
    "QualityReport",
    "check_quality",
]

Purpose = Literal["general", "tongue", "document"]

#: Long side of the analysis copy. 512 px keeps text strokes and tongue texture visible while
#: making every check cost a few milliseconds and making blur scores resolution-independent.
ANALYSIS_SIZE: Final = 512

#: Laplacian variance on the 512 px copy. In-focus phone photos score in the hundreds to
#: thousands; a Gaussian blur of σ≈2 px at this scale (visibly soft) drops typical scenes
#: below ~60. Plain, low-texture scenes also score low, so the limit is kept modest.
BLUR_MIN_VARIANCE: Final = 60.0
#: Documents are mostly high-contrast text; a legible page scores far higher than a photo,
#: and text starts to become unreadable for OCR well before a photo "looks" blurry.
BLUR_MIN_VARIANCE_DOCUMENT: Final = 150.0

#: Luma levels counted as crushed shadows / blown highlights (8-bit).
DARK_CLIP_LEVEL: Final = 10
BRIGHT_CLIP_LEVEL: Final = 250
#: Mean luma below 50 (of 255) is a photo taken in a dim room; colours and text are noise.
DARK_MAX_MEAN: Final = 50.0
#: More than 40% crushed shadows means the subject is probably lost in them.
DARK_MAX_FRACTION: Final = 0.40
#: Mean luma above 215 is overexposed for a face or tongue; paper is allowed up to 240.
BRIGHT_MAX_MEAN: Final = 215.0
BRIGHT_MAX_MEAN_DOCUMENT: Final = 240.0
#: More than 25% blown highlights (flash glare, window behind) loses detail; white paper is
#: legitimately near 250 over much of a document photo, so documents get 60%.
BRIGHT_MAX_FRACTION: Final = 0.25
BRIGHT_MAX_FRACTION_DOCUMENT: Final = 0.60

#: |log(R/B)| above 0.5 (a ratio of ~1.65) is a cast a viewer notices in an average scene.
CAST_MAX_RED_BLUE: Final = 0.5
#: Tongue photos are framed on a face, which is warm under neutral light (R/B ≈ 1.3-1.6,
#: log ≈ 0.26-0.47). Tungsten light pushes it past 2 (log ≈ 0.7); the cool side only needs
#: a small shift before skin turns blue.
CAST_MAX_WARM_TONGUE: Final = 0.7
CAST_MAX_COOL_TONGUE: Final = -0.15
#: |log(G / mean(R, B))| above 0.35 (~1.4×) is a visible green (fluorescent) or magenta cast.
CAST_MAX_GREEN_MAGENTA: Final = 0.35

#: 320 px on the short side is the least a model or a clinician can read a photo at.
MIN_SHORT_SIDE: Final = 320
#: Lab reports have small print; below ~800 px across, digits blur into each other.
MIN_SHORT_SIDE_DOCUMENT: Final = 800

#: Lab a* (OpenCV 8-bit: 128 is neutral) at or above this is "clearly red/pink". Skin sits
#: around 138-150, tongue and lips around 155-180.
TONGUE_MIN_A: Final = 152
#: A tongue filling the usual framing covers 10-30% of the frame; under 5% it is too far.
TONGUE_MIN_COVERAGE: Final = 0.05
#: Centroid more than a quarter of the frame from the centre is "in a corner".
TONGUE_MAX_OFFSET: Final = 0.25

#: code -> (English, Chinese) advice for the patient.
_ADVICE: Final[dict[str, tuple[str, str]]] = {
    "blurry": (
        "The photo is blurry. Hold the phone still, tap the screen to focus, and take it again.",
        "照片模糊。请保持手机稳定，点击屏幕对焦后重新拍摄。",
    ),
    "too_dark": (
        "The photo is too dark. Move to a brighter place or turn on a light, and try again.",
        "照片太暗。请到光线更充足的地方或打开灯后重新拍摄。",
    ),
    "too_bright": (
        "The photo is too bright or has glare. Avoid direct flash and bright windows behind "
        "the subject.",
        "照片过亮或有反光。请避免直接使用闪光灯，也不要背对明亮的窗户拍摄。",
    ),
    "colour_cast": (
        "The colours look tinted by the light. Take the photo in daylight or white light, "
        "without filters or warm/night modes.",
        "照片颜色受光线影响偏色。请在自然光或白光下拍摄，不要使用滤镜或暖光/夜间模式。",
    ),
    "colour_cast_tongue": (
        "The light is tinting the photo, which changes how the tongue's colour looks. Take it "
        "in daylight or white light, without filters, beauty or warm modes.",
        "光线使照片偏色，会改变舌头颜色的判断。请在自然光或白光下拍摄，不要使用滤镜、美颜或暖光模式。",
    ),
    "too_small": (
        "The image is too small to read clearly. Send the original photo rather than a "
        "thumbnail or screenshot.",
        "图片分辨率太低，无法看清。请发送原图，而不是缩略图或截图。",
    ),
    "too_small_document": (
        "The image is too small to read the report's text. Send the original photo, taken "
        "close enough that the page fills the frame.",
        "图片分辨率太低，无法看清报告文字。请发送原图，并靠近拍摄使报告占满画面。",
    ),
    "not_centred": (
        "The tongue is not clearly in the middle of the photo. Stick your tongue out, keep it "
        "in the centre of the frame, and come a little closer.",
        "舌头没有位于照片中央。请伸出舌头，使其位于画面中间，并适当靠近拍摄。",
    ),
}


@dataclass(frozen=True)
class QualityIssue:
    """One problem found, the measurement behind it, and advice in English and Chinese."""

    code: str
    value: float
    threshold: float
    message_en: str
    message_zh: str

    def message(self, locale: str) -> str:
        return self.message_zh if locale.lower().startswith("zh") else self.message_en

    def to_dict(self, locale: str = "en") -> dict[str, Any]:
        return {
            "code": self.code,
            "value": round(self.value, 4),
            "threshold": round(self.threshold, 4),
            "message": self.message(locale),
        }


@dataclass(frozen=True)
class QualityReport:
    """All issues found (``ok`` when none) and every metric measured, for logs and tuning."""

    purpose: str
    issues: tuple[QualityIssue, ...]
    metrics: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def codes(self) -> set[str]:
        return {issue.code for issue in self.issues}

    def to_dict(self, locale: str = "en") -> dict[str, Any]:
        return {
            "ok": self.ok,
            "purpose": self.purpose,
            "issues": [issue.to_dict(locale) for issue in self.issues],
            "metrics": {k: round(v, 4) for k, v in self.metrics.items()},
        }


def _issue(code: str, value: float, threshold: float, advice: str | None = None) -> QualityIssue:
    en, zh = _ADVICE[advice or code]
    return QualityIssue(code, float(value), float(threshold), en, zh)


U8 = npt.NDArray[np.uint8]


def _analysis_copy(image: Image.Image | npt.NDArray[Any]) -> tuple[U8, int, int]:
    """(RGB analysis copy, original width, original height).

    PIL images are shrunk by Pillow (box filter = area average, like ``INTER_AREA``) before
    becoming an array, so a 12 MP photo is never copied whole into NumPy.
    """
    if isinstance(image, Image.Image):
        width, height = image.size
        rgb_image = image if image.mode == "RGB" else image.convert("RGB")
        scale = ANALYSIS_SIZE / max(width, height)
        if scale < 1:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            rgb_image = rgb_image.resize(size, Image.Resampling.BOX)
        return np.asarray(rgb_image), width, height
    rgb = _as_rgb_array(image)
    return _downscale(rgb), rgb.shape[1], rgb.shape[0]


def _as_rgb_array(image: npt.NDArray[Any]) -> U8:
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError("image arrays must be uint8")
    if arr.ndim == 2:
        return np.repeat(arr[:, :, None], 3, axis=2)
    if arr.ndim == 3 and arr.shape[2] == 4:
        return arr[:, :, :3]
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError("image arrays must be HxW or HxWx3 RGB")
    return arr


def _downscale(rgb: U8) -> U8:
    """Area-average down so the long side is :data:`ANALYSIS_SIZE`; smaller images as they are.

    Upscaling would interpolate, i.e. blur, and turn every small photo into a "blurry" one;
    small photos get their own ``too_small`` advice instead.
    """
    h, w = rgb.shape[:2]
    scale = ANALYSIS_SIZE / max(h, w)
    if scale >= 1:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.ascontiguousarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA))


def _tongue_mask(small: U8) -> npt.NDArray[np.bool_]:
    lab = cv2.cvtColor(small, cv2.COLOR_RGB2LAB)
    hsv = cv2.cvtColor(small, cv2.COLOR_RGB2HSV)
    mask: npt.NDArray[np.bool_] = (
        (lab[:, :, 1] >= TONGUE_MIN_A) & (hsv[:, :, 1] >= 50) & (hsv[:, :, 2] >= 50)
    )
    return mask


def _largest_blob(mask: npt.NDArray[np.bool_]) -> tuple[float, float, float]:
    """(coverage fraction, centroid x, centroid y) of the largest blob; x, y in 0..1."""
    h, w = mask.shape
    count, _, stats, centroids = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    if count <= 1:
        return 0.0, 0.5, 0.5
    areas = stats[1:, cv2.CC_STAT_AREA]
    best = 1 + int(np.argmax(areas))
    cx, cy = centroids[best]
    return float(areas[best - 1]) / (h * w), float(cx) / w, float(cy) / h


def check_quality(
    image: Image.Image | npt.NDArray[Any], *, purpose: Purpose | str = "general"
) -> QualityReport:
    """Measure blur, exposure, colour cast, size (and tongue framing) of a photo.

    ``purpose`` picks the thresholds: ``"document"`` for lab reports and prescriptions,
    ``"tongue"`` for tongue photos (adds the framing check), ``"general"`` otherwise.
    """
    if purpose not in ("general", "tongue", "document"):
        raise ValueError(f"unknown purpose {purpose!r}")
    small, width, height = _analysis_copy(image)
    gray = cv2.cvtColor(small, cv2.COLOR_RGB2GRAY)
    issues: list[QualityIssue] = []
    metrics: dict[str, float] = {"width": float(width), "height": float(height)}
    document = purpose == "document"

    # Exposure.
    mean = float(gray.mean())
    dark = float(np.count_nonzero(gray <= DARK_CLIP_LEVEL)) / gray.size
    bright = float(np.count_nonzero(gray >= BRIGHT_CLIP_LEVEL)) / gray.size
    metrics.update(luma_mean=mean, dark_fraction=dark, bright_fraction=bright)
    if mean < DARK_MAX_MEAN:
        issues.append(_issue("too_dark", mean, DARK_MAX_MEAN))
    elif dark > DARK_MAX_FRACTION:
        issues.append(_issue("too_dark", dark, DARK_MAX_FRACTION))
    too_dark = any(i.code == "too_dark" for i in issues)
    bright_mean = BRIGHT_MAX_MEAN_DOCUMENT if document else BRIGHT_MAX_MEAN
    bright_fraction = BRIGHT_MAX_FRACTION_DOCUMENT if document else BRIGHT_MAX_FRACTION
    if mean > bright_mean:
        issues.append(_issue("too_bright", mean, bright_mean))
    elif bright > bright_fraction:
        issues.append(_issue("too_bright", bright, bright_fraction))

    # Sharpness. The Laplacian scales with contrast, so a dark photo also scores low; asking
    # for light first is the useful advice, and blur is judged again on the next photo.
    blur = float(cv2.Laplacian(gray, cv2.CV_64F).var())
    metrics["blur_laplacian_var"] = blur
    blur_limit = BLUR_MIN_VARIANCE_DOCUMENT if document else BLUR_MIN_VARIANCE
    if blur < blur_limit and not too_dark:
        issues.append(_issue("blurry", blur, blur_limit))

    # Tongue framing (its mask is also excluded from the colour-cast estimate).
    tongue = _tongue_mask(small) if purpose == "tongue" else None
    if tongue is not None:
        coverage, cx, cy = _largest_blob(tongue)
        offset = math.hypot(cx - 0.5, cy - 0.5)
        metrics.update(tongue_coverage=coverage, tongue_offset=offset)
        if coverage < TONGUE_MIN_COVERAGE:
            issues.append(_issue("not_centred", coverage, TONGUE_MIN_COVERAGE))
        elif offset > TONGUE_MAX_OFFSET:
            issues.append(_issue("not_centred", offset, TONGUE_MAX_OFFSET))

    # Colour cast, grey-world over well-exposed pixels (outside the tongue for tongue photos).
    usable = (gray > DARK_CLIP_LEVEL + 10) & (gray < BRIGHT_CLIP_LEVEL - 5)
    if tongue is not None:
        usable &= ~tongue
    pixels = small[usable] if np.count_nonzero(usable) >= 0.05 * gray.size else None
    if pixels is not None:
        r, g, b = (float(pixels[:, i].mean()) + 1.0 for i in range(3))
        red_blue = math.log(r / b)
        green_magenta = math.log(g / ((r + b) / 2))
        metrics.update(cast_red_blue=red_blue, cast_green_magenta=green_magenta)
        if purpose == "tongue":
            if red_blue > CAST_MAX_WARM_TONGUE:
                issues.append(
                    _issue("colour_cast", red_blue, CAST_MAX_WARM_TONGUE, "colour_cast_tongue")
                )
            elif red_blue < CAST_MAX_COOL_TONGUE:
                issues.append(
                    _issue("colour_cast", red_blue, CAST_MAX_COOL_TONGUE, "colour_cast_tongue")
                )
        elif abs(red_blue) > CAST_MAX_RED_BLUE:
            issues.append(_issue("colour_cast", red_blue, CAST_MAX_RED_BLUE))
        if not any(i.code == "colour_cast" for i in issues) and (
            abs(green_magenta) > CAST_MAX_GREEN_MAGENTA
        ):
            advice = "colour_cast_tongue" if purpose == "tongue" else None
            issues.append(_issue("colour_cast", green_magenta, CAST_MAX_GREEN_MAGENTA, advice))

    # Resolution.
    short = min(width, height)
    min_short = MIN_SHORT_SIDE_DOCUMENT if document else MIN_SHORT_SIDE
    metrics["short_side"] = float(short)
    if short < min_short:
        advice = "too_small_document" if document else None
        issues.append(_issue("too_small", short, min_short, advice))

    return QualityReport(purpose=purpose, issues=tuple(issues), metrics=metrics)
