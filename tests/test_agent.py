"""The agent loop end to end, with a scripted completer standing in for the model.

Each test checks the prompt the "model" receives after a tool ran: the tool result must be
there, rendered the way the chat template formats tool results.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ggufref.chat.agent import AgentResult, cut_at_stop, run_agent
from ggufref.chat.template import ChatTemplate
from ggufref.chat.tools import ToolCall, builtin_registry

TEMPLATES = Path(__file__).parent / "data" / "templates"


class ScriptedCompleter:
    """Returns fixed replies in order and records every prompt and stop list it was given."""

    def __init__(self, replies: list[str], stream: bool = False):
        self.replies = list(replies)
        self.stream = stream
        self.prompts: list[str] = []
        self.stops: list[list[str]] = []
        self.answer_only: list[bool] = []

    def complete(self, prompt, *, max_tokens, stop, on_text, answer_only=False, stop_when=None):
        assert max_tokens > 0
        self.prompts.append(prompt)
        self.answer_only.append(answer_only)
        self.stops.append(stop)
        text = self.replies.pop(0)
        if self.stream and on_text:
            for i in range(0, len(text), 5):
                on_text(text[i : i + 5])
        return text


def qwen3() -> ChatTemplate:
    return ChatTemplate((TEMPLATES / "qwen3.jinja").read_text(), "", "<|im_end|>", "qwen3")


@pytest.fixture
def registry(tmp_path):
    return builtin_registry(tmp_path)


def record(events):
    return lambda kind, payload: events.append((kind, payload))


def test_qwen3_hermes_round_trip(registry):
    completer = ScriptedCompleter(
        [
            "<think>\nUse the calculator.\n</think>\n\n<tool_call>\n"
            '{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call><|im_end|>',
            "6*7 = 42.",
        ]
    )
    events: list = []
    result = run_agent(
        completer,
        qwen3(),
        [{"role": "user", "content": "What is 6*7?"}],
        registry,
        on_event=record(events),
    )
    assert isinstance(result, AgentResult)
    assert (result.content, result.rounds, result.finished) == ("6*7 = 42.", 2, True)
    assert "<tools>\n" in completer.prompts[0] and '"name": "calculator"' in completer.prompts[0]
    assert "<|im_end|>" in completer.stops[0]
    # Round 2 sees the call (with its reasoning: it follows the last user query) and the result.
    assert completer.prompts[1].endswith(
        "<|im_start|>user\nWhat is 6*7?<|im_end|>\n"
        "<|im_start|>assistant\n<think>\nUse the calculator.\n</think>\n\n"
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call>'
        "<|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n42\n</tool_response><|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert result.messages[2] == {
        "role": "tool",
        "name": "calculator",
        "tool_call_id": "call_1_0",
        "content": "42",
    }
    assert result.messages[-1] == {"role": "assistant", "content": "6*7 = 42."}
    kinds = [k for k, _ in events]
    assert kinds == ["text", "reasoning", "tool_call", "tool_result", "text"]
    assert events[2][1] == ToolCall("calculator", {"expression": "6*7"}, "call_1_0")
    assert events[3][1]["content"] == "42" and events[3][1]["ok"] is True


def test_gemma_python_call_round_trip(registry):
    template = ChatTemplate.for_model({}, "gemma3")  # no template in the file: built-in
    completer = ScriptedCompleter(['[calculator(expression="6*7")]', "It is 42."], stream=True)
    events: list = []
    result = run_agent(
        completer,
        template,
        [{"role": "user", "content": "What is 6*7?"}],
        registry,
        on_event=record(events),
    )
    assert (result.content, result.rounds, result.finished) == ("It is 42.", 2, True)
    assert completer.prompts[1].endswith(
        "What is 6*7?<end_of_turn>\n"
        '<start_of_turn>model\n[calculator(expression="6*7")]<end_of_turn>\n'
        '<start_of_turn>user\n<tool_response name="calculator">42</tool_response><end_of_turn>\n'
        "<start_of_turn>model\n"
    )
    streamed = "".join(p for k, p in events if k == "text")
    assert streamed == '[calculator(expression="6*7")]It is 42.'  # streamed once, not twice


def test_llama32_bare_json_round_trip(registry):
    template = ChatTemplate(
        (TEMPLATES / "llama3.2.jinja").read_text(), "<|begin_of_text|>", "<|eot_id|>"
    )
    completer = ScriptedCompleter(
        ['{"name": "calculator", "parameters": {"expression": "6*7"}}', "42."]
    )
    result = run_agent(completer, template, [{"role": "user", "content": "What is 6*7?"}], registry)
    assert result.finished and result.content == "42."
    assert completer.prompts[1].endswith(
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
        '{"name": "calculator", "parameters": {"expression": "6*7"}}<|eot_id|>'
        '<|start_header_id|>ipython<|end_header_id|>\n\n"42"<|eot_id|>'
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )


def test_malformed_call_and_unknown_tool_are_fed_back(registry):
    completer = ScriptedCompleter(
        [
            # missing the closing brace of the call object
            '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}\n</tool_call>',
            '<tool_call>\n{"name": "weather", "arguments": {}}\n</tool_call>',
            '<tool_call>\n{"name": "calculator", "arguments": {"expression": "6*7"}}\n</tool_call>',
            "42.",
        ]
    )
    events: list = []
    result = run_agent(
        completer,
        qwen3(),
        [{"role": "user", "content": "What is 6*7?"}],
        registry,
        on_event=record(events),
    )
    assert (result.content, result.rounds, result.finished) == ("42.", 4, True)
    # Round 2: the model sees what it wrote and why it was refused.
    assert '<|im_start|>assistant\n<tool_call>\n{"name": "calculator"' in completer.prompts[1]
    assert "<tool_response>\nerror: <tool_call> is not valid JSON" in completer.prompts[1]
    # Round 3: an unknown tool is an error message too, listing the real ones.
    assert (
        "<tool_response>\nerror: unknown tool 'weather'; available: calculator, list_files\n"
        "</tool_response>"
    ) in completer.prompts[2]
    assert "<tool_response>\n42\n</tool_response>" in completer.prompts[3]
    assert [c.name for c in result.tool_calls] == ["weather", "calculator"]
    assert [k for k, _ in events].count("parse_error") == 1


def _calc(expression: str) -> str:
    return (
        '<tool_call>\n{"name": "calculator", "arguments": {"expression": "'
        + expression
        + '"}}\n</tool_call>'
    )


def test_max_rounds_stops_a_model_that_never_answers(registry):
    completer = ScriptedCompleter([_calc("1+1"), _calc("2+2"), _calc("3+3")])
    result = run_agent(
        completer, qwen3(), [{"role": "user", "content": "loop"}], registry, max_rounds=3
    )
    assert (result.rounds, result.finished, result.stop) == (3, False, "max_rounds")
    assert len(completer.prompts) == 3
    assert [m["role"] for m in result.messages] == ["user"] + ["assistant", "tool"] * 3


def _ask_product(registry, replies: list[str]):
    """The loop on "What is 1234 * 5678?" with scripted replies: (completer, result, events)."""
    completer = ScriptedCompleter(replies)
    events: list = []
    result = run_agent(
        completer,
        qwen3(),
        [{"role": "user", "content": "What is 1234 * 5678?"}],
        registry,
        max_rounds=2,
        on_event=record(events),
    )
    return completer, result, events


def test_a_repeated_call_is_not_run_again_and_tools_are_withdrawn(registry):
    # The habit of greedy Qwen2.5-Coder after a tool result: the same call again.
    replies = [_calc("1234 * 5678"), _calc("1234*5678"), "It is 7006652."]
    _, result, _ = _ask_product(registry, replies)
    # "1234*5678" differs in text from "1234 * 5678": a different call, so it runs.
    assert [c.arguments["expression"] for c in result.tool_calls] == ["1234 * 5678", "1234*5678"]
    assert result.stop == "max_rounds"

    replies = [_calc("1234 * 5678"), _calc("1234 * 5678"), "It is 7006652."]
    completer, result, events = _ask_product(registry, replies)
    assert (result.content, result.stop, result.finished, result.rounds) == (
        "It is 7006652.",
        "repeated_call",
        True,
        3,
    )
    assert [k for k, _ in events].count("tool_result") == 1  # the repeat was not run
    assert [k for k, _ in events].count("repeated_call") == 1
    # the answer round offers no tools, and the repeated call is not in the history
    assert "<tools>" in completer.prompts[1] and "<tools>" not in completer.prompts[2]
    assert completer.answer_only == [False, False, True]
    assert completer.prompts[2].count("<tool_call>") == 1
    roles = [m["role"] for m in result.messages]
    assert roles == ["user", "assistant", "tool", "assistant"]
    call_id = result.messages[1]["tool_calls"][0]["id"]
    assert call_id and result.messages[2]["tool_call_id"] == call_id


def test_a_model_that_repeats_even_without_tools_ends_without_an_answer(registry):
    completer = ScriptedCompleter([_calc("2+2"), _calc("2+2"), _calc("2+2")])
    result = run_agent(completer, qwen3(), [{"role": "user", "content": "2+2"}], registry)
    assert (result.stop, result.finished, result.content) == ("repeated_call", False, "")
    assert len(result.tool_calls) == 1


def test_cut_at_stop():
    assert cut_at_stop("answer<|im_end|>junk<end_of_turn>", ["<end_of_turn>", "<|im_end|>"]) == (
        "answer"
    )
    assert cut_at_stop("answer", ["<|im_end|>"]) == "answer"


def test_looping_and_salvage():
    from ggufref.chat.agent import looping, salvage_calls

    line = '{"name": "calculator", "arguments": {"expression": "391"}}'
    assert not looping(line + "\n")
    assert looping(f"{line}\n{line}\n")
    assert not looping(f'{line}\n{{"name": "calculator", "arguments": {{}}}}\n')
    assert not looping("It is 391.\nIt is 391.\n")  # repeated prose is not a call loop
    other = '{"name": "calculator", "arguments": {"expression": "17*23"}}'
    assert not looping(f"{line}\n{other}\n")
    assert looping(f"{line}\n{other}\n{line}\n")  # alternating between two calls
    calls = salvage_calls(f'{line}\n{other}\n{{"name": "calc')  # cut off mid-line
    assert [(c.name, c.arguments) for c in calls] == [("calculator", {"expression": "391"})]
    assert salvage_calls("The answer is 391.") == []


def test_a_reply_that_opens_with_a_repeat_is_a_repeat(registry):
    # The 0.5B after a tool result: the same call again, then another, alternating.
    again = _calc("2+2") + "\n" + _calc("3+3")
    completer = ScriptedCompleter([_calc("2+2"), again, "It is 4."])
    result = run_agent(completer, qwen3(), [{"role": "user", "content": "2+2"}], registry)
    assert (result.stop, result.content) == ("repeated_call", "It is 4.")
    assert [c.arguments["expression"] for c in result.tool_calls] == ["2+2"]  # 3+3 never ran
