"""The project's exceptions.

Every error that a user can cause (a bad file, a bad flag, a prompt that does not fit)
is one of these; the CLI prints ``str(err)`` as a single line on stderr and exits with 2.
Anything else reaching the top level is a bug in ggufref.
"""

from __future__ import annotations


# tag::errors[]
class GgufrefError(Exception):
    """Base class: a user-facing error with a one-line message."""


class GGUFError(GgufrefError):
    """A GGUF file is missing, unreadable, malformed or unsupported.

    The message names the file, the quantity, what was found and what was expected.
    """

    def __init__(self, path: object, what: str, found: object = None, expected: object = None):
        self.path = str(path)
        self.what = what
        self.found = found
        self.expected = expected
        msg = f"{self.path}: {what}"
        if found is not None:
            msg += f": found {found}"
        if expected is not None:
            msg += f", expected {expected}"
        super().__init__(msg)


class ModelError(GgufrefError):
    """The model cannot run as asked (unsupported architecture, prompt too long for the context)."""


class TemplateError(GgufrefError):
    """A chat template failed to render or tried to leave its sandbox."""


class ToolCallError(GgufrefError):
    """A tool call was malformed, named an unknown tool or had invalid arguments."""


# end::errors[]
