"""Text normalisation and the context of a match: negated, hypothetical, or in the past.

Everything here is linear in the length of the message: a few regex passes to find
sentence breaks, negation triggers and markers, then a bisect per candidate match.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_left, bisect_right
from dataclasses import dataclass
from typing import Literal

from healtrace.safety._lexicon import LanguageConfig

_ZERO_WIDTH = dict.fromkeys(
    map(
        ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e\u034f"
    ),
    None,
)
_QUOTES = str.maketrans({"’": "'", "‘": "'", "`": "'", "´": "'", "ʼ": "'", "“": '"', "”": '"'})

# Traditional characters common in health messages → simplified, so one Chinese lexicon
# serves Taiwan and Hong Kong too. Only characters with a single simplified form.
_TRADITIONAL = (
    "頭头發发燒烧悶闷氣气難难說说話话語语臉脸側侧邊边視视覺觉線线過过嚨咙腫肿蕁荨癢痒紅红嘔呕"
    "暈晕識识痙痉攣挛癇痫驚惊動动懷怀婦妇產产陰阴劇剧嬰婴兒儿寶宝歲岁週周個个熱热體体溫温傷伤"
    "燙烫車车禍祸擊击墜坠樓楼農农藥药殺杀蟲虫劑剂顆颗結结著着沒没義义遺遗書书別别離离開开鉀钾"
    "鈉钠鈣钙細细際际標标準准檢检驗验報报臨临醫医護护轉转請请幫帮診诊斷断應应該该麼么嗎吗現现"
    "剛刚嚴严經经從从來来這这樣样還还會会們们讓让關关門门時时間间點点鐘钟後后脈脉臟脏絞绞壓压"
    "緊紧張张擔担憂忧鬱郁輕轻導导喚唤聽听癱瘫瘓痪膚肤顫颤戰战慄栗狀状態态嗆呛嚥咽殘残橋桥繩绳"
    "槍枪爐炉洩泄瀉泻濕湿陣阵針针術术號号掛挂錠锭膠胶補补顯显異异測测試试數数據据極极為为無无"
    "於于與与並并實实將将對对問问題题錯错誤误處处療疗癒愈復复雙双隻只條条腳脚頸颈腦脑風风齒齿"
    "淚泪瞼睑鏡镜閃闪爍烁塗涂亂乱認认憶忆記记雖虽卻却雜杂級级餵喂褲裤軟软綿绵膿脓瘡疮擴扩腎肾"
    "膽胆腸肠闌阑糞粪盜盗減减塊块節节變变長长幾几歷历專专業业員员師师靈灵層层環环靜静續续陽阳"
    "虛虚盡尽歡欢擾扰慮虑鬧闹廁厕團团養养餓饿飯饭飲饮誰谁裡里裏里麵面這这齡龄癥症徵征鬆松搶抢"
    "勢势況况懼惧緩缓換换藥药嚇吓窩窝衝冲燈灯錢钱買买賣卖貴贵護护滿满剖剖腹腹縫缝擠挤臍脐帶带"
)
_TRAD_MAP = {
    ord(_TRADITIONAL[i]): _TRADITIONAL[i + 1]
    for i in range(0, len(_TRADITIONAL) - 1, 2)
    if _TRADITIONAL[i] != _TRADITIONAL[i + 1]
}

_CJK = r"\u3400-\u4dbf\u4e00-\u9fff"
_CJK_LATIN = re.compile(rf"(?<=[{_CJK}])(?=[a-z0-9])|(?<=[a-z0-9])(?=[{_CJK}])")
_SPACES = re.compile(r"[^\S\n]+")
# Obfuscated text: "c h e s t", "c.h.e.s.t" (four or more single letters in a row),
# "胸 口 好 痛" / "自*杀" (single Chinese characters split by spaces or symbols), and
# leetspeak ("ch3st", "cru$hed": a run of look-alike symbols between two letters).
_SPACED_LATIN = re.compile(r"(?<![\w])(?:[a-z][ .*_~-]){3,}[a-z](?![\w])")
_SPACED_CJK = re.compile(rf"(?<![{_CJK}])(?:[{_CJK}] ){{2,}}[{_CJK}](?![{_CJK}])")
_SPLIT_CJK = re.compile(rf"(?<=[{_CJK}])[*_~|/·•-]+(?=[{_CJK}])")
_LEET = str.maketrans(
    {"3": "e", "0": "o", "1": "i", "4": "a", "5": "s", "7": "t", "$": "s", "@": "a"}
)
_LEET_RUN = re.compile(r"(?<=[a-z])[013457$@]{1,2}(?=[a-z])")
_LEET_TAIL = re.compile(r"(?<=[a-z])[30$]$")
_LEET_TOKEN = re.compile(r"[\w$@]*[a-z][\w$@]*")
#: Tokens with digits between letters that are real names (HbA1c, H1N1, B12, 3rd, 10mg …).
_LEET_KEEP = re.compile(r"a1c|h\dn\d|^\d|[a-z]\d+$")
_NEWLINES = re.compile(r" ?\n[\s]*")
_APOSTROPHE = re.compile(r"'")
#: Where a sentence ends. A full stop between digits (``38.5``) is not one.
_SENTENCE_END = re.compile(r"[!?;。！？；\n]|\.(?!\d)|(?<!\d)\.|:(?!\d)|(?<!\d):")
_COMMA = re.compile(r"[,，]")
_WORD = re.compile(r"[\w-]+")
_HAS_CJK = re.compile(rf"[{_CJK}]")
#: A word, or one Chinese character: the unit a history marker's reach is counted in.
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")
#: How many words (Chinese characters) a history marker reaches on each side.
_HISTORY_WORDS = 8


def normalise(text: str) -> str:
    """NFKC, no zero-width characters, simplified Chinese, lowercase, no apostrophes,
    single spaces (newlines kept), a space between Chinese and Latin letters or digits."""
    t = unicodedata.normalize("NFKC", text)
    t = t.translate(_ZERO_WIDTH).translate(_QUOTES).translate(_TRAD_MAP).lower()
    t = _APOSTROPHE.sub("", t)
    t = _deobfuscate(t)
    t = _CJK_LATIN.sub(" ", t)
    t = _SPACES.sub(" ", t)
    t = _NEWLINES.sub("\n", t)
    return t.strip()


def _unleet(m: re.Match[str]) -> str:
    word = m.group(0)
    if not _LEET_RUN.search(word) or _LEET_KEEP.search(_LEET_TAIL.sub("", word)):
        return word
    word = _LEET_RUN.sub(lambda r: r.group(0).translate(_LEET), word)
    return _LEET_TAIL.sub(lambda r: r.group(0).translate(_LEET), word)


def _despace(m: re.Match[str]) -> str:
    """ "c h e s t" → "chest"; "k.i.l.l m.y.s.e.l.f" → "kill myself"."""
    run = m.group(0)
    if " " in run and re.search(r"[.*_~-]", run):
        return re.sub(r"[.*_~-]", "", run)
    return re.sub(r"[ .*_~-]", "", run)


def _deobfuscate(t: str) -> str:
    """Undo the usual ways of hiding words from a filter (cheap when there are none)."""
    if _SPACED_LATIN.search(t):
        t = _SPACED_LATIN.sub(_despace, t)
    if _SPACED_CJK.search(t):
        t = _SPACED_CJK.sub(lambda m: m.group(0).replace(" ", ""), t)
    t = _SPLIT_CJK.sub("", t)
    if _LEET_RUN.search(t):
        t = _LEET_TOKEN.sub(_unleet, t)
    return t


Why = Literal["negated", "hypothetical", "history"]


@dataclass(frozen=True, slots=True)
class _Trigger:
    start: int
    end: int
    #: ``en``, ``en_list`` (scope crosses list commas), ``zh`` (window), ``zh1`` (single character).
    kind: str


class Analysis:
    """A normalised message and where negation, hypotheticals and past events apply."""

    def __init__(self, text: str, lang: LanguageConfig) -> None:
        self.lang = lang
        if lang.spelling_pattern is not None:
            spelling = lang.spelling
            text = lang.spelling_pattern.sub(lambda m: spelling[m.group(0)], text)
        self.text = text
        self.masked = self._mask_idioms(text)
        t = self.masked
        terminators = [m.start() for m in lang.en_terminators.finditer(t)]
        terminators += [m.start() for m in lang.zh_terminators.finditer(t)]
        self._sentence_ends = [m.start() for m in _SENTENCE_END.finditer(t)]
        self._hard = sorted({*self._sentence_ends, *terminators})
        contrast = [m.start() for m in lang.conditional_terminators.finditer(t)]
        self._condition_ends = sorted({*self._sentence_ends, *contrast})
        self._commas = [m.start() for m in _COMMA.finditer(t)]
        self._triggers = self._find_triggers(t)
        self._trigger_ends = [tr.end for tr in self._triggers]
        self._ranges: list[tuple[int, int, Why]] = []
        self._find_hypothetical(t)
        self._find_history(t)

    # -- setup ---------------------------------------------------------------------------

    def _mask_idioms(self, text: str) -> str:
        """Blank figures of speech ("dying to", "笑死") so no pattern can match them."""
        if not self.lang.idioms.search(text):
            return text
        return self.lang.idioms.sub(lambda m: " " * len(m.group(0)), text)

    def _find_triggers(self, t: str) -> list[_Trigger]:
        lang = self.lang
        pseudo = bytearray(len(t))
        for rx in (lang.en_pseudo_negation, lang.zh_pseudo_negation):
            for m in rx.finditer(t):
                pseudo[m.start() : m.end()] = b"\x01" * (m.end() - m.start())

        def real(m: re.Match[str]) -> bool:
            return not any(pseudo[m.start() : m.end()])

        found: list[_Trigger] = []
        for m in lang.en_negation.finditer(t):
            if real(m):
                kind = "en_list" if lang.en_list_negation.fullmatch(m.group(0)) else "en"
                found.append(_Trigger(m.start(), m.end(), kind))
        for m in lang.en_list_negation.finditer(t):
            if real(m):
                found.append(_Trigger(m.start(), m.end(), "en_list"))
        for m in lang.zh_negation.finditer(t):
            if real(m):
                found.append(_Trigger(m.start(), m.end(), "zh"))
        for m in lang.zh_single_negation.finditer(t):
            if real(m):
                found.append(_Trigger(m.start(), m.end(), "zh1"))
        found.sort(key=lambda tr: (tr.end, tr.start))
        return found

    def absorb(self, spans: list[tuple[int, int]]) -> None:
        """Drop negation words that are part of a finding's own words ("hasn't peed",
        "止不住"): they describe a positive finding and negate nothing else."""
        if not spans or not self._triggers:
            return
        spans = sorted(spans)
        starts = [s for s, _ in spans]
        kept: list[_Trigger] = []
        for tr in self._triggers:
            i = bisect_right(starts, tr.start)
            inside = any(spans[j][1] >= tr.end for j in range(max(0, i - 8), i))
            if not inside:
                kept.append(tr)
        self._triggers = kept
        self._trigger_ends = [tr.end for tr in kept]

    def _next_break(self, pos: int, *, chinese: bool) -> int:
        """End of the conditional clause that starts at ``pos``."""
        end = len(self.masked)
        i = bisect_left(self._condition_ends, pos)
        if i < len(self._condition_ends):
            end = self._condition_ends[i]
        for c in self._commas[bisect_left(self._commas, pos) :]:
            if c >= end:
                break
            if chinese or self.lang.en_subject_start.match(self.masked, c + 1):
                return c
        return end

    def _sentence(self, pos: int) -> tuple[int, int]:
        i = bisect_right(self._sentence_ends, pos)
        start = self._sentence_ends[i - 1] + 1 if i else 0
        end = self._sentence_ends[i] if i < len(self._sentence_ends) else len(self.masked)
        return start, end

    def _clause(self, pos: int) -> tuple[int, int]:
        stops = sorted({*self._hard, *self._commas})
        i = bisect_right(stops, pos)
        start = stops[i - 1] + 1 if i else 0
        j = bisect_right(stops, pos)
        end = stops[j] if j < len(stops) else len(self.masked)
        return start, end

    def _find_hypothetical(self, t: str) -> None:
        lang = self.lang
        pseudo = [(m.start(), m.end()) for m in lang.pseudo_conditional.finditer(t)]
        for m in lang.conditional.finditer(t):
            if any(s <= m.start() < e for s, e in pseudo):
                continue
            chinese = bool(_HAS_CJK.search(m.group(0)))
            end = self._next_break(m.end(), chinese=chinese)
            if not lang.anchors.search(t, m.start(), end):
                self._ranges.append((m.start(), end, "hypothetical"))
        for m in lang.info_question.finditer(t):
            start, end = self._sentence(m.start())
            if not lang.anchors.search(t, start, end) and not lang.personal.search(t, start, end):
                self._ranges.append((start, end, "hypothetical"))

    def _find_history(self, t: str) -> None:
        lang = self.lang
        words = [m.span() for m in _TOKEN.finditer(t)]
        starts = [w[0] for w in words]
        for rx, backward in ((lang.history, True), (lang.history_forward, False)):
            for m in rx.finditer(t):
                clause_start, clause_end = self._clause(m.start())
                # Forward: a few words (Chinese: characters), up to a present-tense cue.
                i = bisect_left(starts, m.end())
                end = (
                    words[min(i + _HISTORY_WORDS, len(words)) - 1][1] if i < len(words) else m.end()
                )
                end = min(max(end, m.end()), clause_end)
                cue = lang.history_cues.search(t, m.end(), end)
                if cue:
                    end = cue.start()
                start = m.start()
                if backward:
                    j = bisect_left(starts, m.start())
                    start = max(clause_start, words[max(j - _HISTORY_WORDS, 0)][0] if words else 0)
                    cues = list(lang.history_cues.finditer(t, start, m.start()))
                    if cues:
                        start = cues[-1].end()
                self._ranges.append((start, max(end, m.end()), "history"))

    # -- queries -------------------------------------------------------------------------

    def _hard_between(self, a: int, b: int) -> bool:
        i = bisect_left(self._hard, a)
        return i < len(self._hard) and self._hard[i] < b

    def _comma_blocks(self, trigger: _Trigger, start: int) -> bool:
        """Does a comma between an English trigger and ``start`` end the negation's scope?"""
        i = bisect_left(self._commas, trigger.end)
        commas = []
        while i < len(self._commas) and self._commas[i] < start:
            commas.append(self._commas[i])
            i += 1
        if not commas:
            return False
        t = self.masked
        for c in commas:
            if self.lang.en_subject_start.match(t, c + 1):
                return True
        if trigger.kind == "en_list":
            return False
        # "no fever, cough or chest pain": a list that ends with "or" stays negated.
        i = bisect_right(self._hard, commas[-1])
        end = self._hard[i] if i < len(self._hard) else len(t)
        return not self.lang.en_list_joiner.search(t, commas[0], end)

    def negated(self, start: int, end: int) -> bool:
        """Is the match at ``[start, end)`` negated ("no chest pain", "胸痛：无")?"""
        t = self.masked
        lang = self.lang
        if lang.en_post_negation.match(t, end) or lang.zh_post_negation.match(t, end):
            return True
        i = bisect_right(self._trigger_ends, start)
        for j in range(i - 1, -1, -1):
            tr = self._triggers[j]
            if start - tr.end > 200:
                break
            if tr.start >= start:
                continue
            if self._hard_between(tr.end, start):
                break
            gap = t[tr.end : start]
            if tr.kind == "zh1":
                if lang.zh_fillers.fullmatch(gap.replace(" ", "")):
                    return True
                continue
            if tr.kind == "zh":
                if _COMMA.search(gap):
                    continue
                if len(gap.replace(" ", "")) <= lang.zh_window_chars:
                    return True
                continue
            words = len(_WORD.findall(gap))
            window = lang.en_list_window_words if tr.kind == "en_list" else lang.en_window_words
            if words <= window and not self._comma_blocks(tr, start):
                return True
        return False

    def context_of(self, start: int, end: int) -> Why | None:
        """Why a match at ``[start, end)`` does not count now, or ``None`` if it does."""
        for s, e, why in self._ranges:
            if s <= start < e:
                return why
        return None
