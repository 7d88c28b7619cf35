"""Typed readers for spec values: each takes a YAML value and returns the parsed one or raises ValueError with a
message for the user; `Section` walks a mapping and turns those into SpecError naming the file and the key."""

from __future__ import annotations

import difflib
import os
import re
import zoneinfo
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from stylegan_core.data.options import DatasetError, is_power_of_two
from stylegan_core.parsers import show

_CRON_MACROS = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")
_MISSING: Any = object()
# Far above NVIDIA's 1024 px; a typo such as 2**30 must fail at load, not when the networks are allocated.
MAX_RESOLUTION = 8192
# A spec is a few kilobytes; reading more is refused before parsing.
MAX_SPEC_BYTES = 1 << 20


class SpecError(DatasetError):
    """A problem in a spec file; the message starts with `<file>: <key>:`."""


class Section:
    """Reads one YAML mapping key by key; whatever is left at `finish()` is an unknown key."""

    def __init__(
        self, file: Path, where: str, value: object, known: tuple[str, ...], aliases: Mapping[str, str] | None = None
    ) -> None:
        if not isinstance(value, Mapping):
            raise SpecError(f"{file}: {where or 'top level'}: expected a mapping, got {type(value).__name__}")
        self.file, self.where, self.data, self.known = file, where, dict(value), known
        self.aliases = aliases or {}
        """Words users bring from elsewhere (NVIDIA's `cfg`) and the key that means it here."""

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def error(self, name: str, message: str) -> SpecError:
        return SpecError(f"{self.file}: {self.key(name)}: {message}")

    def take(self, name: str, parse: Callable[[Any], Any], default: Any = _MISSING) -> Any:
        assert name in self.known, name
        if name not in self.data:
            if default is _MISSING:
                raise self.error(name, "required key is missing")
            return default
        value = self.data.pop(name)
        try:
            return parse(value)
        except (TypeError, ValueError) as error:
            raise self.error(name, str(error)) from None

    def finish(self) -> None:
        for name in self.data:
            alias = self.aliases.get(name)
            close = [alias] if alias else difflib.get_close_matches(str(name), self.known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(self.known)}"
            raise self.error(name[:60] if isinstance(name, str) else show(name, 40), f"unknown key{hint}")


def one_of(allowed: tuple[str, ...], aliases: Mapping[str, str] | None = None) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value is None or isinstance(value, str):
            value = (aliases or {}).get(value, value)
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}; got {show(value)}")
        return value

    return parse


def integer(minimum: int | None = None, maximum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {show(value)}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise ValueError(f"must be <= {maximum}, got {show(value)}")
        return value

    return parse


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else parse(value)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {show(value)}")
    return value


def resolution_list(value: Any) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    parsed = [integer(4, MAX_RESOLUTION)(item) for item in values]
    bad = [item for item in parsed if not is_power_of_two(item)]
    if bad or not parsed:
        raise ValueError(f"must be a non-empty list of powers of two >= 4, got {show(value)}")
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"lists a resolution twice: {show(value)}")
    return tuple(sorted(parsed))


def colour(value: Any) -> tuple[int, int, int]:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * 3
    if isinstance(value, list) and len(value) == 3 and all(_is_byte(v) for v in value):
        return tuple(value)  # type: ignore[return-value]
    raise ValueError(f"must be [r, g, b] with integers in 0..255, one grey level, or '#rrggbb'; got {show(value)}")


def _is_byte(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255


def aspect_ratio(value: Any) -> tuple[int, int]:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return (value[0], value[1])
    raise ValueError(f"must be [width, height] with positive integers, e.g. [4, 3]; got {show(value)}")


def path_in(spec_dir: Path) -> Callable[[Any], Path]:
    """A path relative to the spec's folder (or absolute), with `~` and environment variables expanded."""
    return lambda value: _expand_path(value, spec_dir)


def _expand_path(value: Any, spec_dir: Path) -> Path:
    expanded = os.path.expanduser(os.path.expandvars(string(value)))
    unset = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
    if unset:
        raise ValueError(f"environment variable {unset.group(1)} is not set (in {show(value)})")
    path = Path(expanded)
    return path if path.is_absolute() else (spec_dir / path).resolve()


def scalar_or_list(value: Any) -> object:
    if isinstance(value, (Mapping, set)):
        raise ValueError(f"must be a number, string, boolean or list, got {show(value)}")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys; a spec must not hide a typo that way.

    Anchors and aliases (`&a` / `*a`) are refused: nested aliases expand exponentially (a 1.6 KB file can become
    hundreds of megabytes), and a spec is short enough to write out.
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.events.AliasEvent):
            event = self.peek_event()
            raise yaml.composer.ComposerError(
                None, None, "YAML aliases (*name) are not allowed in a spec; write the value out", event.start_mark
            )
        return super().compose_node(parent, index)


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str) -> Any:
    """Safe YAML, with duplicate keys and aliases errors."""
    if len(text) > MAX_SPEC_BYTES:
        raise yaml.YAMLError(f"the file is {len(text)} characters long; a spec is at most {MAX_SPEC_BYTES}")
    return yaml.load(text, Loader=_UniqueKeyLoader)


# Field: (low, high, names). Day-of-week 7 is Sunday as 0 is, as in cron and Dagster.
_CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
    ("day of week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)


def cron_expression(value: Any) -> str:
    """A 5-field cron expression (numbers, names, `*`, ranges, steps, lists) or a macro such as @daily.

    Stricter than Dagster's parser (no L, W or #), never looser: what loads here also loads as a Dagster schedule
    (tests/test_dagster_automation.py checks this against Dagster's own `is_valid_cron_string`).
    """
    expression = string(value).strip()
    if expression in _CRON_MACROS:
        return expression
    parts = expression.split()
    if len(parts) != 5:
        raise ValueError(
            f"must be a 5-field cron expression like '0 3 * * 0' or one of {', '.join(_CRON_MACROS)}; got {show(value)}"
        )
    for part, (name, low, high, names) in zip(parts, _CRON_FIELDS, strict=True):
        for item in part.split(","):
            if not _cron_item_ok(item.lower(), low, high, names):
                raise ValueError(f"{name} field {part!r} is not valid: values are {low}-{high}; got {show(value)}")
    return expression


def _cron_item_ok(item: str, low: int, high: int, names: tuple[str, ...]) -> bool:
    base, _, step = item.partition("/")
    if step and not (step.isdigit() and 1 <= int(step) <= high):
        return False
    if base == "*":
        return True
    ends = base.split("-")
    if len(ends) > 2:
        return False
    values = [names.index(e) + (low if names else 0) if e in names else int(e) if e.isdigit() else -1 for e in ends]
    if any(not low <= v <= high for v in values):
        return False
    return len(values) == 1 and not step or len(values) == 2 and values[0] <= values[1]


def timezone_name(value: Any) -> str:
    """An IANA time zone (`UTC`, `Europe/Paris`), checked against the zone database."""
    name = string(value).strip()
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {show(value)}; use an IANA name such as UTC or Europe/Paris") from None
    return name


def names_from(allowed: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or any(v not in allowed for v in value):
            choices = ", ".join(allowed)
            raise ValueError(f"must be a non-empty list of this spec's configs ({choices}); got {show(value)}")
        return tuple(value)

    return parse


def subset_of(allowed: tuple[int, ...]) -> Callable[[Any], tuple[int, ...]]:
    def parse(value: Any) -> tuple[int, ...]:
        if not isinstance(value, list) or not value or any(v not in allowed for v in value):
            raise ValueError(f"must be a non-empty list of this spec's resolutions {list(allowed)}; got {show(value)}")
        return tuple(sorted(value))

    return parse
