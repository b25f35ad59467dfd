"""Body-mass index with the WHO adult categories and the Chinese adult cut-offs.

Sources: WHO, "A healthy lifestyle - WHO recommendations" (BMI classes 18.5 / 25 / 30);
National Health Commission of the PRC, WS/T 428-2013 "Criteria of weight for adults"
(underweight < 18.5, normal 18.5-23.9, overweight 24.0-27.9, obese >= 28.0).
BMI is a screening measure for adults; it does not apply to children, pregnancy, or
very muscular people, and the result says so.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from healtrace.tools.core import ToolContext, ToolRetry, tool

Category = Literal["underweight", "normal", "overweight", "obese"]

_LABELS: dict[Category, tuple[str, str]] = {
    "underweight": ("underweight", "体重过低"),
    "normal": ("healthy weight", "正常体重"),
    "overweight": ("overweight", "超重"),
    "obese": ("obesity", "肥胖"),
}

_CAVEAT = (
    "BMI screens adults only; it does not apply in pregnancy, to children, or to very "
    "muscular people. Discuss your weight goals with a clinician.",
    "BMI 仅用于成年人筛查，不适用于孕期、儿童或肌肉特别发达的人。体重目标请与医生讨论。",
)

_WHO_CUTS = (18.5, 25.0, 30.0)
_CHINA_CUTS = (18.5, 24.0, 28.0)


def classify(bmi: float, cuts: tuple[float, float, float]) -> Category:
    low, over, obese = cuts
    if bmi < low:
        return "underweight"
    if bmi < over:
        return "normal"
    if bmi < obese:
        return "overweight"
    return "obese"


class BmiResult(BaseModel):
    bmi: float
    category_who: Category
    category_china: Category
    label: str
    caveat: str
    sources: list[str]


@tool(timeout_s=2.0)
async def body_mass_index(
    ctx: ToolContext,
    weight: Annotated[float, Field(gt=0, le=700, examples=[70])],
    height: Annotated[float, Field(gt=0, le=300, examples=[175])],
    unit_system: Literal["metric", "imperial"] = "metric",
) -> BmiResult:
    """Calculate an adult's body-mass index (BMI) and its weight category.

    Use when the user gives a weight and a height and asks about BMI or healthy weight.

    Args:
        weight: Body weight, in kilograms (metric) or pounds (imperial).
        height: Standing height, in centimetres (metric) or inches (imperial).
        unit_system: "metric" for kg and cm, "imperial" for lb and in.
    """
    if unit_system == "imperial":
        weight_kg, height_m = weight * 0.45359237, height * 0.0254
    else:
        weight_kg, height_m = weight, height / 100.0
    if not 0.5 <= height_m <= 2.75:
        raise ToolRetry(
            f"A height of {height} {'in' if unit_system == 'imperial' else 'cm'} is not "
            "plausible for an adult; check the unit (centimetres for metric) and try again."
        )
    value = round(weight_kg / (height_m * height_m), 1)
    if not 8 <= value <= 150:
        raise ToolRetry(
            f"That gives a BMI of {value}, which is not plausible; check weight and height units."
        )
    who, china = classify(value, _WHO_CUTS), classify(value, _CHINA_CUTS)
    zh = ctx.locale.lower().startswith("zh")
    category = china if zh else who
    return BmiResult(
        bmi=value,
        category_who=who,
        category_china=china,
        label=_LABELS[category][1 if zh else 0],
        caveat=_CAVEAT[1 if zh else 0],
        sources=[
            "WHO: BMI classification for adults (18.5 / 25 / 30)",
            "NHC China WS/T 428-2013: adult weight criteria (18.5 / 24 / 28)",
        ],
    )
