"""Emergency telephone numbers by region.

The region comes from the tenant's setting when there is one, else from the locale's region
subtag (``en-GB`` → ``GB``), else from the language (Chinese → ``CN``, English → ``US``).
"""

from __future__ import annotations

import re

#: European Union members: 112 everywhere.
_EU = frozenset(
    {
        "AT",
        "BE",
        "BG",
        "HR",
        "CY",
        "CZ",
        "DK",
        "EE",
        "FI",
        "FR",
        "DE",
        "GR",
        "HU",
        "IT",
        "LV",
        "LT",
        "LU",
        "MT",
        "NL",
        "PL",
        "PT",
        "RO",
        "SK",
        "SI",
        "ES",
        "SE",
    }
)

#: The number for medical emergencies (ambulance) in each region.
EMERGENCY_NUMBERS: dict[str, str] = {
    "CN": "120",
    "TW": "119",
    "HK": "999",
    "MO": "999",
    "SG": "995",
    "US": "911",
    "CA": "911",
    "GB": "999",
    "IE": "112",
    "AU": "000",
    "NZ": "111",
    "IN": "112",
    "JP": "119",
    "KR": "119",
    **dict.fromkeys(_EU, "112"),
}
#: Where the number is not listed.
DEFAULT_NUMBER = "112"

# Common aliases people type instead of the ISO 3166 code.
_ALIASES = {"UK": "GB", "EN": "GB", "PRC": "CN", "USA": "US", "EL": "GR"}
# Likely region of a language with no region subtag (CLDR "likely subtags").
_LANGUAGE_REGIONS = {
    "zh": "CN",
    "en": "US",
    "ja": "JP",
    "ko": "KR",
    "fr": "FR",
    "de": "DE",
    "es": "ES",
    "it": "IT",
    "pt": "PT",
    "nl": "NL",
}
_SCRIPT_REGIONS = {("zh", "hant"): "TW", ("zh", "hans"): "CN"}
_SPLIT = re.compile(r"[-_]")


def region_of_locale(locale: str) -> str:
    """``en-GB`` → ``GB``, ``zh-Hant-HK`` → ``HK``, ``zh-Hant`` → ``TW``, ``zh`` → ``CN``."""
    parts = [p for p in _SPLIT.split(locale.strip()) if p]
    if not parts:
        return "CN"
    language = parts[0].lower()
    script = ""
    for part in parts[1:]:
        if (len(part) == 2 and part.isalpha()) or (len(part) == 3 and part.isdigit()):
            return _normal(part)
        if len(part) == 4 and part.isalpha():
            script = part.lower()
    if (language, script) in _SCRIPT_REGIONS:
        return _SCRIPT_REGIONS[(language, script)]
    return _LANGUAGE_REGIONS.get(language, "")


def _normal(region: str) -> str:
    code = region.strip().upper()
    return _ALIASES.get(code, code)


def emergency_number(region: str | None, locale: str) -> tuple[str, str]:
    """``(number, region)``: the tenant's region if given, else the locale's."""
    code = _normal(region) if region and region.strip() else region_of_locale(locale)
    return EMERGENCY_NUMBERS.get(code, DEFAULT_NUMBER), code
