"""The tool written in the tutorial "Add a tool" (docs/.../pages/tutorials/add-a-tool.adoc).

The page includes this file and runs it, then registers the function and calls it in doctests.
"""


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
