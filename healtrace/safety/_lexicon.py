"""Load the bilingual triage lexicon (``healtrace/safety/lexicon/*.yaml``) into typed rules.

The YAML files are the clinical content; this module only reads, checks and expands them.

* ``language.yaml`` holds the language machinery: negation triggers and their scope,
  hypothetical and history markers, idioms, and ``macros`` (regex fragments written
  ``<<name>>`` in any pattern).
* Every other file holds ``findings`` (named things a message can say, each a list of regexes,
  English and Chinese together) and ``rules`` (a level and a bilingual message for a
  combination of findings). Findings are global: a rule may use a finding from any file, and
  the numeric findings ``num.*`` that :mod:`healtrace.safety._measures` derives from values.

Patterns run on normalised text (see :func:`healtrace.safety._text.normalise`): lowercase,
NFKC, no apostrophes (``can't`` → ``cant``), single spaces.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from healtrace.safety._measures import NUMERIC_FINDINGS
from healtrace.safety.types import CATEGORIES, Level

LEXICON_PACKAGE = "healtrace.safety"
LEXICON_DIR = "lexicon"

#: Pseudo-categories of files whose rules are not red flags.
NON_RED_FLAG = ("none",)

_MACRO = re.compile(r"<<(\w+)>>")

Context = Literal["acute", "risk"]


class LexiconError(ValueError):
    """The lexicon files are malformed; the message names the file and the entry."""


@dataclass(frozen=True, slots=True)
class Finding:
    name: str
    #: ``acute``: something happening now, ignored when negated, hypothetical or in the past.
    #: ``risk``: a standing fact (age, a known disease); ignored only when negated.
    context: Context
    source: str
    #: The patterns split at every top-level ``|``, so triage can skip each on its own.
    parts: tuple[re.Pattern[str], ...]


@dataclass(frozen=True, slots=True)
class Rule:
    code: str
    category: str
    level: Level
    all: tuple[str, ...]
    any: tuple[str, ...]
    none: tuple[str, ...]
    message_en: str
    message_zh: str


@dataclass(frozen=True, slots=True)
class LanguageConfig:
    """Compiled language machinery from ``language.yaml``."""

    en_negation: re.Pattern[str]
    en_list_negation: re.Pattern[str]
    en_pseudo_negation: re.Pattern[str]
    en_post_negation: re.Pattern[str]
    en_terminators: re.Pattern[str]
    en_subject_start: re.Pattern[str]
    en_list_joiner: re.Pattern[str]
    zh_negation: re.Pattern[str]
    zh_single_negation: re.Pattern[str]
    zh_pseudo_negation: re.Pattern[str]
    zh_post_negation: re.Pattern[str]
    zh_terminators: re.Pattern[str]
    zh_fillers: re.Pattern[str]
    conditional: re.Pattern[str]
    conditional_terminators: re.Pattern[str]
    pseudo_conditional: re.Pattern[str]
    info_question: re.Pattern[str]
    anchors: re.Pattern[str]
    personal: re.Pattern[str]
    history: re.Pattern[str]
    history_forward: re.Pattern[str]
    history_cues: re.Pattern[str]
    idioms: re.Pattern[str]
    retraction: re.Pattern[str]
    #: Misspelling or shorthand → the word the lexicon uses.
    spelling: dict[str, str]
    spelling_pattern: re.Pattern[str] | None
    en_window_words: int
    en_list_window_words: int
    zh_window_chars: int


@dataclass(frozen=True, slots=True)
class LabMessage:
    message_en: str
    message_zh: str


@dataclass(frozen=True, slots=True)
class Lexicon:
    language: LanguageConfig
    findings: dict[str, Finding]
    rules: tuple[Rule, ...]
    #: ``analyte.direction`` (e.g. ``potassium.high``) → message; ``default`` as fallback.
    lab_messages: dict[str, LabMessage]


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses repeated keys (plain YAML keeps the last one silently)."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise LexiconError(f"repeated key {key!r} at line {key_node.start_mark.line + 1}")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def _load_yaml(text: str, name: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)
    except LexiconError as exc:
        raise LexiconError(f"{name}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise LexiconError(f"{name}: not valid YAML: {exc}") from exc


def _read(path: Path | None) -> dict[str, Any]:
    """All YAML documents of the lexicon, by file name."""
    out: dict[str, Any] = {}
    if path is not None:
        files = sorted(path.glob("*.yaml"))
        if not files:
            raise LexiconError(f"no *.yaml files in {path}")
        for file in files:
            out[file.name] = _load_yaml(file.read_text("utf-8"), file.name)
        return out
    root = resources.files(LEXICON_PACKAGE).joinpath(LEXICON_DIR)
    for entry in sorted(root.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".yaml"):
            out[entry.name] = _load_yaml(entry.read_text("utf-8"), entry.name)
    if not out:
        raise LexiconError("the packaged lexicon has no *.yaml files")
    return out


class _Expander:
    def __init__(self, macros: dict[str, str]) -> None:
        self.macros = macros

    def expand(self, pattern: str, where: str, depth: int = 0) -> str:
        if depth > 6:
            raise LexiconError(f"{where}: macros nest too deeply")

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in self.macros:
                raise LexiconError(f"{where}: unknown macro <<{name}>>")
            return self.expand(self.macros[name], f"{where} <<{name}>>", depth + 1)

        return _MACRO.sub(sub, pattern)

    def compile_parts(self, patterns: list[str], where: str) -> tuple[re.Pattern[str], ...]:
        """Each pattern split into its top-level alternatives, compiled one by one."""
        if not patterns:
            raise LexiconError(f"{where}: no patterns")
        parts: list[re.Pattern[str]] = []
        for i, p in enumerate(patterns):
            if not isinstance(p, str) or not p:
                raise LexiconError(f"{where}[{i}]: a pattern must be a non-empty string")
            source = self.expand(p, f"{where}[{i}]")
            try:
                re.compile(source)
                parts.extend(re.compile(alt) for alt in split_alternatives(source))
            except re.error as exc:
                raise LexiconError(f"{where}[{i}]: bad regex {p!r}: {exc}") from exc
        return tuple(parts)

    def compile(self, patterns: list[str], where: str) -> re.Pattern[str]:
        if not patterns:
            raise LexiconError(f"{where}: no patterns")
        parts = []
        for i, p in enumerate(patterns):
            if not isinstance(p, str) or not p:
                raise LexiconError(f"{where}[{i}]: a pattern must be a non-empty string")
            source = self.expand(p, f"{where}[{i}]")
            try:
                re.compile(source)
            except re.error as exc:
                raise LexiconError(f"{where}[{i}]: bad regex {p!r}: {exc}") from exc
            parts.append(f"(?:{source})")
        return re.compile("|".join(parts))


def split_alternatives(pattern: str) -> list[str]:
    """``a|(b|c)|d`` → ``["a", "(b|c)", "d"]``: split at ``|`` outside groups and classes."""
    parts: list[str] = []
    depth = 0
    in_class = False
    start = 0
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_class:
            if ch == "]":
                in_class = False
        elif ch == "[":
            in_class = True
            # A "]" right after "[" or "[^" is a literal.
            if pattern[i + 1 : i + 2] == "^":
                i += 1
            if pattern[i + 1 : i + 2] == "]":
                i += 1
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            parts.append(pattern[start:i])
            start = i + 1
        i += 1
    parts.append(pattern[start:])
    return [p for p in parts if p]


def _strings(doc: dict[str, Any], key: str, where: str) -> list[str]:
    value = doc.get(key, [])
    if isinstance(value, dict):
        out: list[str] = []
        for lang in ("en", "zh"):
            out.extend(_strings(value, lang, f"{where}.{key}"))
        return out
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise LexiconError(f"{where}: '{key}' must be a list of strings")
    return list(value)


def _language(doc: dict[str, Any], ex: _Expander) -> LanguageConfig:
    w = "language.yaml"

    def c(*keys: str) -> re.Pattern[str]:
        node: Any = doc
        for k in keys[:-1]:
            node = node.get(k, {}) if isinstance(node, dict) else {}
        return ex.compile(_strings(node, keys[-1], w), f"{w}:{'.'.join(keys)}")

    window = doc.get("windows", {})
    spelling = {str(k).lower(): str(v).lower() for k, v in (doc.get("spelling") or {}).items()}
    spelling_pattern = (
        re.compile(
            r"(?<![\w/-])(?:"
            + "|".join(re.escape(k) for k in sorted(spelling, key=len, reverse=True))
            + r")(?![\w/-])"
        )
        if spelling
        else None
    )
    return LanguageConfig(
        en_negation=c("negation", "en", "triggers"),
        en_list_negation=c("negation", "en", "list_triggers"),
        en_pseudo_negation=c("negation", "en", "pseudo"),
        en_post_negation=c("negation", "en", "post"),
        en_terminators=c("negation", "en", "terminators"),
        en_subject_start=c("negation", "en", "subject_start"),
        en_list_joiner=c("negation", "en", "list_joiners"),
        zh_negation=c("negation", "zh", "triggers"),
        zh_single_negation=c("negation", "zh", "single"),
        zh_pseudo_negation=c("negation", "zh", "pseudo"),
        zh_post_negation=c("negation", "zh", "post"),
        zh_terminators=c("negation", "zh", "terminators"),
        zh_fillers=c("negation", "zh", "fillers"),
        conditional=c("hypothetical", "conditional"),
        conditional_terminators=c("hypothetical", "terminators"),
        pseudo_conditional=c("hypothetical", "pseudo_conditional"),
        info_question=c("hypothetical", "info"),
        anchors=c("hypothetical", "anchors"),
        personal=c("hypothetical", "personal"),
        history=c("history"),
        history_forward=c("history_forward"),
        history_cues=c("history_cues"),
        idioms=c("idioms"),
        retraction=c("retraction"),
        spelling=spelling,
        spelling_pattern=spelling_pattern,
        en_window_words=int(window.get("en_words", 8)),
        en_list_window_words=int(window.get("en_list_words", 16)),
        zh_window_chars=int(window.get("zh_chars", 12)),
    )


def _level(value: Any, where: str) -> Level:
    try:
        return Level(value)
    except ValueError as exc:
        raise LexiconError(f"{where}: unknown level {value!r}") from exc


def load_lexicon(path: Path | None = None) -> Lexicon:
    """Read, check and compile the lexicon (the packaged one unless ``path`` is a folder)."""
    docs = _read(path)
    if "language.yaml" not in docs:
        raise LexiconError("the lexicon needs a language.yaml")
    macros: dict[str, str] = {}
    for name, doc in docs.items():
        for key, value in (doc or {}).get("macros", {}).items():
            if key in macros:
                raise LexiconError(f"{name}: macro <<{key}>> is defined twice")
            macros[key] = str(value)
    ex = _Expander(macros)
    language = _language(docs["language.yaml"], ex)

    findings: dict[str, Finding] = {}
    rules: list[Rule] = []
    lab_messages: dict[str, LabMessage] = {}
    codes: set[str] = set()
    for name, doc in docs.items():
        if name == "language.yaml" or not doc:
            continue
        category = doc.get("category")
        if category not in CATEGORIES and category not in NON_RED_FLAG:
            raise LexiconError(f"{name}: unknown category {category!r}")
        for fname, fdoc in (doc.get("findings") or {}).items():
            where = f"{name}:findings.{fname}"
            if fname in findings or fname in NUMERIC_FINDINGS:
                raise LexiconError(f"{where}: finding is defined twice")
            if not isinstance(fdoc, dict):
                raise LexiconError(f"{where}: expected a mapping with en/zh lists")
            context = fdoc.get("context", "acute")
            if context not in ("acute", "risk"):
                raise LexiconError(f"{where}: context must be acute or risk")
            patterns = _strings(fdoc, "en", where) + _strings(fdoc, "zh", where)
            findings[fname] = Finding(fname, context, name, ex.compile_parts(patterns, where))
        for i, rdoc in enumerate(doc.get("rules") or []):
            where = f"{name}:rules[{i}]"
            code = rdoc.get("code")
            if not isinstance(code, str) or code in codes:
                raise LexiconError(f"{where}: missing or repeated code {code!r}")
            codes.add(code)
            rule = Rule(
                code=code,
                category=category,
                level=_level(rdoc.get("level"), where),
                all=tuple(rdoc.get("all", ())),
                any=tuple(rdoc.get("any", ())),
                none=tuple(rdoc.get("none", ())),
                message_en=str(rdoc.get("message_en", "")).strip(),
                message_zh=str(rdoc.get("message_zh", "")).strip(),
            )
            if not rule.all and not rule.any:
                raise LexiconError(f"{where}: a rule needs 'all' or 'any'")
            if category in CATEGORIES and not (rule.message_en and rule.message_zh):
                raise LexiconError(f"{where}: a red-flag rule needs message_en and message_zh")
            rules.append(rule)
        for key, mdoc in (doc.get("lab_messages") or {}).items():
            lab_messages[key] = LabMessage(
                str(mdoc["message_en"]).strip(), str(mdoc["message_zh"]).strip()
            )
    for rule in rules:
        for ref in (*rule.all, *rule.any, *rule.none):
            for name in re.split(r"[|+]", ref):
                if name.strip() not in findings and name.strip() not in NUMERIC_FINDINGS:
                    raise LexiconError(f"rule {rule.code}: unknown finding {name!r}")
    if "wants_human" not in findings:
        raise LexiconError("the lexicon needs a 'wants_human' finding")
    return Lexicon(language, findings, tuple(rules), lab_messages)
