from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from healtrace.agent._textcalls import (
    TextCallSplitter,
    flatten_tool_messages,
    parse_text_tool_calls,
)
from healtrace.agent.models.base import ChatMessage, ToolCall


def _feed(chunks: list[str]) -> tuple[str, list[ToolCall]]:
    splitter = TextCallSplitter()
    shown = "".join(splitter.feed(c) for c in chunks)
    rest = splitter.finish()
    return shown + rest.text, rest.calls


def test_bare_json_call() -> None:
    calls = parse_text_tool_calls('{"name": "bmi", "arguments": {"weight": 70}}')
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [("bmi", {"weight": 70})]


def test_qwen_tool_call_blocks_and_variants() -> None:
    text = (
        '<tool_call>\n{"name": "a", "arguments": {"x": 1}}\n</tool_call>\n'
        '<tool_call>{"name": "b", "parameters": "{\\"y\\": 2}"}</tool_call>'
    )
    calls = parse_text_tool_calls(text)
    assert [c.name for c in calls] == ["a", "b"]
    assert json.loads(calls[1].arguments) == {"y": 2}
    fenced = parse_text_tool_calls('```json\n{"function": {"name": "c", "arguments": {}}}\n```')
    assert [c.name for c in fenced] == ["c"]
    # An unterminated block at the end of a stream still counts.
    assert [c.name for c in parse_text_tool_calls('<tool_call>{"name":"d","arguments":{}}')] == [
        "d"
    ]


def test_json_that_is_not_a_call_is_not_swallowed() -> None:
    assert parse_text_tool_calls('{"answer": 42}') == []
    assert parse_text_tool_calls('{"name": "x"}') == []  # no arguments: not a call
    assert parse_text_tool_calls("{not json") == []
    assert parse_text_tool_calls("```python\nprint(1)\n```") == []
    text, calls = _feed(['{"heart_rate"', ': "60-100 bpm"}'])
    assert calls == [] and text == '{"heart_rate": "60-100 bpm"}'


def test_prose_streams_immediately() -> None:
    splitter = TextCallSplitter()
    assert splitter.feed("A normal") == "A normal"
    assert splitter.feed(" resting heart") == " resting heart"
    assert splitter.finish().text == ""


def test_call_split_across_chunks_after_prose() -> None:
    splitter = TextCallSplitter()
    shown = splitter.feed("Let me calculate. <tool")
    assert shown == "Let me calculate. "
    assert splitter.feed('_call>{"name": "bmi", "arg') == ""
    assert splitter.feed('uments": {"weight": 70}}</tool_call>') == ""
    rest = splitter.finish()
    assert [c.name for c in rest.calls] == ["bmi"] and rest.text == ""


def test_lists() -> None:
    text, calls = _feed(["[", '{"name": "a", "arguments": {}}, {"name": "b", "arguments": {}}]'])
    assert [c.name for c in calls] == ["a", "b"] and text == ""
    splitter = TextCallSplitter()
    assert splitter.feed("[") == ""
    assert splitter.feed("1] WHO fact sheet") == "[1] WHO fact sheet"


def test_leading_whitespace_and_lookalike_prefix() -> None:
    text, calls = _feed(["  ", "<", "b>bold</b> text"])
    assert calls == [] and text == "  <b>bold</b> text"
    text, calls = _feed(["\n", '{"name": "bmi", "arguments": {}}'])
    assert [c.name for c in calls] == ["bmi"] and text == ""


@given(st.text(alphabet=st.characters(blacklist_characters="{[<`"), max_size=200), st.data())
def test_any_chunking_of_prose_is_lossless(text: str, data: st.DataObject) -> None:
    cuts = sorted(data.draw(st.sets(st.integers(0, len(text)), max_size=10)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    shown, calls = _feed(chunks)
    assert calls == [] and shown == text


def test_flatten_for_text_only_templates() -> None:
    call = ToolCall(id="c1", name="bmi", arguments='{"weight": 70}')
    out = flatten_tool_messages(
        (
            ChatMessage(role="user", content="bmi?"),
            ChatMessage(role="assistant", content="", tool_calls=(call,)),
            ChatMessage(role="tool", content='{"bmi": 22.9}', tool_call_id="c1", name="bmi"),
        )
    )
    assert [m.role for m in out] == ["user", "assistant", "user"]
    assert json.loads(out[1].content) == {"name": "bmi", "arguments": {"weight": 70}}
    assert out[2].content == '[tool result: bmi] {"bmi": 22.9}'
    assert all(not m.tool_calls for m in out)


def test_fold_tool_results_into_the_question() -> None:
    from healtrace.agent._textcalls import fold_tool_results, has_pending_tool_results

    call = ToolCall(id="c1", name="bmi", arguments='{"weight": 70}')
    history = (
        ChatMessage(role="system", content="sys"),
        ChatMessage(role="user", content="earlier"),
        ChatMessage(role="assistant", content="earlier answer"),
        ChatMessage(role="user", content="我的BMI是多少？"),
        ChatMessage(role="assistant", content="", tool_calls=(call,)),
        ChatMessage(role="tool", content='{"bmi": 22.9}', tool_call_id="c1", name="bmi"),
    )
    assert has_pending_tool_results(history)
    assert not has_pending_tool_results(history[:4])
    folded = fold_tool_results(history)
    assert [m.role for m in folded] == ["system", "user", "assistant", "user"]
    last = folded[-1].content
    assert last.startswith("我的BMI是多少？") and '- bmi: {"bmi": 22.9}' in last
    assert "不要再调用工具" in last


def test_commentary_after_a_call_is_dropped_with_it() -> None:
    text = '```json\n{"name": "bmi", "arguments": {"weight": 70}}\n```\n\nThis computes BMI.'
    assert [c.name for c in parse_text_tool_calls(text)] == ["bmi"]
    bare = '{"name": "bmi", "arguments": {}} I will now compute it.'
    assert [c.name for c in parse_text_tool_calls(bare)] == ["bmi"]
    # Prose first is an answer, even if a call-like object follows.
    assert parse_text_tool_calls('Example: {"name": "bmi", "arguments": {}}') == []
