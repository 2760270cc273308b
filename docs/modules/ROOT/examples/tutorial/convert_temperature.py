"""The tool written in the tutorial "Add a tool" (docs/.../pages/tutorials/add-a-tool.adoc).

The page includes the tool (tag ``tool``) and runs it, then registers the function and calls it in
doctests; the end of the file (tag ``run_loop``) runs the agent loop with a real model, which
``ggufref docs-gen --capture transcript-add-a-tool`` records for the page.
"""

from typing import Any


# tag::tool[]
def convert_temperature(value: float, to: str) -> str:
    """Convert a temperature between Celsius and Fahrenheit.

    Args:
        value: the temperature to convert, in the other unit
        to: the unit to convert to, "celsius" or "fahrenheit"
    """
    if to == "fahrenheit":
        return f"{value * 9 / 5 + 32:.1f} °F"
    if to == "celsius":
        return f"{(value - 32) * 5 / 9:.1f} °C"
    raise ValueError(f"unknown unit {to!r}; use 'celsius' or 'fahrenheit'")


# end::tool[]


# tag::run_loop[]
def ask(question: str, model: str = "qwen2.5-coder-0.5b-instruct") -> str:
    """Ask ``model`` a question with convert_temperature offered; print each step of the loop."""
    from ggufref.chat.session import ChatSession
    from ggufref.chat.tools import ToolRegistry
    from ggufref.generate import Engine

    registry = ToolRegistry()
    registry.register(convert_temperature)

    written: list[str] = []  # the model's raw text in the current round

    def show(kind: str, payload: Any) -> None:
        if kind == "text":
            written.append(payload)
        elif kind == "tool_call":  # the raw text, then the call parsed out of it
            if written:
                print(f"[model writes] {''.join(written).strip()}")
                written.clear()
            print(f"[parsed call]  {payload.name}({payload.arguments})")
        elif kind == "tool_result":  # what goes back to the model as a tool message
            print(f"[tool result]  {payload['content']}")

    session = ChatSession(Engine(model, progress=False), registry=registry, on_event=show)
    answer = session.ask(question).content  # greedy by default, so the run is reproducible
    print(f"[answer]       {answer}")
    return answer


if __name__ == "__main__":
    ask("What is 21 degrees Celsius in Fahrenheit?")
# end::run_loop[]
