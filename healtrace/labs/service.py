"""One entry point for every way lab results arrive (REST, CLI, the assistant's tool).

Text is parsed by :mod:`healtrace.labs.parse_text`, FHIR by :mod:`healtrace.labs.parse_fhir`;
both feed :func:`healtrace.labs.interpret.interpret`. What the parsers could not read joins
the interpreter's warnings, so nothing is dropped without saying so.
"""

from __future__ import annotations

from typing import Any

from healtrace.errors import InputError
from healtrace.labs.interpret import LabReport, interpret
from healtrace.labs.parse_fhir import parse_fhir
from healtrace.labs.parse_text import parse_lab_text
from healtrace.labs.types import ParseWarning, RawResult

#: Longest text accepted (a long pasted report is a few thousand characters).
MAX_TEXT_CHARS = 200_000


def read_results(
    *, text: str | None = None, fhir: Any = None, image: bytes | None = None
) -> tuple[list[RawResult], list[ParseWarning]]:
    if text is None and fhir is None and image is None:
        raise InputError("no input", code="labs_no_results")
    rows: list[RawResult] = []
    warnings: list[ParseWarning] = []
    if text is not None:
        if len(text) > MAX_TEXT_CHARS:
            raise InputError("text too long", code="labs_input_too_large", limit=MAX_TEXT_CHARS)
        got, problems = parse_lab_text(text, max_chars=MAX_TEXT_CHARS)
        rows += got
        warnings += problems
    if fhir is not None:
        got, problems = parse_fhir(fhir)
        rows += got
        warnings += problems
    if image is not None:
        from healtrace.labs.ocr import parse_report_image

        got, problems = parse_report_image(image)
        rows += got
        warnings += problems
    if not rows:
        raise InputError("nothing found", code="labs_no_results")
    return rows, warnings


def interpret_input(
    *,
    text: str | None = None,
    fhir: Any = None,
    image: bytes | None = None,
    sex: str | None = None,
    age: float | None = None,
    weight_kg: float | None = None,
    height_cm: float | None = None,
    locale: str = "en",
) -> tuple[LabReport, dict[str, Any]]:
    """The report and its JSON form (parse warnings included)."""
    rows, problems = read_results(text=text, fhir=fhir, image=image)
    report = interpret(
        rows, sex=sex, age=age, weight_kg=weight_kg, height_cm=height_cm, locale=locale
    )
    out = report.to_dict(locale)
    out["warnings"] = [
        {"code": p.code, "message": p.detail, "line": p.line} for p in problems
    ] + out["warnings"]
    return report, out
