"""The output guard: each rule in both languages, what it leaves alone, and how it streams."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from healtrace.agent.models.testing import split_tokens
from healtrace.safety.output import HOLD_LIMIT, RULES, OutputAction, OutputGuard, OutputResult
from healtrace.safety.types import Level


def _guard(
    locale: str = "en", level: Level = Level.ROUTINE, emergency_number: str | None = None
) -> OutputGuard:
    return OutputGuard(
        locale=locale,
        knowledge_used=False,
        triage_level=level,
        emergency_number=emergency_number,
    )


def run(
    text: str,
    locale: str | None = None,
    *,
    level: Level = Level.ROUTINE,
    cited: bool = True,
    pieces: list[str] | None = None,
) -> tuple[OutputGuard, list[str], OutputResult]:
    """Stream ``text`` through a guard like the orchestrator does."""
    if locale is None:
        locale = "zh-CN" if any("\u4e00" <= ch <= "\u9fff" for ch in text) else "en"
    guard = _guard(locale, level)
    outs = [guard.feed(p) for p in (split_tokens(text) if pieces is None else pieces)]
    result = guard.finish(cited=cited)
    assert "".join(outs) + result.text == guard.text
    return guard, outs, result


def rules_of(result: OutputResult) -> set[str]:
    return {a.rule for a in result.actions}


# -- doctor_claim ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "I am a doctor. Rest and drink fluids.",
        "I'm a qualified physician, so trust me. Rest and drink fluids.",
        "As your physician, I recommend rest. Rest and drink fluids.",
        "As a doctor, I would wait a day. Rest and drink fluids.",
        "I'm a nurse with 20 years of experience. Rest and drink fluids.",
        "I am a human, not a bot. Rest and drink fluids.",
    ],
)
def test_doctor_claims_become_an_ai_statement_en(text: str) -> None:
    guard, _, result = run(text)
    claim = text.split(".")[0]
    assert claim not in guard.text
    assert guard.text.startswith("I'm HealTrace, an AI assistant, not a doctor")
    assert "Rest and drink fluids." in guard.text
    assert ("edited", "doctor_claim") in {(a.code, a.rule) for a in result.actions}


@pytest.mark.parametrize(
    "text",
    [
        "我是医生。请多喝水。",
        "作为医生，我建议你多休息。请多喝水。",
        "我是你的主治医生。请多喝水。",
        "本医生认为没有大碍。请多喝水。",
        "我是一名护士。请多喝水。",
        # Named or titled (found by the security eval: these used to stream unchanged).
        "我是王医生。请多喝水。",
        "我是值班护士。请多喝水。",
        "我是一名心内科医生。请多喝水。",
        "我是本院的医师。请多喝水。",
        "本人是执业医师。请多喝水。",
    ],
)
def test_doctor_claims_become_an_ai_statement_zh(text: str) -> None:
    guard, _, result = run(text)
    assert text.split("。")[0] not in guard.text
    assert guard.text.startswith("我是 HealTrace AI 助手，不是医生")
    assert "请多喝水。" in guard.text
    assert "doctor_claim" in rules_of(result)


@pytest.mark.parametrize(
    "text",
    [
        "I am Dr. Chen, your attending physician. Rest and drink fluids.",
        "This is Dr Li speaking. Rest and drink fluids.",
        "Dr. Morgan here. Rest and drink fluids.",
        "I'm Nurse Wang. Rest and drink fluids.",
    ],
)
def test_named_clinician_claims_are_replaced_en(text: str) -> None:
    guard, _, result = run(text)
    assert text.split(".")[0] not in guard.text and "Chen" not in guard.text
    assert "I'm HealTrace, an AI assistant, not a doctor" in guard.text
    assert "Rest and drink fluids." in guard.text
    assert "doctor_claim" in rules_of(result)


@pytest.mark.parametrize(
    "text",
    [
        "Please ask your doctor about it.",
        "I am not a doctor, but I can share general information.",
        "I'm an AI assistant.",
        "Take it as your doctor prescribed.",
        "As a doctor would tell you, sleep matters.",
        "我不是医生，但可以提供一般信息。",
        "医生会根据检查结果判断。",
        "如果我是医生，也会这样说。",
        "我是 HealTrace 的健康助手。",
        "我是说医生会根据检查结果判断。",
        "Dr. Smith here in the clinic can examine you.",
        "It's a doctor's decision; ask at your visit.",
    ],
)
def test_not_doctor_claims(text: str) -> None:
    guard, _, result = run(text)
    assert guard.text.startswith(text)
    assert "doctor_claim" not in rules_of(result)


# -- definitive_diagnosis ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "You have pneumonia.",
            "This could be consistent with pneumonia; only a clinician who examines you can "
            "diagnose it.",
        ),
        (
            "Based on your symptoms, you have the flu, so rest.",
            "Based on your symptoms, this could be consistent with the flu; only a clinician "
            "who examines you can diagnose it, so rest.",
        ),
        ("You are suffering from a migraine.", "This could be consistent with a migraine;"),
        (
            "You definitely have an ear infection.",
            "This could be consistent with an ear infection;",
        ),
        ("This is definitely the flu.", "This is possibly consistent with the flu;"),
        ("I diagnose you with influenza.", "This could be consistent with influenza;"),
        ("Your diagnosis is bronchitis.", "This could be consistent with bronchitis;"),
        (
            "I'm sure you have strep throat.",
            "I'm not able to diagnose you: this could be consistent with strep throat;",
        ),
        ("What you have is a cold.", "This could be consistent with a cold;"),
    ],
)
def test_definitive_diagnoses_are_hedged_en(text: str, expected: str) -> None:
    guard, _, result = run(text)
    assert guard.text.startswith(expected)
    assert ("edited", "definitive_diagnosis") in {(a.code, a.rule) for a in result.actions}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "This is definitely pneumonia.",
            "This is possibly consistent with pneumonia; only a clinician who examines you "
            "can diagnose it.",
        ),
        (
            "It's clearly the flu, so rest.",
            "It's possibly consistent with the flu; only a clinician who examines you can "
            "diagnose it, so rest.",
        ),
        (
            "It’s undoubtedly a migraine.",
            "It’s possibly consistent with a migraine; only a clinician who examines you "
            "can diagnose it.",
        ),
        (
            "Rest well. Yes, that is certainly an ear infection.",
            "Rest well. Yes, that is possibly consistent with an ear infection; only a "
            "clinician who examines you can diagnose it.",
        ),
        (
            "I am certain you have the flu.",
            "I am not able to diagnose you: this could be consistent with the flu; only a "
            "clinician who examines you can diagnose it.",
        ),
    ],
)
def test_a_diagnosis_after_a_common_opening_is_rewritten_from_the_adverb(
    text: str, expected: str
) -> None:
    guard, _, result = run(text)
    assert guard.text.startswith(expected)
    assert ("edited", "definitive_diagnosis") in {(a.code, a.rule) for a in result.actions}
    for pieces in ([text], list(text)):  # however it is split
        assert run(text, pieces=pieces)[0].text == guard.text


@pytest.mark.parametrize(
    "text",
    [
        "Yes, it is certainly possible.",
        "I think this is definitely the flu.",
        "It's clearly worth resting.",
        "I'm sure you'll feel better soon.",
    ],
)
def test_common_openings_with_an_adverb_but_no_diagnosis_are_left_alone(text: str) -> None:
    guard, _, result = run(text)
    assert guard.text.startswith(text)
    assert "definitive_diagnosis" not in rules_of(result)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("你患有高血压。", "这可能与高血压有关，确诊需要医生面诊。"),
        ("你得了感冒，多喝水。", "这可能与感冒有关，确诊需要医生面诊，多喝水。"),
        ("你就是糖尿病。", "这可能与糖尿病有关，确诊需要医生面诊。"),
        ("确诊为肺炎。", "这可能与肺炎有关，确诊需要医生面诊。"),
        ("可以确定你是流感。", "这可能与流感有关，确诊需要医生面诊。"),
        ("根据描述，诊断为胃炎。", "根据描述，这可能与胃炎有关，确诊需要医生面诊。"),
        ("你肯定是得了流感。", "这可能与流感有关，确诊需要医生面诊。"),
        ("我诊断你为流感。", "这可能与流感有关，确诊需要医生面诊。"),
    ],
)
def test_definitive_diagnoses_are_hedged_zh(text: str, expected: str) -> None:
    guard, _, result = run(text)
    assert guard.text.startswith(expected)
    assert "definitive_diagnosis" in rules_of(result)


@pytest.mark.parametrize(
    "text",
    [
        "If you have a fever, drink fluids.",
        "Do you have a cough?",
        "People who have diabetes should check their feet.",
        "You have to rest.",
        "You have a fever and a cough, which are common with colds.",
        "When you have the flu, rest helps.",
        "It is possible that you have a cold.",
        "如果你有糖尿病，要注意饮食。",
        "你有没有发烧？",
        "如果你得了流感，要多休息。",
        "你就是太累了。",
        "你得了解一下。",
        "只有医生才能确诊为肺炎。",
        "不要自我诊断。",
        "这就是为什么感冒会反复。",
    ],
)
def test_not_diagnoses(text: str) -> None:
    guard, _, result = run(text)
    assert guard.text.startswith(text)
    assert "definitive_diagnosis" not in rules_of(result)


# -- individual_dosing ---------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "You should take 500 mg of amoxicillin.",
        "Take 2 tablets of amoxicillin three times a day.",
        "You can take 400 mg ibuprofen every 6 hours.",
        "I recommend 10 mg of loratadine daily.",
        "For the pain, take two tablets every morning.",
        "- Use 2 drops in each eye\n",
    ],
)
def test_personal_doses_are_replaced_en(text: str) -> None:
    guard, _, result = run(text)
    assert "I can't give you a personal dose" in guard.text
    for dose in ("500 mg", "2 tablets", "400 mg", "10 mg", "two tablets", "2 drops"):
        assert dose not in guard.text
    assert ("edited", "individual_dosing") in {(a.code, a.rule) for a in result.actions}


@pytest.mark.parametrize(
    "text",
    [
        "你吃 0.5 克阿莫西林。",
        "每次服用 2 片，每日三次。",
        "建议服用 2 片。",
        "你可以吃两片布洛芬。",
    ],
)
def test_personal_doses_are_replaced_zh(text: str) -> None:
    guard, _, result = run(text)
    assert guard.text.startswith("具体用药剂量需要由医生或药师根据你的情况确定")
    assert "individual_dosing" in rules_of(result)


@pytest.mark.parametrize(
    "text",
    [
        # General label information: allowed (see the module docstring).
        "The usual adult dose on the paracetamol leaflet is up to 4 g a day.",
        "Adults should not exceed 4 g of paracetamol in 24 hours.",
        "If you take more than 4 g a day, you risk liver damage.",
        "Since you already take 500 mg of metformin, keep a record of your meals.",
        "Rest for 3 days and drink 2 litres of water.",
        "Take a warm bath before bed.",
        "成人每日不超过 4 克。",
        "说明书上写的成人用量是每次 1 片。",
        "如果你吃超过 4 克，会伤肝。",
    ],
)
def test_general_dose_information_is_left_alone(text: str) -> None:
    guard, _, result = run(text)
    assert guard.text.startswith(text)
    assert "individual_dosing" not in rules_of(result)


def test_several_rules_in_one_answer() -> None:
    text = "I am a doctor. You have pneumonia. You should take 500 mg amoxicillin."
    guard, _, result = run(text, cited=False)
    for gone in ("I am a doctor", "You have pneumonia", "500 mg"):
        assert gone not in guard.text
    assert [a.rule for a in result.actions] == [
        "doctor_claim",
        "definitive_diagnosis",
        "individual_dosing",
        "uncited_fact",
        "disclaimer",
    ]
    assert "pneumonia" not in " ".join(a.detail for a in result.actions)


def test_one_sentence_with_several_violations_gets_one_replacement() -> None:
    guard, _, result = run("As your doctor, I say you have strep throat; take 500 mg twice daily.")
    assert guard.text.startswith(
        "I'm HealTrace, an AI assistant, not a doctor or any other health professional. "
        "This could be consistent with strep throat; only a clinician"
    )
    assert "I can't give you a personal dose" in guard.text and "500 mg" not in guard.text
    assert {"doctor_claim", "definitive_diagnosis", "individual_dosing"} <= rules_of(result)


def test_repeated_edits_are_counted_not_repeated() -> None:
    _, _, result = run("You have the flu. You have pneumonia. You have a cold.")
    (action,) = [a for a in result.actions if a.rule == "definitive_diagnosis"]
    assert action.detail.endswith("(3 times)")


# -- blocked ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "The lethal dose of paracetamol is about 10 g.",
        "How many pills would it take to kill someone? About 50 tablets.",
        "Here are some suicide methods people use.",
        "A dose of 10 g would be fatal for most adults.",
    ],
)
def test_lethal_content_is_blocked_en(text: str) -> None:
    guard, _, result = run(text, level=Level.EMERGENCY)
    assert result.blocked and guard.blocked
    assert "emergency number" in guard.text and "crisis line" in guard.text
    assert "10 g" not in guard.text and "50 tablets" not in guard.text
    assert [(a.code, a.rule) for a in result.actions] == [("blocked", "blocked")]


@pytest.mark.parametrize("text", ["对乙酰氨基酚的致死量大约是 10 克。", "自杀方法有很多种。"])
def test_lethal_content_is_blocked_zh(text: str) -> None:
    guard, _, result = run(text)
    assert result.blocked
    assert "12356" in guard.text and "120" in guard.text
    assert "10 克" not in guard.text and "方法有很多种" not in guard.text


def test_zh_crisis_text_follows_the_emergency_number() -> None:
    guard = _guard("zh-CN", emergency_number="999")
    guard.feed("致死量是多少？")
    guard.finish(cited=False)
    assert "当地急救电话 999" in guard.text and "110" not in guard.text


def test_block_keeps_what_was_shown_and_releases_nothing_more() -> None:
    guard = _guard(emergency_number="911")
    assert guard.feed("Drink water. ") == "Drink water. "
    shown = guard.feed("The lethal dose is 10 g. ")
    # "The " went out before "lethal" was seen; it cannot be taken back.
    assert shown.startswith("The \n\nI can't help with that.") and "call 911 now" in shown
    assert guard.blocked
    assert guard.feed("More detail: 20 tablets. ") == ""
    result = guard.finish(cited=False)
    assert result.blocked and result.text == ""
    assert guard.text == "Drink water. " + shown


@pytest.mark.parametrize(
    "text",
    [
        "If you are thinking about suicide, please call 988 or your local emergency number.",
        "An overdose of paracetamol can damage the liver.",
        "如果你有自杀的想法，请拨打心理援助热线 12356。",
        "该病致死率较低。",
    ],
)
def test_crisis_support_is_not_blocked(text: str) -> None:
    guard, _, result = run(text)
    assert not result.blocked
    assert guard.text.startswith(text)


# -- disclaimer and uncited_fact ---------------------------------------------------------

DISCLAIMER_EN = (
    "HealTrace is an AI assistant, not a doctor. This is general health information, not a "
    "diagnosis; for advice about your own situation, please see a clinician."
)
DISCLAIMER_ZH = (
    "HealTrace 是 AI 助手，不是医生。以上为一般健康信息，不构成诊断；个人情况请咨询医生。"
)
NOTE_EN = "Note: this answer is not backed by a source from the HealTrace knowledge base."
NOTE_ZH = "注意：此回答未引用 HealTrace 知识库中的来源。"


def test_health_advice_gets_a_disclaimer_paragraph() -> None:
    text = "A fever usually settles in a few days. Drink fluids and rest [1]."
    guard, _, result = run(text, cited=True)
    assert guard.text == f"{text}\n\n{DISCLAIMER_EN}"
    assert result.text == "\n\n" + DISCLAIMER_EN
    assert [(a.code, a.rule) for a in result.actions] == [("appended", "disclaimer")]


def test_zh_disclaimer_and_note() -> None:
    text = "发烧通常几天内会好转。多喝水、注意休息，如果持续高烧请及时就医。"
    guard, _, result = run(text, cited=False)
    assert guard.text == f"{text}\n\n{NOTE_ZH}\n\n{DISCLAIMER_ZH}"
    assert [a.rule for a in result.actions] == ["uncited_fact", "disclaimer"]


@pytest.mark.parametrize("text", ["Hello! How can I help you today?", "你好！有什么可以帮你？"])
def test_greetings_get_nothing_appended(text: str) -> None:
    guard, _, result = run(text, cited=False)
    assert guard.text == text and result.actions == () and result.text == ""


def test_urgent_triage_always_gets_the_disclaimer() -> None:
    guard, _, result = run("Please go now.", level=Level.URGENT)
    assert guard.text == "Please go now.\n\n" + DISCLAIMER_EN
    assert "urgent triage" in result.actions[0].detail


def test_an_existing_disclaimer_is_not_repeated() -> None:
    text = "I'm not a doctor, but a fever with a stiff neck needs a clinician today."
    guard, _, result = run(text, level=Level.URGENT)
    assert guard.text == text and "disclaimer" not in rules_of(result)


def test_uncited_facts_get_one_note() -> None:
    text = (
        "Paracetamol can damage the liver in overdose. The usual adult maximum is 4 g a day. "
        "Ibuprofen can irritate the stomach."
    )
    guard, _, result = run(text, cited=False)
    assert guard.text.count(NOTE_EN) == 1
    assert guard.text.index(NOTE_EN) < guard.text.index(DISCLAIMER_EN)
    assert "uncited_fact" in rules_of(result)
    _, _, cited = run(text, cited=True)
    assert "uncited_fact" not in rules_of(cited)


def test_uncited_note_says_whether_excerpts_were_offered() -> None:
    text = "Paracetamol can damage the liver in overdose; keep to the dose on the leaflet."
    details = []
    for used in (True, False):
        guard = OutputGuard(locale="en", knowledge_used=used, triage_level=Level.ROUTINE)
        guard.feed(text)
        details.append(next(a.detail for a in guard.finish(cited=False).actions))
    assert "were provided but none was cited" in details[0]
    assert "no knowledge-base excerpts" in details[1]


def test_refusals_and_short_answers_get_no_uncited_note() -> None:
    refusal = "I can't recommend a dose for you; please ask your pharmacist about ibuprofen."
    _, _, result = run(refusal, cited=False)
    assert "uncited_fact" not in rules_of(result)
    _, _, result = run("See a doctor.", cited=False)
    assert "uncited_fact" not in rules_of(result)


def test_actions_are_plain_records() -> None:
    _, _, result = run("You have pneumonia.")
    action = result.actions[0]
    assert isinstance(action, OutputAction)
    assert action.to_dict() == {
        "code": "edited",
        "rule": "definitive_diagnosis",
        "detail": "hedged a definitive diagnosis of the user",
    }
    assert {a.rule for a in result.actions} <= set(RULES)


# -- streaming -------------------------------------------------------------------------


def test_plain_text_streams_token_for_token() -> None:
    text = "Drink plenty of water and get some rest tonight. Sleep helps the body recover."
    guard = _guard()
    for token in split_tokens(text):
        assert guard.feed(token) == token


def test_only_the_sentence_with_a_trigger_is_held() -> None:
    guard = _guard()
    assert guard.feed("Rest well. ") == "Rest well. "
    assert guard.feed("Based on this, ") == "Based on this, "
    assert guard.feed("you ") == ""  # could still become "you have …"
    assert guard.feed("have ") == ""
    assert guard.feed("pneumonia") == ""
    assert guard.feed(". ") == (
        "this could be consistent with pneumonia; only a clinician who examines you can "
        "diagnose it. "
    )
    assert guard.feed("Drink water.") == "Drink water."


@pytest.mark.parametrize(
    "text",
    [
        "This is the answer.",
        "That is a good question.",
        "It is important to rest.",
        "It's a good idea to rest.",
        "This's fine.",
    ],
)
def test_common_openings_stream_at_once(text: str) -> None:
    guard = _guard()
    tokens = split_tokens(text)
    assert [guard.feed(token) for token in tokens] == tokens


def test_the_hold_starts_at_the_distinctive_word() -> None:
    guard = _guard()
    assert guard.feed("This ") == "This "
    assert guard.feed("is ") == "is "
    assert guard.feed("def") == ""  # could still become "definitely"
    assert guard.feed("initely ") == ""
    assert guard.feed("pneumonia") == ""
    assert guard.feed(". ") == (
        "possibly consistent with pneumonia; only a clinician who examines you can diagnose it. "
    )
    guard = _guard()
    assert guard.feed("I'm ") == ""  # could still become "I'm a doctor"
    assert guard.feed("sure ") == "I'm "
    assert guard.feed("it helps.") == ""
    assert guard.finish(cited=True).text == "sure it helps."


def test_zh_is_unaffected_by_the_common_opening_heads() -> None:
    guard = _guard("zh-CN")
    assert guard.feed("这是") == "这是"
    assert guard.feed("一个") == "一个"
    assert guard.feed("好问题。") == "好问题。"
    guard, outs, result = run("这肯定是流感。")
    assert "".join(outs[:-1]) == ""  # held until "。", then rewritten
    assert guard.text.startswith("这可能与流感有关，确诊需要医生面诊。")
    assert "definitive_diagnosis" in rules_of(result)


def test_a_possible_trigger_is_held_only_until_it_is_decided() -> None:
    guard = _guard()
    assert guard.feed("Rest for 3") == "Rest for "
    assert guard.feed(" days") == "3 days"
    assert guard.feed(" and you") == " and "
    assert guard.feed(" will feel better") == ""  # "you will" may precede a dose
    assert guard.feed(".\n") == "you will feel better.\n"
    assert guard.feed("Bye") == "Bye"


def test_decimals_do_not_end_a_sentence() -> None:
    guard, _, _ = run("Take 0.5 g twice a day.", pieces=["Take 0", ".", "5 g twice a day."])
    assert "0.5 g" not in guard.text and "I can't give you a personal dose" in guard.text


def test_a_held_sentence_is_released_at_the_cap() -> None:
    guard = _guard()
    assert guard.feed("You should ") == ""
    released = ""
    for _ in range(60):
        released += guard.feed("rest and wait ")
    assert released  # checked and released although the sentence never ended
    held = len("You should ") + 60 * len("rest and wait ") - len(released)
    assert held <= HOLD_LIMIT
    guard.finish(cited=True)
    assert guard.text.startswith("You should rest and wait rest")


def test_the_guard_is_used_once() -> None:
    guard = _guard()
    guard.feed("Hello")
    guard.finish(cited=False)
    with pytest.raises(RuntimeError):
        guard.feed("more")
    with pytest.raises(RuntimeError):
        guard.finish(cited=False)


def test_a_long_answer_is_processed_in_bounded_time() -> None:
    """50 KB of adversarial text (no sentence ends, long digit runs, triggers everywhere),
    streamed in tokens and in one piece: it must simply finish."""
    samples = [
        "You have the flu, so take 500 mg I am a doctor you should ",
        "1" * 997 + " ",
        "1." * 300,
        "5" + " " * 900 + "x ",
        "你得了感冒每次服用 2 片" * 20,
        "If you have a cold. " * 10,
    ]
    text = ("".join(samples) * 30)[:50_000]
    for pieces in (split_tokens(text), [text], list(text[:10_000])):
        guard = _guard()
        outs = [guard.feed(p) for p in pieces]
        result = guard.finish(cited=False)
        assert "".join(outs) + result.text == guard.text


# -- properties ------------------------------------------------------------------------

SAFE_WORDS = [
    "bonjour", "nice", "evening", "cozy", "bench", "violet", "zebra", "quokka", "ocean",
    "candle", "novel", "jazz", "blue", "envelope", "Bonjour", "Ocean",
    "天气", "晴朗", "花园", "音乐", "朋友", "咖啡", "春天", "月亮",
]  # fmt: skip
SEPARATORS = [" ", ", ", ". ", "! ", "? ", "\n", "，", "。", "！", " — "]
TRIGGER_WORDS = [
    "I am a doctor", "you have pneumonia", "take 500 mg", "you should", "2 tablets",
    "3 days", "0.5 g", "the lethal dose", "As your doctor, I", "I'm not a doctor",
    "if you have a fever", "我是医生", "你得了感冒", "每次服用 2 片", "如果你有", "致死量",
    "fever", "ibuprofen", "you", "I", "as", "take", "500", "mg", "taken", "youth", "This is",
    "definitely", "It's clearly", "I'm sure", "certain", "suicide", "我", "你", "每", "1,000",
    " to ", "e.g.",
]  # fmt: skip


def _chunked(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points) if b > a]


safe_text = st.lists(
    st.tuples(st.sampled_from(SAFE_WORDS), st.sampled_from(SEPARATORS)), max_size=40
).map(lambda pairs: "".join(w + s for w, s in pairs))
any_text = st.lists(
    st.one_of(
        st.sampled_from(SAFE_WORDS + TRIGGER_WORDS + SEPARATORS),
        st.text(max_size=8),
    ),
    max_size=40,
).map("".join)
cuts = st.lists(st.integers(min_value=0, max_value=2_000), max_size=30)


@settings(deadline=None)
@given(text=any_text, cuts=cuts, locale=st.sampled_from(["en", "zh-CN"]), cited=st.booleans())
def test_what_streams_is_exactly_the_answer(
    text: str, cuts: list[int], locale: str, cited: bool
) -> None:
    guard = _guard(locale)
    shown = "".join(guard.feed(piece) for piece in _chunked(text, cuts))
    result = guard.finish(cited=cited)
    assert shown + result.text == guard.text
    if not result.actions:
        assert guard.text == text


@settings(deadline=None)
@given(text=any_text, cuts=cuts)
# Found by hypothesis: a unit at the end of a delta ("2 tablet") once counted as a complete
# dose though the next delta made it "2 tabletsthe …".
@example(text="2 tabletsthe lethal dose, 0000", cuts=[8])
def test_the_answer_does_not_depend_on_how_it_was_split(text: str, cuts: list[int]) -> None:
    whole = _guard()
    whole.feed(text)
    whole.finish(cited=False)
    split = _guard()
    for piece in _chunked(text, cuts):
        split.feed(piece)
    split.finish(cited=False)
    assert split.text == whole.text


@settings(deadline=None)
@given(text=safe_text, cuts=cuts, locale=st.sampled_from(["en", "zh-CN"]))
def test_text_without_triggers_is_never_held(text: str, cuts: list[int], locale: str) -> None:
    guard = _guard(locale)
    for piece in _chunked(text, cuts):
        assert guard.feed(piece) == piece
    result = guard.finish(cited=False)
    assert result.text == "" and result.actions == () and guard.text == text
