"""Value parsers for options, flags and YAML keys: each takes a CLI string or a YAML value and returns the value, or
raises ValueError with a message for the user. Idempotent (parse(parse(x)) == parse(x)), so a value can be checked at
the CLI and again where it is applied.

Apart from the option table (`stylegan_core.options`), which imports every training config: a command that only
needs a bounded integer (`stylegan dataset prepare --workers`) starts without them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def show(value: object, limit: int = 60) -> str:
    """repr() cut to `limit` characters: a hostile value must not turn into a megabyte of error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def to_bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected a boolean (true/false, 1/0), got {show(value)}")


def _is_none(value: object) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null", ""))


def optional(parse: Callable[[object], Any]) -> Callable[[object], Any]:
    def parse_optional(value: object) -> Any:
        return None if _is_none(value) else parse(value)

    return parse_optional


def integer(low: int, high: int) -> Callable[[object], int]:
    def parse_integer(value: object) -> int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise ValueError(f"expected an integer, got {show(value)}")
        try:
            number = int(value)  # type: ignore[call-overload]
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"expected an integer, got {show(value)}") from None
        if not low <= number <= high:
            raise ValueError(f"must be in [{low}, {high}], got {number}")
        return number

    return parse_integer


def real(low: float, high: float, *, low_open: bool = False) -> Callable[[object], float]:
    """A finite float in [low, high] (or (low, high] with low_open)."""

    def parse_real(value: object) -> float:
        if isinstance(value, bool):
            raise ValueError(f"expected a number, got {show(value)}")
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            raise ValueError(f"expected a number, got {show(value)}") from None
        if not math.isfinite(number):
            raise ValueError(f"must be a finite number, got {show(value)}")
        if number < low or number > high or (low_open and number == low):
            raise ValueError(f"must be in {'(' if low_open else '['}{low:g}, {high:g}], got {number:g}")
        return number

    return parse_real


def choice(allowed: tuple[str, ...]) -> Callable[[object], str]:
    def parse_choice(value: object) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}; got {show(value)}")
        return str(value)

    return parse_choice


def text(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {show(value)}")
    return value


def names(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        items: list[object] = [] if value.strip().lower() in ("", "none") else list(value.split(","))
    elif isinstance(value, (list, tuple)):
        items = list(value)
    else:
        raise ValueError(f"expected a comma-separated string or a list of names, got {show(value)}")
    return tuple(str(item).strip() for item in items if str(item).strip())


def grid(value: object) -> tuple[int, int] | None:
    if _is_none(value) or (isinstance(value, str) and value.strip().lower() == "auto"):
        return None
    parts = value.lower().split("x") if isinstance(value, str) else value
    if not isinstance(parts, (list, tuple)) or len(parts) != 2:
        raise ValueError(f"expected COLUMNSxROWS such as 8x4, got {show(value)}")
    side = integer(1, 1024)
    return side(parts[0]), side(parts[1])


def inverted_bool(value: object) -> bool:
    return not to_bool(value)
