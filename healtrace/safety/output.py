"""Scope and tone rules enforced in code on the assistant's streamed answer.

The model streams text; :class:`OutputGuard` sits between it and the patient. Text passes
through at once unless the current sentence contains a *trigger* (the start of something
that may turn out to be a violation: "I am a", "you have", "take", a dose like "500 mg",
"我是", "你得了", "每次" ...). From the trigger on, that sentence is held back until it ends
(``. ! ?`` followed by a space, ``。！？``, a newline, or ~400 held characters), checked as a
whole, and released unchanged or rewritten. A word that could still grow into a trigger
("yo", "500 m") is held only until the next piece of text decides it. Triggers whose first
words are very common sentence openings ("This is definitely", "It's clearly", "I'm sure")
start at the distinctive word instead, and only after the right words, so "This is the …"
streams at once; such a sentence is rewritten from that word on.

Rules, each with a stable id recorded in :class:`OutputAction`:

``doctor_claim``
    The assistant says it is a doctor, nurse or human → that sentence becomes a statement
    that HealTrace is an AI assistant.
``definitive_diagnosis``
    "You have pneumonia", "你得了流感" → hedged: "This could be consistent with …; only a
    clinician who examines you can diagnose it." / "这可能与……有关，确诊需要医生面诊".
    "This is definitely pneumonia" keeps its streamed "This is " → "This is possibly
    consistent with pneumonia; only a clinician …"; "I'm sure you have …" → "I'm not able
    to diagnose you: this could be consistent with …".
``individual_dosing``
    A dose amount with a unit *and* an instruction aimed at this person (an imperative such
    as "Take …" / "每次服用 …", "you should/can take …", "你吃 …", "I recommend …") → the
    sentence is replaced by advice to get the dose from a doctor or pharmacist. General
    reference information with no personal instruction ("the usual adult dose on the
    paracetamol leaflet is up to 4 g a day", "成人每日不超过 4 克") is left alone: it is what
    an OTC package leaflet says, and refusing it would hide useful safety limits. Quoting a
    label *at* the patient ("the leaflet says you can take 4 g") counts as personal.
``blocked``
    Lethal doses or self-harm methods → nothing more of the answer is released; a crisis
    message (emergency number, crisis line; 12356 / 120 / 110 in Chinese) is shown instead.
    A sentence that merely names a lethal dose, even in a refusal, is blocked too: the
    crisis message is a fine substitute for a refusal.
``disclaimer``
    Appended as its own paragraph when the answer gives health advice (keyword heuristic)
    or triage was urgent/emergency, unless the answer already carries an equivalent one.
``uncited_fact``
    Appended when the answer states medical facts (medical terms or dose-like numbers, more
    than a short sentence), is not a refusal, and no citation resolved to a source.

The rules run on both languages' patterns whatever the locale; text the guard writes is
in the answer's ``locale``. Patterns use only bounded or possessive repeats, and deltas
are processed in slices, so no check ever sees more than about a kilobyte: a 50 KB answer
costs time linear in its length, whatever it contains.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from itertools import product
from typing import Literal

from healtrace.safety.types import Level

ActionCode = Literal["edited", "appended", "blocked"]

#: Stable rule ids.
RULES: tuple[str, ...] = (
    "doctor_claim",
    "definitive_diagnosis",
    "individual_dosing",
    "blocked",
    "disclaimer",
    "uncited_fact",
)


@dataclass(frozen=True, slots=True)
class OutputAction:
    """One thing the guard did to an answer, and why (never quotes the conversation)."""

    code: ActionCode
    rule: str
    detail: str

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "rule": self.rule, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class OutputResult:
    #: What to stream now: held-back text (possibly rewritten) and any appended notes.
    text: str
    #: Everything the guard did to this answer, in order of first occurrence.
    actions: tuple[OutputAction, ...]
    blocked: bool


# -- Texts the guard writes (en, zh) -----------------------------------------------------

_DOCTOR_TEXT = (
    "I'm HealTrace, an AI assistant, not a doctor or any other health professional.",
    "我是 HealTrace AI 助手，不是医生或其他医护人员。",
)
_DOSING_TEXT = (
    "I can't give you a personal dose: how much to take must come from your doctor or "
    "pharmacist, or from the package leaflet.",
    "具体用药剂量需要由医生或药师根据你的情况确定，或按药品说明书使用。",
)
_DISCLAIMER = (
    "HealTrace is an AI assistant, not a doctor. This is general health information, not a "
    "diagnosis; for advice about your own situation, please see a clinician.",
    "HealTrace 是 AI 助手，不是医生。以上为一般健康信息，不构成诊断；个人情况请咨询医生。",
)
_UNCITED = (
    "Note: this answer is not backed by a source from the HealTrace knowledge base.",
    "注意：此回答未引用 HealTrace 知识库中的来源。",
)

_DETAILS = {
    "doctor_claim": "replaced a claim to be a doctor or a human with a statement that "
    "HealTrace is an AI assistant",
    "definitive_diagnosis": "hedged a definitive diagnosis of the user",
    "individual_dosing": "replaced a personal dosing instruction with advice to get the dose "
    "from a doctor or pharmacist",
    "blocked": "withheld self-harm method or lethal-dose content and showed crisis guidance",
}


def _crisis_text(zh: bool, emergency_number: str | None) -> str:
    if zh and emergency_number in (None, "120"):
        return (
            "这个问题我无法回答。如果你有伤害自己的想法，或有人可能服用了过量药物，请立即拨打 "
            "120 急救电话或 110 报警；也可以拨打心理援助热线 12356，会有人倾听和帮助你。"
            "你并不孤单。"
        )
    if zh:
        return (
            "这个问题我无法回答。如果你有伤害自己的想法，或有人可能服用了过量药物，请立即拨打当地"
            f"急救电话 {emergency_number}，或联系当地的心理危机干预热线。你并不孤单。"
        )
    call = f"call {emergency_number}" if emergency_number else "call your local emergency number"
    return (
        "I can't help with that. If you are thinking about harming yourself, or someone may "
        f"have taken too much of a medicine, please {call} now, or contact a crisis line or "
        "someone you trust. You don't have to go through this alone."
    )


# -- Triggers: where holding back starts --------------------------------------------------


def _expand(*templates: str) -> list[str]:
    """``"{i am|i'm} {a|an}"`` → every combination."""
    out: list[str] = []
    for template in templates:
        parts = re.split(r"\{([^}]*)\}", template)
        choices = [p.split("|") if i % 2 else [p] for i, p in enumerate(parts)]
        out.extend("".join(c) for c in product(*choices))
    return out


_PROFS = "doctor|physician|nurse|gp|clinician|surgeon|pharmacist|medical|healthcare|health"
_HEADS: dict[str, list[str]] = {
    "doctor_claim": [
        *_expand("{i am|i'm} {a|an|your|human|also|actually|really}", "i work as"),
        *_expand(f"as {{a|an|your}} {{{_PROFS}|treating|attending|qualified|licensed|family}}"),
        *_expand("{我是|作为|身为|本人是}", "本{医生|大夫|医师}"),
        # "Dr. Morgan here" (named claims after "I am" / "This is" are anchored heads below).
        "dr.",
    ],
    "definitive_diagnosis": [
        *_expand("you{ have|'ve| suffer from}", "{you are|you're} suffering"),
        *_expand("you {definitely|certainly|clearly|obviously|undoubtedly}", "what you have"),
        *_expand("i{| can| would|'d| will} diagnose", "{your|my} diagnosis"),
        *_expand("{你|您}{患|得了|得的|就是|肯定|一定|绝对|这是|这就是}", "我诊断", "诊断"),
        *_expand("确诊", "可以确定", "这{肯定|绝对|一定|就|明显}是"),
    ],
    "individual_dosing": [
        *_expand("{take|give|inject|use|increase|double|reduce|try}"),
        *_expand("you {should|can|could|may|need|must|will|take}", "you'{ll|d}"),
        *_expand(
            "i{| would|'d} {recommend|suggest|prescribe|advise}", "my {recommendation|advice}"
        ),
        *_expand("your {dose|dosage}"),
        *_expand("{你|您}{吃|服|口服|可以|应该|应|需要|要|最好|每|一次|一天|先|就}"),
        *_expand("{每次|每日|每天|一次|一日|一天|服用|口服|吃|注射|建议|我建议}"),
        *_expand("请{每|服|吃|口服|按|一}"),
    ],
    "blocked": [
        *_expand("{lethal|fatal|deadly|suicide|painless}", "{method|methods} of suicide"),
        *_expand("{way|ways} to {kill|die|commit|end}", "how to {kill|commit|end|overdose}"),
        *_expand("how many {pills|tablets|capsules|of}", "kill {yourself|myself}"),
        *_expand(
            "{致死|致命|自杀|吃多少|无痛}", "多少{片|粒|颗}", "{怎么|怎样|如何}{自杀|结束|轻生}"
        ),
    ],
}

#: Heads after very common words: (rule, what must come right before, distinctive words).
#: Holding starts at the distinctive word, so "This is " / "It's " / "I'm " are not held.
_ANCHORED_HEADS: list[tuple[str, str, list[str]]] = [
    (
        "definitive_diagnosis",
        r"(?<![A-Za-z])(?:this|that|it)(?:\s++is|['’]s)\s++\Z",
        _expand("{definitely|clearly|certainly|undoubtedly}"),
    ),
    ("definitive_diagnosis", r"(?<![A-Za-z])i(?:\s++am|['’]m)\s++\Z", _expand("{sure|certain}")),
    # "I am Dr. Chen", "This is Nurse Li speaking": held from the title on.
    (
        "doctor_claim",
        r"(?<![A-Za-z])(?:i(?:\s++am|['’]m)|(?:this|it)(?:\s++is|['’]s))\s++\Z",
        ["dr", "doctor", "nurse"],
    ),
]

_LETTERS = frozenset(string.ascii_letters)


def _fold(ch: str) -> str:
    return "'" if ch == "’" else ch.lower()


class _Node:
    __slots__ = ("children", "rules")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.rules: frozenset[str] = frozenset()


def _build_trie(heads: dict[str, list[str]]) -> _Node:
    root = _Node()
    for rule, phrases in heads.items():
        for phrase in phrases:
            node = root
            for ch in " ".join(phrase.split()):
                node = node.children.setdefault(_fold(ch), _Node())
            node.rules = node.rules | {rule}
    return root


_TRIE = _build_trie(_HEADS)
_ANCHORED = [
    (_build_trie({rule: words}), re.compile(context, re.IGNORECASE))
    for rule, context, words in _ANCHORED_HEADS
]
_FIRST = frozenset(_TRIE.children).union(*(trie.children for trie, _ in _ANCHORED))


def _walk(trie: _Node, s: str, start: int, final: bool) -> tuple[frozenset[str], bool]:
    """Trigger phrases starting at ``start``: the rules of those complete there, and
    whether the text ends while a longer trigger is still possible (unless ``final``)."""
    node = trie
    rules: frozenset[str] = frozenset()
    i, n = start, len(s)
    last = ""
    while True:
        if node.rules:
            bounded = last not in _LETTERS or (s[i] not in _LETTERS if i < n else final)
            if bounded:
                rules |= node.rules
            elif i >= n:
                return rules, True
        if i >= n:
            return rules, not final and bool(node.children)
        ch = s[i]
        if ch.isspace():
            if last == " ":
                i += 1
                continue
            ch = " "
        else:
            ch = _fold(ch)
        nxt = node.children.get(ch)
        if nxt is None:
            return rules, False
        node, last, i = nxt, ch, i + 1


# -- Doses -----------------------------------------------------------------------------

_LATIN_UNITS = _expand(
    "{mg|mcg|µg|μg|ug|g|ml|iu|tsp|tbsp|caps}",
    "{milligram|microgram|gram|millilitre|milliliter|unit|tablet|tab|pill|capsule|drop|puff"
    "|sachet|teaspoon|tablespoon}{|s}",
)
_CJK_UNITS = _expand("{毫克|微克|克|毫升|片|粒|单位|国际单位|滴|支|袋|丸|包|勺}")
_NUM = r"\d++(?:[.,]\d++)?"
_RANGE = rf"(?:\s*+(?:-|–|~|to|至|到)\s*+{_NUM})?"
_LATIN_UNIT = "(?:" + "|".join(sorted(map(re.escape, _LATIN_UNITS), key=len, reverse=True)) + ")"
_CJK_UNIT = "(?:" + "|".join(sorted(_CJK_UNITS, key=len, reverse=True)) + ")"
_NOT_BEFORE_NUM = frozenset("0123456789.," + string.ascii_letters)

#: A dose written with digits (a trigger, and part of the dosing rule).
_DOSE_DIGITS = re.compile(
    rf"{_NUM}{_RANGE}\s*+(?:{_LATIN_UNIT}(?![A-Za-z])|{_CJK_UNIT})", re.IGNORECASE
)
#: Any dose, also "two tablets", "两片", "半粒".
_DOSE_ANY = re.compile(
    rf"(?<![\d.,A-Za-z]){_NUM}{_RANGE}\s*+(?:{_LATIN_UNIT}(?![A-Za-z])|{_CJK_UNIT})"
    r"|[一二两三四五六七八九十半]{1,3}\s*(?:片|粒|毫克|克|毫升|单位|滴|袋|丸)"
    r"|\b(?:one|two|three|four|five|six|half\s+an?|half)\s+"
    r"(?:tablets?|pills?|capsules?|drops?|puffs?|teaspoons?)\b",
    re.IGNORECASE,
)
_UNIT_PREFIXES = sorted(
    {u[:k] for u in [*_LATIN_UNITS, *_CJK_UNITS] for k in range(1, len(u) + 1)},
    key=len,
    reverse=True,
)
#: Digits at the very end that may still become a dose ("500", "500 m", "1 to").
_DOSE_PARTIAL = re.compile(
    rf"\d[\d.,]*+(?:\s*+(?:[-–~至到]|to?)\s*+(?:\d[\d.,]*+)?)?\s*+"
    rf"(?:{'|'.join(map(re.escape, _UNIT_PREFIXES))})?\Z",
    re.IGNORECASE,
)


def _find_trigger(s: str, start: int, final: bool) -> tuple[int, bool] | None:
    """The first place at or after ``start`` to hold back from, and whether a trigger is
    complete there (True) or the text merely ends in a possible beginning of one."""
    for p in range(start, len(s)):
        ch = s[p]
        if ch.isdigit():
            if p == 0 or s[p - 1] not in _NOT_BEFORE_NUM:
                dose = _DOSE_DIGITS.match(s, p)
                # A unit at the very end of what has arrived may still grow into another
                # word ("2 tablet" + "sthe …"): only complete once a character follows.
                if dose is not None and (final or dose.end() < len(s)):
                    return p, True
                if not final and (dose is not None or _DOSE_PARTIAL.match(s, p)):
                    return p, False
            continue
        if ch in _LETTERS and p > 0 and s[p - 1] in _LETTERS:
            continue
        first = _fold(ch)
        if first not in _FIRST:
            continue
        partial = False
        if first in _TRIE.children:
            rules, partial = _walk(_TRIE, s, p, final)
            if rules and not _excluded(rules, s, p):
                return p, True
        for trie, context in _ANCHORED:
            if first not in trie.children:
                continue
            rules, more = _walk(trie, s, p, final)
            if not (rules or more):
                continue
            m = context.search(s, max(0, p - _CONTEXT), p)
            if m is None:
                continue
            if rules and not _excluded(rules, s, m.start()):
                return p, True
            partial = partial or more
        if partial:
            return p, False
    return None


def _excluded(rules: frozenset[str], s: str, start: int) -> bool:
    return rules == {"definitive_diagnosis"} and _diag_excluded(s, start)


# -- The checks on a finished sentence --------------------------------------------------

_F = re.IGNORECASE
_PROF_EN = (
    r"(?:doctor|physician|nurse|gp|clinician|surgeon|pharmacist|medic|specialist|practitioner"
    r"|(?:medical|healthcare|health\s+care|health)\s+(?:professional|practitioner|worker|provider)"
    r"|human(?:\s+being)?|real\s+person|person)"
)
_ADJ_EN = (
    r"(?:(?:qualified|licensed|registered|trained|board[-\s]certified|practi[sc]ing|medical|real"
    r"|certified|experienced|human|family|general)\s+)?"
)
_PROF_ZH = r"(?:医生|医师|大夫|护士|药剂师|药师|医护人员|医务人员|真人|人类)"
_DOCTOR = [
    re.compile(
        rf"\b(?:i\s+am|i['’]m)\s+(?:also\s+|actually\s+|really\s+)?(?:a|an|your)\s+{_ADJ_EN}"
        rf"{_PROF_EN}\b",
        _F,
    ),
    re.compile(r"\b(?:i\s+am|i['’]m)\s+(?:a\s+)?human\b", _F),
    re.compile(
        r"\bas\s+(?:a|an|your)\s+(?:\w+\s+)?(?:doctor|physician|nurse|gp|clinician|surgeon"
        r"|pharmacist|(?:medical|healthcare|health)\s+professional)\s*,?\s*(?:i|i['’]\w+|my|me)\b",
        _F,
    ),
    re.compile(rf"\bi\s+work\s+as\s+(?:a|an)\s+{_ADJ_EN}{_PROF_EN}\b", _F),
    re.compile(
        r"(?<!如果)(?<!假如)(?<!要是)(?<!假设)我是(?:一名|一位|一个)?(?:你的|您的)?"
        rf"(?:专业的?|执业|主治|专科|全科|真正的)?{_PROF_ZH}(?!助手|助理)"
    ),
    re.compile(
        r"(?:作为|身为)(?:一名|一位|一个|你的|您的)?(?:专业的?|执业|主治)?"
        r"(?:医生|医师|大夫|护士|药剂师|药师)[，,、\s]*(?:我|本人)"
    ),
    re.compile(r"本(?:医生|大夫|医师)"),
    # Named or titled: "I am Dr. Chen", "This is Nurse Li speaking", "Dr. Morgan here".
    re.compile(
        r"\b(?:i\s+am|i['’]m|this\s+is|it['’]s|it\s+is)\s+(?:dr\b\.?|doctor|nurse)\s*[A-Z]",
        re.IGNORECASE,
    ),
    re.compile(r"\b[Dd]r\.?\s*[A-Z][\w-]*\s+(?:here|speaking)\s*(?:[,.!;:]|$)"),
    # "我是王医生", "我是值班护士", "我是一名心内科医生", "我是本院的医师" (not "我是说…").
    re.compile(
        r"(?<!如果)(?<!假如)(?<!要是)(?<!假设)(?<!不)我是(?!说|想|觉得|指|问|在|为|根据|AI|ai)"
        rf"[\u4e00-\u9fff]{{0,8}}?{_PROF_ZH}(?!助手|助理)"
    ),
    re.compile(rf"本人是?(?:一名|一位)?(?:专业的?|执业|主治|专科|全科)?{_PROF_ZH}"),
]

# (pattern, needs a condition named after it)
_DIAG_EN = [
    (re.compile(r"\b(?:you\s+are|you['’]re)\s+(?:\w+\s+)?suffering\s+from\s+", _F), False),
    (re.compile(r"\byou\s+suffer\s+from\s+", _F), False),
    (
        re.compile(
            r"\byou(?:\s+|['’]ve\s+)(?:definitely|certainly|clearly|obviously|undoubtedly)\s+"
            r"(?:have\s+(?:got\s+)?|got\s+|suffer\s+from\s+)",
            _F,
        ),
        False,
    ),
    (
        re.compile(
            r"\bi(?:\s+am|['’]m)\s+(?P<anchor>sure|certain)\s+(?:that\s+)?you\s+"
            r"(?:have|['’]ve\s+got)\s+",
            _F,
        ),
        False,
    ),
    (
        re.compile(r"\bi\s+(?:can\s+|would\s+|will\s+|['’]d\s+)?diagnose\s+(?:you|this|it)\b", _F),
        False,
    ),
    (re.compile(r"\bwhat\s+you\s+have\s+(?:got\s+)?is\s+", _F), True),
    (re.compile(r"\byou\s+have\s+(?:got\s+)?|\byou['’]ve\s+got\s+", _F), True),
    (
        re.compile(
            r"\b(?:this|that|it)(?:\s+is|['’]s)\s+"
            r"(?P<anchor>definitely|clearly|certainly|undoubtedly)\s+",
            _F,
        ),
        True,
    ),
    (re.compile(r"\b(?:your|my)\s+diagnosis\s+is\b\s*:?\s*", _F), True),
]
_DIAG_ZH = [
    (re.compile(r"[你您](?:已经|肯定|一定|显然|明显)?患(?:有|上了|了|的是)"), False),
    (re.compile(r"[你您](?:肯定|一定|绝对)?得(?:了|的是)(?!解)"), True),
    (re.compile(r"[你您](?:就|肯定|一定|绝对)是|[你您]这(?:就)?是"), True),
    (re.compile(r"[你您](?:肯定|一定|绝对)有"), True),
    (re.compile(r"这(?:肯定|绝对|一定|就|明显)是(?!为什么|因为|原因)"), True),
    (re.compile(r"确诊(?:为|是|患有|了)|诊断(?:为|是)|可以确定[你您](?:是|得了|患有|有)"), True),
    (re.compile(r"(?<!自)我(?:可以)?诊断(?:[你您](?:为|是|患有|得了)?|为|是)"), False),
]
_CONDITION = re.compile(
    r"\b(?:[a-z]+(?:itis|osis|emia|aemia|oma|opathy|algia|iasis)|diseases?|syndrome|disorder"
    r"|infection|cancer|tumou?r|diabetes|flu|influenza|covid(?:-19)?|pneumonia|hypertension"
    r"|hypotension|migraines?|asthma|strep|angina|heart\s+attack|stroke|sepsis|depression"
    r"|anxiety|allergy|eczema|psoriasis|gout|ulcer|hernia|fracture|concussion|shingles|measles"
    r"|chickenpox|mumps|tb|hiv|aids|cold|virus|condition|illness|uti|copd|adhd|dementia"
    r"|epilepsy|lupus|malaria|dengue)\b"
    r"|病|症|炎|癌|瘤|感冒|流感|糖尿|血压|哮喘|过敏|感染|综合征|障碍|新冠|结核|贫血|痛风|溃疡"
    r"|中风|卒中|心梗|梗死|梗塞|偏头痛|抑郁|焦虑|湿疹|骨折|疱疹|结石|囊肿|息肉|病毒|细菌|真菌|甲亢|甲减",
    _F,
)
_NOT_A_CONDITION = re.compile(
    r"(?:to|been|had|any|no|not|some|questions?|time|access|options?|the\s+right|a\s+right"
    r"|a\s+lot\s+of\s+questions|concerns?|symptoms?)\b",
    _F,
)
_EXCL_EN_NEAR = re.compile(
    r"\b(?:if|when|whenever|whether|unless|suppose|assuming|in\s+case)\b[^.;:!?,]{0,30}\Z", _F
)
_EXCL_EN_WORD = re.compile(
    r"\b(?:do|does|did|don['’]t|doesn['’]t|didn['’]t|think|believe|suspect|worried|worry"
    r"|afraid|fear|feel|felt|that|since|because|once|until|as|who|may|might|probably|maybe"
    r"|perhaps|possibly|likely|what)\s+\Z",
    _F,
)
_EXCL_ZH = re.compile(
    r"(?:如果|若|假如|要是|万一|是否|担心|怀疑|觉得|以为|认为|可能|或许|也许|一旦|曾|之前|以前"
    r"|已经|被|医生|医师|有没有|即使|假设|如|当)[^，,。；;！？]{0,6}\Z"
)
_CLAUSE_BREAK = re.compile(
    r"[,;:()\[\]—–，；：（）]|\s(?:and|but|so|which|because|since|while|although|though)\s"
)
_TRAILING = frozenset(" \t\r\n.!?。！？)]\"'”’*_`")
_STRIP_X = re.compile(
    r"\A(?:(?:(?:with|as\s+having|as|having)\b|得了|患了|患有|是)\s*|[:：]\s*)+", _F
)

_INSTR = [
    re.compile(
        r"\byou(?:['’](?:ll|d))?\s+(?:\w+\s+){0,2}?(?:take|taking|use|give|inject|apply|swallow"
        r"|start|try|increase|double|reduce|need)\b",
        _F,
    ),
    re.compile(r"\byour\s+(?:dose|dosage|daily\s+dose)\b", _F),
    re.compile(
        r"(?:\A|[,;:(]|\band\b|\bthen\b|[-*•]\s)\s*(?:please\s+|just\s+|simply\s+)?(?:take|give"
        r"|use|inject|apply|swallow|start\s+(?:with|on)|try|increase|double|reduce)\b",
        _F,
    ),
    re.compile(r"\bi\s*(?:would\s+|['’]d\s+)?(?:recommend|suggest|prescribe|advise)\b", _F),
    re.compile(r"\bmy\s+(?:recommendation|advice|prescription)\b", _F),
    re.compile(r"[你您][^，,。；;]{0,4}?(?:吃|服|注射|用)"),
    re.compile(
        r"(?:\A|[，,；;：:、（(])\s*(?:(?:请|建议)[^，,。；;]{0,6}?(?:服|吃|注射|用)"
        r"|(?:每次|每日|每天|一次|一日|一天|早晚各?|饭后|饭前|睡前)[^，,。；;]{0,6}?[\d一二两三四五六半]"
        r"|(?:服用|口服|吃|注射|含服))"
    ),
    re.compile(r"我(?:建议|推荐|给你开|给您开)"),
]
#: "Since you already take 500 mg ..." restates the patient's regimen.
_INSTR_RESTATED = re.compile(r"\b(?:already|currently|usually|normally)\b", _F)

_BLOCK = [
    re.compile(
        r"\b(?:lethal|fatal|deadly)\s+(?:doses?|dosages?|amounts?|quantit(?:y|ies)|overdoses?"
        r"|number\s+of)\b|\b(?:dose|amount|number)\b[^.?!]{0,40}?\b(?:is|are|would\s+be|will\s+be"
        r"|could\s+be)\s+(?:lethal|fatal|deadly)\b",
        _F,
    ),
    re.compile(
        r"\b(?:suicide\s+methods?|methods?\s+of\s+suicide|ways?\s+to\s+(?:kill\s+(?:yourself"
        r"|myself|oneself)|die|commit\s+suicide|end\s+(?:your|my|one['’]s)\s+life)|how\s+to"
        r"\s+(?:kill\s+(?:yourself|myself|oneself)|commit\s+suicide|end\s+(?:your|my)\s+life"
        r"|overdose)|painless\s+(?:ways?|methods?)\s+to\s+(?:die|kill|end))\b",
        _F,
    ),
    re.compile(
        r"\bhow\s+many\s+(?:\w+\s+){0,3}?(?:pills|tablets|capsules)\b[^.?!]{0,60}?"
        r"\b(?:kill|die|dying|fatal|lethal|overdose|death)\b",
        _F,
    ),
    re.compile(
        r"致死(?:量|剂量)|致命(?:剂)?量|自杀(?:的)?(?:方法|方式|手段)|(?:怎么|怎样|如何)(?:才能)?"
        r"(?:自杀|结束(?:自己的)?生命|轻生)|(?:吃多少|多少(?:片|粒|颗))[^，,。；;]{0,8}?"
        r"(?:会|能|可以|就)(?:死|致死|致命|没命)|无痛(?:的)?(?:死法|自杀)"
    ),
]

# -- Heuristics over the whole answer -------------------------------------------------

_HEALTH = re.compile(
    r"\b(?:symptoms?|pain(?:ful)?|aches?|fever|cough\w*|headaches?|nausea|vomit\w*|diarrh\w+"
    r"|rash|bleed\w*|dizz\w+|medications?|medicines?|drugs?|doses?|dosage|tablets?|pills?"
    r"|antibiotics?|treatments?|treat\w*|therap\w+|diagnos\w+|infections?|inflammation"
    r"|blood\s+(?:pressure|sugar)|glucose|cholesterol|pregnan\w+|side\s+effects?|allerg\w+"
    r"|paracetamol|ibuprofen|acetaminophen|aspirin|insulin|vaccin\w+|injur\w+|wounds?|swelling"
    r"|diseases?|illness|surgery|emergency|hospital|doctor|clinician|pharmacist)\b"
    r"|症状|疼|痛|发烧|发热|咳嗽|头晕|恶心|呕吐|腹泻|皮疹|出血|药|剂量|治疗|疗法|诊断|感染|炎症"
    r"|血压|血糖|胆固醇|怀孕|妊娠|副作用|过敏|疫苗|受伤|伤口|肿|骨折|疾病|病|手术|急诊|医院|就医|医生",
    _F,
)
_HAS_DISCLAIMER = re.compile(
    r"\bnot\s+(?:a\s+)?(?:doctor|medical\s+advice|diagnosis|substitute\s+for)"
    r"|\bdoes(?:\s+not|n['’]t)\s+replace\b|不是医生|不构成(?:诊断|医疗建议)|不能(?:替代|代替)|仅供参考",
    _F,
)
_REFUSAL = re.compile(
    r"\b(?:i\s+can(?:not|['’]t)|i\s+am\s+(?:not\s+able|unable)|i['’]m\s+(?:not\s+able|unable)"
    r"|i\s+won['’]t)\s+(?:to\s+)?(?:help|answer|provide|give|assist|recommend|advise|share|tell)"
    r"|(?:无法|不能|不便)(?:为你|为您)?(?:提供|回答|帮助|给出|协助|推荐|告诉)",
    _F,
)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_LIST_START = re.compile(r"[\s>*_#\-•\d.)]*\Z")
_ABBREVIATION = re.compile(r"\b(?:e\.g|i\.e|dr|mr|mrs|ms|vs|approx|fig)\Z", _F)
_SENTENCE_END = re.compile(r"[。！？\n]|[.!?][)\]\"'”’*_`]*(?=\s)")

#: Held characters after which a sentence is checked and released even without an end.
HOLD_LIMIT = 400
#: Released characters of the current sentence kept as context for its checks.
_CONTEXT = 400
#: Deltas are processed in slices of at most this many characters.
_PIECE = 128


def _diag_excluded(s: str, start: int) -> bool:
    """True when "you have …" is a question or a condition ("if you have", "如果你得了")."""
    before = s[max(0, start - 48) : start]
    if _CJK.match(s, start):
        return bool(_EXCL_ZH.search(before))
    return bool(_EXCL_EN_NEAR.search(before) or _EXCL_EN_WORD.search(before))


@dataclass(frozen=True, slots=True)
class _Diagnosis:
    start: int
    #: Where a rewrite may start: the distinctive word after a common opening ("This is
    #: definitely", "I'm sure"), else ``start``.
    anchor: int
    #: Where the diagnosed condition's clause ends; the rest of the sentence follows.
    end: int
    condition: str


def _body_end(s: str) -> int:
    i = len(s)
    while i > 0 and s[i - 1] in _TRAILING:
        i -= 1
    return i


def _find_diagnosis(s: str, lo: int, min_end: int) -> _Diagnosis | None:
    body = _body_end(s)
    best: _Diagnosis | None = None
    for pattern, needs_condition in (*_DIAG_EN, *_DIAG_ZH):
        for m in pattern.finditer(s, lo):
            if best is not None and m.start() >= best.start:
                break
            if m.end() <= min_end or _diag_excluded(s, m.start()):
                continue
            brk = _CLAUSE_BREAK.search(s, m.end(), body)
            end = brk.start() if brk else max(body, m.end())
            condition = _STRIP_X.sub("", s[m.end() : end].strip()).strip()
            if needs_condition and (
                not _CONDITION.search(condition) or _NOT_A_CONDITION.match(condition)
            ):
                continue
            anchor = m.start("anchor") if "anchor" in pattern.groupindex else m.start()
            best = _Diagnosis(m.start(), anchor, end, condition)
            break
    return best


def _dosing(s: str, h: int) -> bool:
    """A dose amount and an instruction aimed at this person, one of them still held."""
    dose = _DOSE_ANY.search(s)
    if dose is None:
        return False
    for pattern in _INSTR:
        for m in pattern.finditer(s):
            if max(m.end(), dose.end()) <= h:
                continue
            if m.group().lower().startswith("you") and (
                _INSTR_RESTATED.search(m.group()) or _diag_excluded(s, m.start())
            ):
                continue
            if m.group().startswith(("你", "您")) and _diag_excluded(s, m.start()):
                continue
            return True
    return False


def _hedge(condition: str, zh: bool, capital: bool, lead: str = "") -> str:
    """The hedged text; ``lead`` is the anchor word when the opening was already shown."""
    if lead and not zh:
        if lead.lower() in ("sure", "certain"):
            return "not able to diagnose you: " + _hedge(condition, zh, False)
        tail = "only a clinician who examines you can diagnose it"
        return f"possibly consistent with {condition}; {tail}" if condition else tail
    if zh:
        return f"这可能与{condition}有关，确诊需要医生面诊" if condition else "能否确诊需要医生面诊"
    text = (
        f"this could be consistent with {condition}; only a clinician who examines you can "
        "diagnose it"
        if condition
        else "only a clinician who examines you can make a diagnosis"
    )
    return text[0].upper() + text[1:] if capital else text


class OutputGuard:
    """Checks one answer as it streams; see the module docstring for the rules.

    ``feed`` each text delta and stream what it returns; call ``finish`` once at the end
    and stream ``result.text``. ``text`` is always exactly what was returned so far.
    """

    def __init__(
        self,
        locale: str,
        knowledge_used: bool,
        triage_level: Level,
        *,
        emergency_number: str | None = None,
    ) -> None:
        self.locale = locale
        self.knowledge_used = knowledge_used
        self.triage_level = triage_level
        self.emergency_number = emergency_number
        self._zh = locale.lower().startswith("zh")
        self._out: list[str] = []
        self._raw: list[str] = []
        self._counts: dict[tuple[ActionCode, str], int] = {}
        self._details: dict[tuple[ActionCode, str], str] = {}
        self._blocked = False
        self._finished = False
        # The current sentence: released text, then held-back text from ``_rel`` on.
        self._sent = ""
        self._rel = 0
        #: Where a complete trigger starts (holding until the sentence ends), if any.
        self._hold: int | None = None
        #: Whether ``_sent`` starts at a real sentence start (not after a cap or trim).
        self._fresh = True
        self._tail = ""

    @property
    def text(self) -> str:
        """The answer as the user saw it: everything ``feed`` and ``finish`` returned."""
        return "".join(self._out)

    @property
    def blocked(self) -> bool:
        """True once the answer was blocked: the rest of the model's stream can be dropped."""
        return self._blocked

    @property
    def actions(self) -> tuple[OutputAction, ...]:
        out: list[OutputAction] = []
        for key, count in self._counts.items():
            detail = self._details[key] + (f" ({count} times)" if count > 1 else "")
            out.append(OutputAction(code=key[0], rule=key[1], detail=detail))
        return tuple(out)

    def feed(self, delta: str) -> str:
        """Take the next piece of the model's answer; returns what to show now."""
        if self._finished:
            raise RuntimeError("OutputGuard.feed() after finish()")
        if self._blocked or not delta:
            return ""
        mark = len(self._out)
        self._raw.append(delta)
        # Big deltas go in slices, so no check ever sees more than about HOLD_LIMIT + _PIECE
        # held characters (and the work per character stays bounded).
        for i in range(0, len(delta), _PIECE):
            if self._blocked:
                break
            self._take(delta[i : i + _PIECE])
        return "".join(self._out[mark:])

    def finish(self, cited: bool) -> OutputResult:
        """End of the answer: release what is held (checked) and append notes.

        ``cited``: the answer has at least one citation that resolved to a source.
        """
        if self._finished:
            raise RuntimeError("OutputGuard.finish() called twice")
        self._finished = True
        mark = len(self._out)
        if not self._blocked and self._sent:
            self._complete(len(self._sent), fresh_next=True)
        if not self._blocked:
            self._append_notes(cited)
        return OutputResult(
            text="".join(self._out[mark:]), actions=self.actions, blocked=self._blocked
        )

    # -- streaming --------------------------------------------------------------------

    def _emit(self, text: str) -> None:
        if text:
            self._out.append(text)
            self._tail = (self._tail + text)[-2:]

    def _record(self, code: ActionCode, rule: str, detail: str) -> None:
        key = (code, rule)
        self._counts[key] = self._counts.get(key, 0) + 1
        self._details.setdefault(key, detail)

    def _sentence_end(self, start: int) -> int | None:
        for m in _SENTENCE_END.finditer(self._sent, start):
            before = self._sent[max(0, m.start() - 8) : m.start()]
            if m.group()[0] == "." and _ABBREVIATION.search(before):
                continue
            return m.end()
        return None

    def _take(self, piece: str) -> None:
        scan_from = max(0, len(self._sent) - 8)
        self._sent += piece
        while not self._blocked:
            end = self._sentence_end(scan_from)
            if end is None:
                break
            self._complete(end, fresh_next=True)
            scan_from = 0
        if not self._blocked:
            self._advance()

    def _advance(self) -> None:
        """Release what is safe of the unfinished sentence."""
        s = self._sent
        if self._hold is not None:
            if len(s) - self._rel > HOLD_LIMIT:
                self._complete(len(s), fresh_next=False)
            return
        found = _find_trigger(s, self._rel, final=False)
        stop = len(s) if found is None else found[0]
        self._emit(s[self._rel : stop])
        self._rel = stop
        if found is not None and found[1]:
            self._hold = stop
        elif found is not None and len(s) - stop > HOLD_LIMIT:
            self._complete(len(s), fresh_next=False)
        elif self._rel > 3 * _CONTEXT:
            cut = self._rel - _CONTEXT
            self._sent, self._rel, self._fresh = s[cut:], self._rel - cut, False

    def _complete(self, end: int, *, fresh_next: bool) -> None:
        """The sentence ``_sent[:end]`` is finished: check and release it."""
        s = self._sent[:end]
        hold = self._hold
        if hold is None:
            found = _find_trigger(s, self._rel, final=True)
            hold = found[0] if found is not None and found[1] else None
        if hold is None:
            self._emit(s[self._rel :])
        else:
            self._emit(s[self._rel : hold])
            self._check(s, hold)
        self._sent = self._sent[end:]
        self._rel, self._hold, self._fresh = 0, None, fresh_next

    def _check(self, s: str, h: int) -> None:
        """Check the sentence ``s`` whose text from ``h`` on is still held back."""
        lo = max(0, h - _CONTEXT)
        s, h = s[lo:], h - lo
        held = s[h:]
        if any(p.search(s) for p in _BLOCK):
            self._record("blocked", "blocked", _DETAILS["blocked"])
            self._blocked = True
            self._sent = ""
            sep = "" if not self._tail or self._tail.endswith("\n\n") else "\n\n"
            self._emit(sep + _crisis_text(self._zh, self.emergency_number))
            return
        doctor = any(m.end() > h for p in _DOCTOR for m in p.finditer(s))
        dosing = _dosing(s, h)
        diag = _find_diagnosis(s, 0, h)
        if not (doctor or dosing or diag):
            self._emit(held)
            return
        at_start = self._fresh and lo == 0 and _LIST_START.match(s[:h]) is not None
        if doctor or dosing or (diag is not None and diag.anchor < h):
            parts: list[str] = []
            if doctor:
                parts.append(_DOCTOR_TEXT[self._zh])
            if diag is not None:
                parts.append(_hedge(diag.condition, self._zh, True) + ("。" if self._zh else "."))
            if dosing:
                parts.append(_DOSING_TEXT[self._zh])
            newline = "\n" if held.endswith("\n") else ""
            self._emit(self._joiner(s[:h], at_start) + ("" if self._zh else " ").join(parts))
            self._emit(newline)
        else:
            out: list[str] = []
            pos, found = h, diag
            while found is not None:
                a = found.anchor
                capital = at_start and _LIST_START.match(s[:a]) is not None
                lead = s[a : a + 12].split()[0] if a > found.start else ""
                out += [s[pos:a], _hedge(found.condition, self._zh, capital, lead)]
                pos = found.end
                found = _find_diagnosis(s, pos, pos)
            self._emit("".join(out) + s[pos:])
        for rule, fired in (
            ("doctor_claim", doctor),
            ("definitive_diagnosis", diag is not None),
            ("individual_dosing", dosing),
        ):
            if fired:
                self._record("edited", rule, _DETAILS[rule])

    def _joiner(self, prefix: str, at_start: bool) -> str:
        """What goes between released words of a sentence and a replacement sentence."""
        if at_start or not prefix.strip():
            return ""
        last = prefix.rstrip()[-1]
        if self._zh:
            return "" if last in "，,：:；;" else "——"
        space = "" if prefix[-1].isspace() else " "
        return space if last in ",:;" else space + "— "

    # -- notes at the end -------------------------------------------------------------

    def _append_notes(self, cited: bool) -> None:
        raw = "".join(self._raw)
        if not raw.strip():
            return
        health = any(p.search(raw) for p in (_HEALTH, _CONDITION, _DOSE_ANY))
        if (
            not cited
            and health
            and len(raw.strip()) >= (25 if _CJK.search(raw) else 60)
            and not _REFUSAL.search(raw[:300])
        ):
            why = (
                "knowledge excerpts were provided but none was cited"
                if self.knowledge_used
                else "no knowledge-base excerpts were used"
            )
            self._append(_UNCITED[self._zh])
            self._record("appended", "uncited_fact", f"appended the unsourced-answer note ({why})")
        urgent = self.triage_level.at_least(Level.URGENT)
        if (health or urgent) and not _HAS_DISCLAIMER.search(raw):
            why = "urgent triage level" if urgent else "the answer gives health advice"
            self._append(_DISCLAIMER[self._zh])
            self._record("appended", "disclaimer", f"appended the AI-assistant disclaimer ({why})")

    def _append(self, note: str) -> None:
        tail = self._tail
        sep = "" if not tail or tail == "\n\n" else ("\n" if tail.endswith("\n") else "\n\n")
        self._emit(sep + note)


__all__ = ["HOLD_LIMIT", "RULES", "ActionCode", "OutputAction", "OutputGuard", "OutputResult"]
