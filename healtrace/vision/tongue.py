"""TCM tongue inspection (舌诊) with classic computer vision: colour thresholds, morphology and
contour geometry. No learned model is involved, and nothing here is a diagnosis.

What it does, and why this way
------------------------------
A phone photo of a tongue is first shrunk to a fixed working size (long side
``WORKING_LONG_SIDE`` px) so that runtime does not grow with camera resolution and so that every
pixel-size threshold below means the same thing for a 1080p and a 12-MP photo.

1. **Tissue mask** on the photo as taken (every reddish pixel, generous hue band), only to keep
   tongue, lips and reddish skin out of the white-balance estimate.
2. **White balance** (von Kries / diagonal gains in linear RGB). The illuminant is read from the
   lowest-chroma, reasonably bright pixels *outside* the tongue (teeth, a grey card, a neutral
   wall). If no such cluster exists, a half-strength gray-world estimate over the non-tongue
   pixels is used instead and the lighting confidence is lowered. Colour classes are only as good
   as this step: a warm lamp alone makes a pale tongue look "light red".
3. **Segmentation** on the corrected image: reddish pixels (CIELAB a* and hue-angle band, which
   leaves out most skin because skin is yellower, hue ≈ 55-70° and a* ≈ 10), open/close, the
   largest filled contour weighted towards the image centre.
4. **Body vs coating**: inside the mask, coating is the low-chroma bright (white), yellow-hued
   (yellow) or low-chroma dark (grey-black) part; the body is the reddish rest.
5. **Features** from the median CIELAB of body and coating pixels, coating area ratio, a
   black-hat line detector for cracks and convexity defects of the contour for tooth marks.

CIELAB comes from OpenCV on float32 RGB in 0..1, so L* is 0..100 and a*/b* are in true units.
Hue angle h = atan2(b*, a*) in degrees.

Thresholds (heuristics chosen on synthetic images and typical published tongue-photo Lab values;
they are *not* clinically validated and shift with camera, light and white balance)

=====================  ========================================================================
Feature                Rule (checked in this order)
=====================  ========================================================================
tongue pixel           a* >= 12, chroma >= 12, hue in [-60°, 60°], 15 <= L* <= 92; largest
                       filled blob of 3-85 % of the frame, scored by area x centrality
white-balance ref.     non-tissue pixels (tissue: the tongue test with hue up to 70°), unclipped,
                       35 <= L* <= 98; cluster = chroma <= 5th percentile + 5; accepted if its
                       chroma <= 28, its median hue lies on the illuminant axis (65-120° warm,
                       225-300° cool; any hue below chroma 8) and it has >= 150 px and >= 0.5 %
                       of the non-tissue area; gains clipped to 0.5-2.0. Otherwise gray-world
                       at half strength (and, if that loses the tongue, no correction at all)
body: purple (紫)       hue < 5° (bluish red)
body: crimson (绛)      L* < 42 and a* >= 30 (deep, dark red)
body: pale (淡白)       a* < 24
body: red (红)          a* >= 42
body: light red (淡红)  otherwise (24 <= a* < 42): the usual "normal" tongue
coating pixel          (chroma < 16 and L* >= 55 and a* <= a*ref - 10) or (hue 55°-110° and
                       b* >= 14 and L* >= 45) or (chroma < 12 and L* < 35); a*ref is the 95th
                       percentile of a* in the mask (the body's redness while any body shows
                       at the edges; tested up to 60 % coating). The a* drop keeps a pale body,
                       whose own chroma is only ~18, from being read as white coating
coating: grey-black    median L* < 45
coating: yellow        median b* >= 16
coating: white         otherwise
thickness              coating/mask area < 0.05 peeled/none (少苔/无苔); < 0.35 thin; else thick
cracks (裂纹)           black-hat on L* (15 px ellipse) >= 10 L units inside the mask eroded by
                       15 px; components with width (2 x 75th pct. distance) <= 8 px, length
                       (area / width) >= 4 % of tongue height, length / width >= 3; present if
                       their area >= 0.3 % of the mask
tooth marks (齿痕)      convexity defects deeper than 2.5 % of tongue width on the lateral
                       margins (below the top 20 % of the box); present if >= 2
=====================  ========================================================================

Known limits: lips and strongly reddish skin touching the tongue merge into its mask (frame
the photo on the open mouth); specular highlights count as white coating; a shadowed gap or
food stain can read as grey-black coating or a crack; tooth marks need a tongue outline that
stands clear of the lips; with no neutral surface in view the colour classes rest on a
gray-world guess (reported via ``white_balance.method`` and a lower confidence). Values were
tuned on synthetic images only.

Confidences are 0..1: 0.5 at a class boundary rising to 1 far from it, multiplied by a
lighting confidence (neutral reference found or not) and a mask-size factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import yaml
from PIL import Image

__all__ = [
    "ENGINE",
    "TongueFeature",
    "TongueResult",
    "WhiteBalance",
    "analyze_tongue",
    "load_meanings",
]

ENGINE = "classic-cv"

# --- working size ---------------------------------------------------------------------------------
WORKING_LONG_SIDE = 640

# --- segmentation ---------------------------------------------------------------------------------
SEG_MIN_A = 12.0
SEG_MIN_CHROMA = 12.0
SEG_HUE_RANGE = (-60.0, 60.0)
# Only for keeping tissue out of the white-balance estimate: wider, because leaving some skin
# out of a gray-world average does no harm while leaving tongue in would bias it.
ROUGH_HUE_MAX = 70.0
SEG_L_RANGE = (15.0, 92.0)
SEG_MIN_AREA_RATIO = 0.03  # smaller blobs are lips, gums or noise at this framing
SEG_MAX_AREA_RATIO = 0.85  # a "tongue" filling the frame is a red wall or a close-up we can't read

# --- white balance --------------------------------------------------------------------------------
WB_NEUTRAL_MAX_CHROMA = 28.0  # the lowest-chroma cluster must be at most this coloured (raw)
# A cluster that coloured only counts as a cast grey if its hue lies along the illuminant
# (blackbody) direction: warm 65-120°, cool 225-300° hue angle; below 8 any hue is fine.
WB_NEUTRAL_ANY_HUE_CHROMA = 8.0
WB_ILLUMINANT_HUES = ((65.0, 120.0), (225.0, 300.0))
WB_NEUTRAL_BAND = 5.0  # chroma band above the 5th percentile that counts as "the neutral cluster"
WB_NEUTRAL_L_RANGE = (35.0, 98.0)
WB_NEUTRAL_MIN_FRACTION = 0.005
WB_NEUTRAL_MIN_PIXELS = 150
WB_GAIN_LIMITS = (0.5, 2.0)
WB_GRAYWORLD_STRENGTH = 0.5  # gray-world over skin is biased; apply only half of it (log domain)

# --- body colour ----------------------------------------------------------------------------------
BODY_PURPLE_MAX_HUE = 5.0
BODY_CRIMSON_MAX_L = 42.0
BODY_CRIMSON_MIN_A = 30.0
BODY_PALE_MAX_A = 24.0
BODY_RED_MIN_A = 42.0

# --- coating --------------------------------------------------------------------------------------
COAT_WHITE_MAX_CHROMA = 16.0
COAT_WHITE_MIN_L = 55.0
# White coating must be this much less red than the body (a* units below the mask's 95th
# percentile): on a pale tongue (a* ≈ 17) chroma alone cannot tell body from coating.
COAT_WHITE_MIN_A_DROP = 10.0
COAT_BODY_REF_PERCENTILE = 95.0
COAT_YELLOW_HUE = (55.0, 110.0)
COAT_YELLOW_MIN_B = 14.0
COAT_YELLOW_MIN_L = 45.0
COAT_DARK_MAX_CHROMA = 12.0
COAT_DARK_MAX_L = 35.0
COAT_GREYBLACK_MAX_L = 45.0
COAT_YELLOW_CLASS_MIN_B = 16.0
COAT_NONE_MAX_RATIO = 0.05
COAT_THICK_MIN_RATIO = 0.35

# --- cracks ---------------------------------------------------------------------------------------
CRACK_KERNEL = 15
CRACK_MIN_DEPTH_L = 10.0
CRACK_MIN_LENGTH_FRAC = 0.04
CRACK_MIN_ELONGATION = 3.0
CRACK_MAX_WIDTH = 8.0  # px at working size; wider dark areas are shadows or the mouth
CRACK_PRESENT_RATIO = 0.003

# --- tooth marks ----------------------------------------------------------------------------------
TOOTH_MIN_DEPTH_FRAC = 0.025
TOOTH_SKIP_TOP_FRAC = 0.20
TOOTH_PRESENT_COUNT = 2

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
U8Array = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class WhiteBalance:
    """The diagonal correction applied before colour was read, and how it was estimated."""

    applied: bool
    gains: tuple[float, float, float]
    method: str  # "neutral-reference" | "gray-world" | "none"
    neutral_reference_found: bool
    neutral_pixel_ratio: float
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "applied": self.applied,
            "gains_rgb": [round(g, 4) for g in self.gains],
            "method": self.method,
            "neutral_reference_found": self.neutral_reference_found,
            "neutral_pixel_ratio": round(self.neutral_pixel_ratio, 4),
            "confidence": round(self.confidence, 3),
        }


@dataclass(frozen=True)
class TongueFeature:
    """One inspected feature: its class, the main measured value and the numbers behind it."""

    name: str
    category: str
    value: float | None
    confidence: float
    measurements: dict[str, float] = field(default_factory=dict)

    @property
    def detected(self) -> bool:
        """For cracks and tooth marks: whether the feature was judged present."""
        return self.category == "present"


@dataclass(frozen=True)
class TongueResult:
    """What the classic-CV route saw in a tongue photo. ``found=False`` carries ``explanation``."""

    found: bool
    features: dict[str, TongueFeature]
    white_balance: WhiteBalance
    mask_ratio: float
    explanation: str = ""
    working_size: tuple[int, int] = (0, 0)
    engine: str = ENGINE

    def to_dict(self, locale: str = "en") -> dict[str, Any]:
        """A JSON-ready description in ``locale`` ("en" or "zh"), with each feature's traditional
        meaning and the framing note, so no caller can show a class without its context."""
        lang = _lang(locale)
        meanings = load_meanings()
        features: dict[str, Any] = {}
        for name, feat in self.features.items():
            entry = meanings["features"].get(name, {}).get(feat.category, {})
            features[name] = {
                "category": feat.category,
                "label": entry.get("label", {}).get(lang, feat.category),
                "value": None if feat.value is None else round(feat.value, 4),
                "confidence": round(feat.confidence, 3),
                "measurements": {k: round(v, 3) for k, v in feat.measurements.items()},
                "meaning": entry.get("meaning", {}).get(lang, ""),
                "source": entry.get("source", ""),
            }
        return {
            "engine": self.engine,
            "found": self.found,
            "explanation": self.explanation,
            "mask_ratio": round(self.mask_ratio, 4),
            "working_size": list(self.working_size),
            "white_balance": self.white_balance.to_dict(),
            "features": features,
            "framing": meanings["framing"][lang],
            "method_note": meanings["method_note"][lang],
        }


def _lang(locale: str) -> str:
    return "zh" if locale.lower().startswith("zh") else "en"


@lru_cache(maxsize=1)
def load_meanings() -> dict[str, Any]:
    """The bundled traditional meanings (en/zh) per feature class, and the framing notes."""
    text = (
        resources.files("healtrace.vision")
        .joinpath("data/tongue_meanings.yaml")
        .read_text(encoding="utf-8")
    )
    data: dict[str, Any] = yaml.safe_load(text)
    return data


# --- image plumbing -------------------------------------------------------------------------------


def _to_rgb(image: Image.Image | npt.NDArray[Any]) -> U8Array:
    if isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"))
    else:
        arr = np.asarray(image)
        if arr.dtype != np.uint8:
            raise TypeError("analyze_tongue expects an RGB uint8 array")
        if arr.ndim == 2:
            arr = np.stack([arr] * 3, axis=-1)
        elif arr.ndim == 3 and arr.shape[2] == 4:
            arr = arr[:, :, :3]
        elif arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(f"expected an H x W x 3 RGB image, got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _resize(rgb: U8Array) -> U8Array:
    h, w = rgb.shape[:2]
    scale = WORKING_LONG_SIDE / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    out = np.asarray(cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), dtype=np.uint8)
    return out


def _srgb_to_linear(x: FloatArray) -> FloatArray:
    out: FloatArray = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4).astype(
        np.float32
    )
    return out


def _linear_to_srgb(x: FloatArray) -> FloatArray:
    x = np.clip(x, 0.0, 1.0)
    out: FloatArray = np.where(
        x <= 0.0031308, x * 12.92, 1.055 * np.power(x, 1 / 2.4) - 0.055
    ).astype(np.float32)
    return out


def _lab(rgb01: FloatArray) -> FloatArray:
    out = np.asarray(cv2.cvtColor(rgb01, cv2.COLOR_RGB2Lab), dtype=np.float32)
    return out


def _chroma_hue(lab: FloatArray) -> tuple[FloatArray, FloatArray]:
    a, b = lab[..., 1], lab[..., 2]
    chroma: FloatArray = np.hypot(a, b).astype(np.float32)
    hue: FloatArray = np.degrees(np.arctan2(b, a)).astype(np.float32)
    return chroma, hue


def _ellipse(size: int) -> U8Array:
    k = np.asarray(cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size)), dtype=np.uint8)
    return k


# --- segmentation ---------------------------------------------------------------------------------


def _reddish(lab: FloatArray, hue_max: float = SEG_HUE_RANGE[1]) -> BoolArray:
    """Per-pixel tongue-colour test: reddish (a*), coloured enough, in the red-pink-purple hue
    band (skin is yellower), neither black nor blown out."""
    lum, a = lab[..., 0], lab[..., 1]
    chroma, hue = _chroma_hue(lab)
    out: BoolArray = (
        (a >= SEG_MIN_A)
        & (chroma >= SEG_MIN_CHROMA)
        & (hue >= SEG_HUE_RANGE[0])
        & (hue <= hue_max)
        & (lum >= SEG_L_RANGE[0])
        & (lum <= SEG_L_RANGE[1])
    )
    return out


def _segment(lab: FloatArray) -> tuple[U8Array | None, npt.NDArray[np.int32] | None]:
    """Reddish-pixel mask -> morphology -> the best-placed large filled contour."""
    h, w = lab.shape[:2]
    raw = _reddish(lab)
    mask = raw.astype(np.uint8) * 255
    # Open drops specks; a small close mends noise gaps but stays narrower than tooth marks.
    mask = np.asarray(cv2.morphologyEx(mask, cv2.MORPH_OPEN, _ellipse(5)), dtype=np.uint8)
    mask = np.asarray(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, _ellipse(7)), dtype=np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    total = float(h * w)
    best: npt.NDArray[np.int32] | None = None
    best_score = 0.0
    half_diag = math.hypot(w / 2, h / 2)
    for c in contours:
        area = cv2.contourArea(c)
        if not SEG_MIN_AREA_RATIO * total <= area <= SEG_MAX_AREA_RATIO * total:
            continue
        m = cv2.moments(c)
        cx, cy = m["m10"] / m["m00"], m["m01"] / m["m00"]
        centrality = 1.0 - 0.5 * math.hypot(cx - w / 2, cy - h / 2) / half_diag
        score = area * centrality
        if score > best_score:
            best, best_score = np.asarray(c, dtype=np.int32), score
    if best is None:
        return None, None
    filled = np.zeros((h, w), np.uint8)
    cv2.drawContours(filled, [best], -1, 255, thickness=cv2.FILLED)
    return filled, best


# --- white balance --------------------------------------------------------------------------------


def _estimate_white_balance(lin: FloatArray, lab: FloatArray, outside: BoolArray) -> WhiteBalance:
    """Gains that make the scene's neutral surfaces grey, from pixels outside the tongue.

    The lowest-chroma bright cluster is taken as neutral because teeth, grey cards and walls
    keep the illuminant's colour while skin and tissue add their own; when that cluster is still
    strongly coloured (no neutral in view), gray-world at half strength is the fallback."""
    n_out = int(outside.sum())
    if n_out < WB_NEUTRAL_MIN_PIXELS:
        return WhiteBalance(False, (1.0, 1.0, 1.0), "none", False, 0.0, 0.4)
    lum = lab[..., 0]
    chroma, _ = _chroma_hue(lab)
    unclipped = lin.max(axis=-1) < 0.98
    lo, hi = WB_NEUTRAL_L_RANGE
    cand = outside & unclipped & (lum >= lo) & (lum <= hi)
    neutral_ratio = 0.0
    if int(cand.sum()) >= WB_NEUTRAL_MIN_PIXELS:
        c_lo = float(np.percentile(chroma[cand], 5))
        neutral = cand & (chroma <= c_lo + WB_NEUTRAL_BAND)
        count = int(neutral.sum())
        neutral_ratio = count / n_out
        if (
            c_lo <= WB_NEUTRAL_MAX_CHROMA
            and _plausible_illuminant(lab[neutral])
            and count >= WB_NEUTRAL_MIN_PIXELS
            and neutral_ratio >= WB_NEUTRAL_MIN_FRACTION
        ):
            illum = lin[neutral].mean(axis=0)
            gains = _gains(illum, strength=1.0)
            conf = 1.0 if max(gains) / min(gains) < 1.6 else 0.8
            return WhiteBalance(True, gains, "neutral-reference", True, neutral_ratio, conf)
    illum = lin[outside].mean(axis=0)
    gains = _gains(illum, strength=WB_GRAYWORLD_STRENGTH)
    return WhiteBalance(True, gains, "gray-world", False, neutral_ratio, 0.6)


def _plausible_illuminant(lab_px: FloatArray) -> bool:
    """Whether a colour cast could come from light rather than from the surface itself.

    Real illuminants (daylight, tungsten, LED, shade) sit close to the blackbody locus, which in
    CIELAB runs along the b* axis (warm: +b*, cool: -b*). Skin and lips are redder (hue ≈ 40-65°),
    so a low-chroma cluster with that hue is more likely skin than a tinted grey card."""
    a, b = (float(v) for v in np.median(lab_px[:, 1:], axis=0))
    if math.hypot(a, b) <= WB_NEUTRAL_ANY_HUE_CHROMA:
        return True
    hue = math.degrees(math.atan2(b, a)) % 360.0
    return any(lo <= hue <= hi for lo, hi in WB_ILLUMINANT_HUES)


def _gains(illum: npt.NDArray[Any], strength: float) -> tuple[float, float, float]:
    illum = np.maximum(illum.astype(np.float64), 1e-4)
    g = (illum.mean() / illum) ** strength
    g = np.clip(g, *WB_GAIN_LIMITS)
    return (float(g[0]), float(g[1]), float(g[2]))


# --- features -------------------------------------------------------------------------------------


def _margin_conf(margin: float, scale: float) -> float:
    """0.5 on a class boundary, approaching 1.0 once ``margin`` reaches ``scale``."""
    return 0.5 + 0.5 * min(1.0, max(0.0, margin) / scale)


def _body_colour(med: npt.NDArray[Any]) -> tuple[str, float]:
    L, a, b = (float(v) for v in med)
    hue = math.degrees(math.atan2(b, a))
    if hue < BODY_PURPLE_MAX_HUE:
        return "purple", _margin_conf(BODY_PURPLE_MAX_HUE - hue, 15.0)
    if L < BODY_CRIMSON_MAX_L and a >= BODY_CRIMSON_MIN_A:
        margin = min(BODY_CRIMSON_MAX_L - L, a - BODY_CRIMSON_MIN_A, hue - BODY_PURPLE_MAX_HUE)
        return "crimson", _margin_conf(margin, 8.0)
    if a < BODY_PALE_MAX_A:
        margin = min(BODY_PALE_MAX_A - a, hue - BODY_PURPLE_MAX_HUE)
        return "pale", _margin_conf(margin, 8.0)
    if a >= BODY_RED_MIN_A:
        margin = min(a - BODY_RED_MIN_A, hue - BODY_PURPLE_MAX_HUE)
        if a >= BODY_CRIMSON_MIN_A:
            margin = min(margin, L - BODY_CRIMSON_MAX_L)
        return "red", _margin_conf(margin, 8.0)
    margin = min(a - BODY_PALE_MAX_A, BODY_RED_MIN_A - a, hue - BODY_PURPLE_MAX_HUE)
    if a >= BODY_CRIMSON_MIN_A:
        margin = min(margin, L - BODY_CRIMSON_MAX_L)
    return "light_red", _margin_conf(margin, 6.0)


def _coating_mask(lab: FloatArray, mask: BoolArray) -> BoolArray:
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    chroma, hue = _chroma_hue(lab)
    body_a = float(np.percentile(a[mask], COAT_BODY_REF_PERCENTILE)) if mask.any() else 0.0
    white = (
        (chroma < COAT_WHITE_MAX_CHROMA)
        & (L >= COAT_WHITE_MIN_L)
        & (a <= body_a - COAT_WHITE_MIN_A_DROP)
    )
    yellow = (
        (hue >= COAT_YELLOW_HUE[0])
        & (hue <= COAT_YELLOW_HUE[1])
        & (b >= COAT_YELLOW_MIN_B)
        & (L >= COAT_YELLOW_MIN_L)
    )
    dark = (chroma < COAT_DARK_MAX_CHROMA) & (L < COAT_DARK_MAX_L)
    out: BoolArray = mask & (white | yellow | dark)
    return out


def _coating_colour(lab: FloatArray, coat: BoolArray, ratio: float) -> TongueFeature:
    n = int(coat.sum())
    if n < 30 or ratio < COAT_NONE_MAX_RATIO / 2:
        return TongueFeature("coating_colour", "none", None, 0.6, {"coating_pixels": float(n)})
    L, a, b = (float(v) for v in np.median(lab[coat], axis=0))
    meas = {"median_L": L, "median_a": a, "median_b": b, "coating_pixels": float(n)}
    if L < COAT_GREYBLACK_MAX_L:
        return TongueFeature(
            "coating_colour", "grey_black", b, _margin_conf(COAT_GREYBLACK_MAX_L - L, 10.0), meas
        )
    if b >= COAT_YELLOW_CLASS_MIN_B:
        margin = min(b - COAT_YELLOW_CLASS_MIN_B, L - COAT_GREYBLACK_MAX_L)
        return TongueFeature("coating_colour", "yellow", b, _margin_conf(margin, 8.0), meas)
    margin = min(COAT_YELLOW_CLASS_MIN_B - b, L - COAT_GREYBLACK_MAX_L)
    return TongueFeature("coating_colour", "white", b, _margin_conf(margin, 8.0), meas)


def _thickness(ratio: float) -> TongueFeature:
    meas = {"coating_area_ratio": ratio}
    if ratio < COAT_NONE_MAX_RATIO:
        conf = _margin_conf(COAT_NONE_MAX_RATIO - ratio, 0.03)
        return TongueFeature("coating_thickness", "peeled_or_none", ratio, conf, meas)
    if ratio < COAT_THICK_MIN_RATIO:
        margin = min(ratio - COAT_NONE_MAX_RATIO, COAT_THICK_MIN_RATIO - ratio)
        return TongueFeature("coating_thickness", "thin", ratio, _margin_conf(margin, 0.1), meas)
    conf = _margin_conf(ratio - COAT_THICK_MIN_RATIO, 0.15)
    return TongueFeature("coating_thickness", "thick", ratio, conf, meas)


def _cracks(lab: FloatArray, mask: U8Array, contour: npt.NDArray[np.int32]) -> TongueFeature:
    """Dark, thin, elongated structures on L* inside the (eroded) tongue: black-hat keeps what is
    darker than its surroundings and narrower than the kernel; shape filters drop noise dots."""
    L = cv2.GaussianBlur(np.ascontiguousarray(lab[..., 0]), (3, 3), 0)
    blackhat = cv2.morphologyEx(L, cv2.MORPH_BLACKHAT, _ellipse(CRACK_KERNEL))
    inner = cv2.erode(mask, _ellipse(CRACK_KERNEL)) > 0
    cand = ((blackhat >= CRACK_MIN_DEPTH_L) & inner).astype(np.uint8)
    _, _, bh, _ = cv2.boundingRect(contour)
    min_len = CRACK_MIN_LENGTH_FRAC * bh
    # Width from the distance transform (twice the deepest inside distance), length as area over
    # width: that works for branched crack networks where a bounding box would not look thin.
    dist = cv2.distanceTransform(cand, cv2.DIST_L2, 3)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(cand, connectivity=8)
    crack_px = 0
    longest = 0.0
    kept = 0
    for i in range(1, n):
        area = int(stats[i, cv2.CC_STAT_AREA])
        if area < 5:
            continue
        x0, y0 = stats[i, cv2.CC_STAT_LEFT], stats[i, cv2.CC_STAT_TOP]
        cw, ch = stats[i, cv2.CC_STAT_WIDTH], stats[i, cv2.CC_STAT_HEIGHT]
        sub = labels[y0 : y0 + ch, x0 : x0 + cw] == i
        # 75th percentile, not max: junctions of branching cracks are locally wider.
        width = max(1.0, 2.0 * float(np.percentile(dist[y0 : y0 + ch, x0 : x0 + cw][sub], 75)))
        length = max(area / width, float(max(cw, ch)))
        if (
            length >= min_len
            and length / width >= CRACK_MIN_ELONGATION
            and width <= CRACK_MAX_WIDTH
        ):
            crack_px += area
            kept += 1
            longest = max(longest, length)
    mask_px = max(1, int((mask > 0).sum()))
    ratio = crack_px / mask_px
    meas = {
        "crack_pixel_ratio": ratio,
        "segments": float(kept),
        "longest_px": longest,
        "min_length_px": min_len,
    }
    if ratio >= CRACK_PRESENT_RATIO:
        conf = _margin_conf(ratio / CRACK_PRESENT_RATIO - 1.0, 2.0)
        return TongueFeature("cracks", "present", ratio, conf, meas)
    conf = _margin_conf(1.0 - ratio / CRACK_PRESENT_RATIO, 1.0)
    return TongueFeature("cracks", "absent", ratio, conf, meas)


def _tooth_marks(contour: npt.NDArray[np.int32]) -> TongueFeature:
    """Scalloped lateral margins show up as several convexity defects of useful depth; the top
    of the box (root side, where lips and the mouth opening meet the tongue) is ignored."""
    _, y, bw, bh = cv2.boundingRect(contour)
    min_depth = TOOTH_MIN_DEPTH_FRAC * bw
    count = 0
    deepest = 0.0
    try:
        hull = cv2.convexHull(contour, returnPoints=False)
        defects = cv2.convexityDefects(contour, hull)
    except cv2.error:
        defects = None
    if defects is not None:
        for _s, _e, f, d in np.asarray(defects).reshape(-1, 4):
            depth = d / 256.0
            fy = float(contour[f][0][1])
            if fy < y + TOOTH_SKIP_TOP_FRAC * bh:
                continue
            if depth >= min_depth:
                count += 1
                deepest = max(deepest, depth)
    meas = {"defects": float(count), "deepest_px": deepest, "min_depth_px": min_depth}
    if count >= TOOTH_PRESENT_COUNT:
        conf = _margin_conf(count - TOOTH_PRESENT_COUNT + 1, 3.0)
        return TongueFeature("tooth_marks", "present", float(count), conf, meas)
    conf = 0.5 + 0.25 * (TOOTH_PRESENT_COUNT - count)
    return TongueFeature("tooth_marks", "absent", float(count), min(1.0, conf), meas)


def _scale_conf(feat: TongueFeature, factor: float) -> TongueFeature:
    return TongueFeature(
        feat.name, feat.category, feat.value, feat.confidence * factor, feat.measurements
    )


def _not_found(wb: WhiteBalance, size: tuple[int, int], why: str) -> TongueResult:
    return TongueResult(False, {}, wb, 0.0, why, size)


def analyze_tongue(
    image: Image.Image | npt.NDArray[Any], *, white_balance: bool = True
) -> TongueResult:
    """Inspect a tongue photo the way TCM tongue inspection describes it, with classic CV.

    ``image`` is a PIL image or an RGB uint8 array. ``white_balance=False`` skips the lighting
    correction (useful to show what it changes). Never raises for "no tongue in view": that is a
    result with ``found=False`` and an ``explanation``."""
    rgb = _resize(_to_rgb(image))
    h, w = rgb.shape[:2]
    size = (w, h)
    rgb01 = rgb.astype(np.float32) / 255.0
    lab0 = _lab(rgb01)
    lin = _srgb_to_linear(rgb01)

    if white_balance:
        # Every tissue-coloured pixel (tongue, lips, reddish skin) stays out of the estimate.
        tissue = _reddish(lab0, ROUGH_HUE_MAX).astype(np.uint8)
        tissue = np.asarray(cv2.morphologyEx(tissue, cv2.MORPH_OPEN, _ellipse(5)), np.uint8)
        outside = cv2.dilate(tissue, _ellipse(9)) == 0
        if outside.mean() < 0.05:
            # A strong cast can make all skin "tissue-coloured"; then only the tongue blob
            # (if one stands out) is excluded and gray-world sees the rest.
            rough, _ = _segment(lab0)
            outside = np.ones((h, w), bool)
            if rough is not None:
                outside = cv2.dilate(rough, _ellipse(15)) == 0
        wb = _estimate_white_balance(lin, lab0, outside)
    else:
        wb = WhiteBalance(False, (1.0, 1.0, 1.0), "none", False, 0.0, 0.5)
    lab = _lab(_linear_to_srgb(lin * np.array(wb.gains, np.float32))) if wb.applied else lab0

    mask, contour = _segment(lab)
    if (mask is None or contour is None) and wb.applied and wb.method == "gray-world":
        # Gray-world over a skin-filled frame can push a pale tongue out of the tongue band. A
        # guessed correction should not hide the tongue: fall back to the photo as taken.
        mask, contour = _segment(lab0)
        if mask is not None:
            lab = lab0
            wb = WhiteBalance(False, (1.0, 1.0, 1.0), "none", False, wb.neutral_pixel_ratio, 0.5)
    if mask is None or contour is None:
        return _not_found(
            wb,
            size,
            "No tongue-like region found: no large, central, reddish-pink area in the photo. "
            "Retake it with the tongue extended, centred and evenly lit.",
        )
    m = mask > 0
    mask_ratio = float(m.mean())
    coat = _coating_mask(lab, m)
    body = m & ~coat
    if int(body.sum()) < 50:
        return _not_found(wb, size, "The candidate region has almost no tongue-body colour.")
    coat_ratio = float(coat.sum()) / float(m.sum())

    med = np.median(lab[body], axis=0)
    body_cls, body_conf = _body_colour(med)
    hue = math.degrees(math.atan2(float(med[2]), float(med[1])))
    body_feat = TongueFeature(
        "body_colour",
        body_cls,
        float(med[1]),
        body_conf,
        {
            "median_L": float(med[0]),
            "median_a": float(med[1]),
            "median_b": float(med[2]),
            "hue_deg": hue,
            "body_pixels": float(body.sum()),
        },
    )
    size_factor = min(1.0, 0.6 + 0.4 * mask_ratio / 0.08)
    light = wb.confidence
    features = {
        "body_colour": _scale_conf(body_feat, light * size_factor),
        "coating_colour": _scale_conf(_coating_colour(lab, coat, coat_ratio), light * size_factor),
        "coating_thickness": _scale_conf(_thickness(coat_ratio), size_factor),
        "cracks": _scale_conf(_cracks(lab, mask, contour), size_factor),
        "tooth_marks": _scale_conf(_tooth_marks(contour), size_factor),
    }
    return TongueResult(True, features, wb, mask_ratio, "", size)
