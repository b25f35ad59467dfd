"""Classic-CV tongue inspection on synthetic photos drawn here: a skin-toned background with a
grey card and a teeth strip, a tongue-shaped ellipse in a chosen body colour, optional coating,
cracks, scalloped (tooth-marked) margins, camera noise and a colour cast."""

from __future__ import annotations

import io
import re

import cv2
import numpy as np
import pytest
from PIL import Image

from healtrace.vision.intake import load_image
from healtrace.vision.quality import BLUR_MIN_VARIANCE, check_quality
from healtrace.vision.tongue import ENGINE, TongueResult, analyze_tongue, load_meanings

BODY = {
    "pale": (212, 165, 168),
    "light_red": (222, 130, 135),
    "red": (205, 62, 70),
    "crimson": (135, 22, 42),
    "purple": (150, 78, 132),
}
COAT = {"white": (238, 236, 230), "yellow": (228, 200, 120)}
SKIN = (222, 184, 160)


def make_tongue(
    body: str = "light_red",
    *,
    coating: str | None = None,
    coverage: float = 0.0,
    cracks: bool = False,
    tooth_marks: bool = False,
    cast: tuple[float, float, float] | None = None,
    grey_card: bool = True,
    size: tuple[int, int] = (480, 640),
    seed: int = 0,
) -> np.ndarray:
    """An RGB uint8 synthetic tongue photo. ``coverage`` is the coating patch's share of the
    tongue area (roughly); the patch is semi-transparent with per-pixel noise."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = np.empty((h, w, 3), np.float32)
    img[:] = SKIN
    # gentle shading so the background is not a flat colour
    img *= np.linspace(0.92, 1.04, w, dtype=np.float32)[None, :, None]
    if grey_card:
        img[int(0.06 * h) : int(0.26 * h), int(0.04 * w) : int(0.18 * w)] = (150, 150, 150)
        img[int(0.12 * h) : int(0.19 * h), int(0.36 * w) : int(0.64 * w)] = (240, 238, 232)
    cx, cy, ax, ay = w // 2, int(0.60 * h), int(0.2 * w), int(0.36 * h)
    tongue = np.zeros((h, w), np.uint8)
    cv2.ellipse(tongue, (cx, cy), (ax, ay), 0, 0, 360, 255, -1)
    tongue[: int(0.22 * h)] = 0  # the root is hidden behind the teeth strip
    if tooth_marks:
        r = max(6, int(0.035 * w))
        for t in np.linspace(-0.15, 0.75, 6):
            y = cy + int(t * ay)
            dx = int(ax * np.sqrt(max(0.0, 1 - ((y - cy) / ay) ** 2)))
            for x in (cx - dx, cx + dx):
                cv2.circle(tongue, (x, y), r, 0, -1)
    m = tongue > 0
    img[m] = BODY[body]
    if coating is not None and coverage > 0:
        patch = np.zeros((h, w), np.uint8)
        k = np.sqrt(coverage)
        cv2.ellipse(patch, (cx, cy - int(0.1 * ay)), (int(k * ax), int(k * ay)), 0, 0, 360, 255, -1)
        p = (patch > 0) & m
        alpha = np.clip(0.85 + rng.normal(0, 0.08, p.sum()), 0, 1)[:, None]
        img[p] = alpha * np.array(COAT[coating], np.float32) + (1 - alpha) * img[p]
    if cracks:
        dark = tuple(int(c * 0.45) for c in BODY[body])
        layer = img.copy()
        cv2.line(layer, (cx, cy - int(0.5 * ay)), (cx + 4, cy + int(0.55 * ay)), dark, 3)
        for i, t in enumerate(np.linspace(-0.3, 0.4, 4)):
            y = cy + int(t * ay)
            sign = 1 if i % 2 else -1
            cv2.line(layer, (cx, y), (cx + sign * int(0.5 * ax), y + int(0.15 * ay)), dark, 2)
        img[m] = layer[m]
    img += rng.normal(0, 3.0, img.shape).astype(np.float32)
    if cast is not None:
        img *= np.array(cast, np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


WARM = (1.15, 0.97, 0.80)


@pytest.mark.parametrize("body", sorted(BODY))
def test_body_colours_told_apart(body: str) -> None:
    result = analyze_tongue(make_tongue(body, coating="white", coverage=0.15))
    assert result.found
    feat = result.features["body_colour"]
    assert feat.category == body, feat.measurements
    assert 0.0 < feat.confidence <= 1.0
    assert result.white_balance.neutral_reference_found


def test_pil_input_and_engine() -> None:
    result = analyze_tongue(Image.fromarray(make_tongue("pale")))
    assert result.found and result.engine == ENGINE == "classic-cv"
    assert 0.05 < result.mask_ratio < 0.5


@pytest.mark.parametrize("colour", ["white", "yellow"])
def test_coating_colour(colour: str) -> None:
    result = analyze_tongue(make_tongue("light_red", coating=colour, coverage=0.3))
    assert result.features["coating_colour"].category == colour


@pytest.mark.parametrize("body", ["light_red", "pale"])
@pytest.mark.parametrize(
    ("coverage", "expected"), [(0.0, "peeled_or_none"), (0.15, "thin"), (0.6, "thick")]
)
def test_coating_thickness(body: str, coverage: float, expected: str) -> None:
    # A pale body is nearly as unsaturated as white coating: it must not count as coating.
    result = analyze_tongue(make_tongue(body, coating="white", coverage=coverage))
    feat = result.features["coating_thickness"]
    assert feat.category == expected, feat.measurements
    assert feat.value == pytest.approx(coverage, abs=0.08)


def test_white_balance_keeps_class_under_warm_cast() -> None:
    neutral = analyze_tongue(make_tongue("pale", coating="white", coverage=0.15))
    cast = make_tongue("pale", coating="white", coverage=0.15, cast=WARM)
    corrected = analyze_tongue(cast)
    raw = analyze_tongue(cast, white_balance=False)
    assert neutral.features["body_colour"].category == "pale"
    assert corrected.features["body_colour"].category == "pale"
    assert corrected.white_balance.neutral_reference_found
    assert corrected.white_balance.method == "neutral-reference"
    r, _, b = corrected.white_balance.gains
    assert r < 1.0 < b  # a warm cast is undone by damping red and lifting blue
    # Without the correction the same photo reads as a redder tongue: the step matters.
    assert raw.found and raw.features["body_colour"].category != "pale"


def test_without_neutral_reference_falls_back_to_gray_world() -> None:
    result = analyze_tongue(make_tongue("red", grey_card=False, cast=WARM))
    assert result.found
    assert result.white_balance.method == "gray-world"
    assert not result.white_balance.neutral_reference_found
    assert result.white_balance.confidence < 1.0
    assert result.features["body_colour"].category == "red"
    assert result.white_balance.confidence <= 1.0


def test_skin_only_background_is_not_taken_for_a_grey_card() -> None:
    # Skin is the lowest-chroma surface here, but its hue is not an illuminant's: no neutral.
    for body in ("red", "pale"):
        result = analyze_tongue(make_tongue(body, grey_card=False))
        assert result.found, body
        assert not result.white_balance.neutral_reference_found
        assert result.white_balance.confidence < 1.0
        assert result.features["body_colour"].category == body


def test_thick_coating_texture_is_not_a_crack() -> None:
    for colour in ("white", "yellow"):
        for seed in range(3):
            result = analyze_tongue(
                make_tongue("light_red", coating=colour, coverage=0.6, seed=seed)
            )
            assert not result.features["cracks"].detected, result.features["cracks"].measurements


@pytest.mark.parametrize("body", ["light_red", "pale"])
def test_cracks_detected_only_when_drawn(body: str) -> None:
    with_cracks = analyze_tongue(make_tongue(body, coating="white", coverage=0.1, cracks=True))
    without = analyze_tongue(make_tongue(body, coating="white", coverage=0.1))
    assert with_cracks.features["cracks"].detected, with_cracks.features["cracks"].measurements
    assert not without.features["cracks"].detected, without.features["cracks"].measurements
    assert (with_cracks.features["cracks"].value or 0) > (without.features["cracks"].value or 0)


@pytest.mark.parametrize("body", ["pale", "red"])
def test_tooth_marks_detected_only_when_drawn(body: str) -> None:
    marked = analyze_tongue(make_tongue(body, tooth_marks=True, coating="white", coverage=0.2))
    smooth = analyze_tongue(make_tongue(body, coating="white", coverage=0.2))
    assert marked.features["tooth_marks"].detected, marked.features["tooth_marks"].measurements
    assert not smooth.features["tooth_marks"].detected, smooth.features["tooth_marks"].measurements
    assert (marked.features["tooth_marks"].value or 0) >= 2


@pytest.mark.parametrize(
    "image",
    [
        np.full((480, 640, 3), 128, np.uint8),
        np.tile(np.array([40, 80, 200], np.uint8), (480, 640, 1)),
    ],
    ids=["grey", "blue"],
)
def test_no_tongue_is_a_result_not_an_error(image: np.ndarray) -> None:
    result = analyze_tongue(image)
    assert isinstance(result, TongueResult)
    assert not result.found
    assert result.explanation
    assert result.features == {}
    assert result.to_dict("en")["found"] is False


def _texts(d: object) -> list[str]:
    if isinstance(d, str):
        return [d]
    if isinstance(d, dict):
        return [t for v in d.values() for t in _texts(v)]
    if isinstance(d, list):
        return [t for v in d for t in _texts(v)]
    return []


def test_to_dict_carries_meanings_and_framing() -> None:
    result = analyze_tongue(
        make_tongue("red", coating="yellow", coverage=0.5, cracks=True, tooth_marks=True)
    )
    en, zh = result.to_dict("en"), result.to_dict("zh-CN")
    assert en["engine"] == zh["engine"] == "classic-cv"
    for name in ("body_colour", "coating_colour", "coating_thickness", "cracks", "tooth_marks"):
        assert en["features"][name]["meaning"].startswith("In traditional Chinese medicine")
        assert "传统" in zh["features"][name]["meaning"]
        assert en["features"][name]["source"]
    assert "not a medical diagnosis" in en["framing"]
    assert "并非医学诊断" in zh["framing"] and " " not in zh["framing"]
    # The only mention of diagnosis is the framing's negation.
    # (Sources name the textbook, 中医诊断学 / "TCM Diagnostics": a title, not a claim.)
    for text in _texts({k: v for k, v in en.items() if k != "framing"}):
        text = text if "textbook" not in text else ""
        assert "diagnos" not in text.lower(), text
    assert "diagnos" not in re.sub(r"not a medical diagnosis", "", en["framing"].lower())
    for text in _texts({k: v for k, v in zh.items() if k != "framing"}):
        assert "诊断为" not in text and "确诊" not in text


def test_every_class_has_bilingual_meaning() -> None:
    meanings = load_meanings()
    for name, classes in meanings["features"].items():
        for cls, entry in classes.items():
            assert entry["meaning"]["en"] and entry["meaning"]["zh"], (name, cls)
            assert "diagnos" not in entry["meaning"]["en"].lower()
            assert "传统" in entry["meaning"]["zh"]
            assert entry["source"]


def test_scale_independence() -> None:
    # Speed is measured in benchmarks/vision.py, not asserted here.
    small = make_tongue("red", coating="white", coverage=0.2)
    big = cv2.resize(small, (4000, 3000), interpolation=cv2.INTER_LINEAR)
    result = analyze_tongue(big)
    assert result.found and result.working_size == (640, 480)
    assert result.features["body_colour"].category == "red"


@pytest.mark.parametrize(
    ("body", "coating"),
    [("pale", "white"), ("red", "yellow"), ("pale", "yellow"), ("red", "white")],
)
def test_pale_white_and_red_yellow_tongues_told_apart(body: str, coating: str) -> None:
    """The issue's pair, both features read from one photo, through the whole photo path
    (JPEG bytes -> intake -> analysis), with the other combinations as controls."""
    data = io.BytesIO()
    Image.fromarray(make_tongue(body, coating=coating, coverage=0.2, seed=3)).save(
        data, format="JPEG", quality=90
    )
    result = analyze_tongue(load_image(data.getvalue()).image)
    assert result.found
    assert result.features["body_colour"].category == body
    assert result.features["coating_colour"].category == coating
    assert result.features["coating_thickness"].category == "thin"


def test_blurred_copy_of_a_tongue_photo_is_flagged() -> None:
    """The sharp synthetic tongue passes the tongue-photo checks; a blurred copy of the very
    same photo is flagged ``blurry`` and nothing else, with advice in both languages."""
    sharp = make_tongue("red", coating="yellow", coverage=0.3, size=(960, 1280))
    blurred = cv2.GaussianBlur(sharp, (0, 0), 4)
    ok = check_quality(sharp, purpose="tongue")
    assert ok.ok, ok.to_dict()
    flagged = check_quality(blurred, purpose="tongue")
    assert flagged.codes == {"blurry"}, flagged.to_dict()
    issue = flagged.issues[0]
    assert issue.value < BLUR_MIN_VARIANCE < ok.metrics["blur_laplacian_var"]
    assert "blurry" in issue.message("en") and "模糊" in issue.message("zh-CN")
    # The blur does not change what the tongue analysis reads; the advice is about the photo.
    assert analyze_tongue(blurred).features["body_colour"].category == "red"


def test_every_tongue_finding_points_at_a_pack_article_in_both_languages() -> None:
    from healtrace.knowledge.pack import article_paths, load_article
    from healtrace.vision.service import TONGUE_ARTICLES, _tongue_articles

    ids: dict[str, dict[str, str]] = {}
    for path in article_paths():
        article = load_article(path)
        ids.setdefault(path.parent.name, {})[article.doc_id] = path.read_text("utf-8")
    for finding, article_id in TONGUE_ARTICLES.items():
        for lang in ("en", "zh-CN"):
            assert article_id in ids[lang], (finding, lang)
            assert "category: tcm-tongue" in ids[lang][article_id], (finding, lang)
    # Every class the analysis can report with a traditional meaning either has its own
    # article or is covered by the overview, which is always listed first.
    result = analyze_tongue(
        make_tongue("pale", coating="yellow", coverage=0.5, cracks=True, tooth_marks=True)
    ).to_dict("en")
    articles = _tongue_articles(result)
    assert articles[0] == "tcm-tongue-inspection-overview"
    assert {"tcm-tongue-pale", "tcm-tongue-yellow-coating", "tcm-tongue-cracks"} <= set(articles)
    assert "tcm-tongue-tooth-marks" in articles
