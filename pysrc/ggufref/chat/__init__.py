"""Chat: messages -> prompt -> reply -> tool calls -> results -> the next prompt.

The last stage of the pipeline, one module per step:

* ``template.py`` -- chat templates: OpenAI-style messages -> the prompt a model was trained on;
* ``sandbox.py`` -- the bounded Jinja sandbox and render worker the templates run in;
* ``tools.py`` -- tool schemas, parsing the calls a model writes, running them;
* ``agent.py`` -- the agent loop tying those together for any object with ``complete``;
* ``session.py`` -- a chat session on the engine (history, KV-cache reuse, interruption).

This package re-exports the engine-free names. ``ChatSession`` and ``Turn`` are imported
from ``ggufref.chat.session``: the template worker process imports this package, and the
session would pull the engine (numpy, the C kernels) into it.
"""

from ggufref.chat.agent import TOOL_SYSTEM_PROMPT, AgentResult, run_agent
from ggufref.chat.template import TEMPLATE_KEY, ChatTemplate, RenderedPrompt
from ggufref.chat.tools import ToolCall, ToolRegistry, builtin_registry, parse_reply

__all__ = [
    "TEMPLATE_KEY",
    "TOOL_SYSTEM_PROMPT",
    "AgentResult",
    "ChatTemplate",
    "RenderedPrompt",
    "ToolCall",
    "ToolRegistry",
    "builtin_registry",
    "parse_reply",
    "run_agent",
]
