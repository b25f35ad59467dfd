"""The vision-language model route: a de-identified image and a question to an
OpenAI-compatible multimodal chat endpoint (vLLM serving Qwen2.5-VL, or any server that takes
``image_url`` content parts).

Only images that have been through intake (EXIF and GPS stripped, re-encoded) or DICOM
de-identification reach this module; it sends PNG bytes as a ``data:`` URL, never a file
path or the original upload. The model is told what it is for and what it must not do;
what it says is still checked like any answer (the output guard runs on the turn) and is
labelled as the VLM's in every result.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import openai

from healtrace.config import VisionConfig
from healtrace.errors import HealTraceError

__all__ = ["VisionLanguageModel", "VlmAnswer", "VlmUnavailable"]

_SYSTEM = {
    "en": (
        "You describe medical images for a patient-facing health information service. "
        "Describe what is visible, plainly and briefly. Do not diagnose, do not name a "
        "disease as certain, do not give doses. If the image is unclear or not medical, say "
        "so. Never read out names, ID numbers or other personal details visible in the image."
    ),
    "zh": (
        "你为面向患者的健康信息服务描述医学图像。请简明、客观地描述可见内容。"
        "不要做诊断，不要断言疾病，不要给出用药剂量。图像不清晰或与医学无关时请直接说明。"
        "不要读出图像中可见的姓名、证件号等个人信息。"
    ),
}


class VlmUnavailable(HealTraceError):
    """The configured vision model could not be reached or answered unusably."""

    code = "vlm_unavailable"


@dataclass(frozen=True)
class VlmAnswer:
    text: str
    #: "vlm:<model>" — which route produced the text.
    engine: str


class VisionLanguageModel:
    def __init__(self, config: VisionConfig) -> None:
        self.config = config

    @property
    def configured(self) -> bool:
        return bool(self.config.vlm_url)

    async def describe(self, png: bytes, question: str, *, locale: str) -> VlmAnswer:
        """Ask the model about one de-identified PNG image."""
        zh = locale.lower().startswith("zh")
        url = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        client = openai.AsyncOpenAI(
            base_url=self.config.vlm_url,
            api_key=self.config.vlm_api_key.get_secret_value(),
            timeout=self.config.vlm_timeout_s,
            max_retries=1,
        )
        try:
            async with client:
                reply = await client.chat.completions.create(
                    model=self.config.vlm_model,
                    max_tokens=self.config.vlm_max_tokens,
                    temperature=0.2,
                    messages=[
                        {"role": "system", "content": _SYSTEM["zh" if zh else "en"]},
                        {
                            "role": "user",
                            "content": [
                                {"type": "text", "text": question},
                                {"type": "image_url", "image_url": {"url": url}},
                            ],
                        },
                    ],
                )
        except openai.OpenAIError as exc:
            raise VlmUnavailable(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
        text = (reply.choices[0].message.content or "").strip() if reply.choices else ""
        if not text:
            raise VlmUnavailable("the vision model returned no text")
        return VlmAnswer(text=text, engine=f"vlm:{self.config.vlm_model}")
