"""Typed readers for spec values: each takes a YAML value and returns the parsed one or raises ValueError with a
message for the user; `Section` walks a mapping and turns those into SpecError naming the file and the key."""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

from stylegan_core.data.options import DatasetError, is_power_of_two

_CRON_FIELD = re.compile(r"^[0-9A-Za-z*/,?LW#-]+$")
_CRON_MACROS = ("@hourly", "@daily", "@weekly", "@monthly", "@yearly", "@annually", "@midnight")
_MISSING: Any = object()


class SpecError(DatasetError):
    """A problem in a spec file; the message starts with `<file>: <key>:`."""


class Section:
    """Reads one YAML mapping key by key; whatever is left at `finish()` is an unknown key."""

    def __init__(self, file: Path, where: str, value: object, known: tuple[str, ...]) -> None:
        if not isinstance(value, Mapping):
            raise SpecError(f"{file}: {where or 'top level'}: expected a mapping, got {type(value).__name__}")
        self.file, self.where, self.data, self.known = file, where, dict(value), known

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
            close = difflib.get_close_matches(str(name), self.known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(self.known)}"
            raise self.error(str(name), f"unknown key{hint}")


def one_of(allowed: tuple[str, ...], aliases: Mapping[str, str] | None = None) -> Callable[[Any], str]:
    def parse(value: Any) -> str:
        if value is None or isinstance(value, str):
            value = (aliases or {}).get(value, value)
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(map(str, allowed))}; got {value!r}")
        return value

    return parse


def integer(minimum: int | None = None) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else parse(value)


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"must be a string, got {value!r}")
    return value


def resolution_list(value: Any) -> tuple[int, ...]:
    values = value if isinstance(value, list) else [value]
    parsed = [integer(4)(item) for item in values]
    bad = [item for item in parsed if not is_power_of_two(item)]
    if bad or not parsed:
        raise ValueError(f"must be a non-empty list of powers of two >= 4, got {value!r}")
    if len(set(parsed)) != len(parsed):
        raise ValueError(f"lists a resolution twice: {value!r}")
    return tuple(sorted(parsed))


def colour(value: Any) -> tuple[int, int, int]:
    if isinstance(value, str) and re.fullmatch(r"#[0-9a-fA-F]{6}", value):
        return tuple(int(value[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value] * 3
    if isinstance(value, list) and len(value) == 3 and all(_is_byte(v) for v in value):
        return tuple(value)  # type: ignore[return-value]
    raise ValueError(f"must be [r, g, b] with integers in 0..255, one grey level, or '#rrggbb'; got {value!r}")


def _is_byte(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 255


def aspect_ratio(value: Any) -> tuple[int, int]:
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, int) and v > 0 for v in value):
        return (value[0], value[1])
    raise ValueError(f"must be [width, height] with positive integers, e.g. [4, 3]; got {value!r}")


def path_in(spec_dir: Path) -> Callable[[Any], Path]:
    """A path relative to the spec's folder (or absolute), with `~` and environment variables expanded."""
    return lambda value: _expand_path(value, spec_dir)


def _expand_path(value: Any, spec_dir: Path) -> Path:
    expanded = os.path.expanduser(os.path.expandvars(string(value)))
    unset = re.search(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", expanded)
    if unset:
        raise ValueError(f"environment variable {unset.group(1)} is not set (in {value!r})")
    path = Path(expanded)
    return path if path.is_absolute() else (spec_dir / path).resolve()


def scalar_or_list(value: Any) -> object:
    if isinstance(value, (Mapping, set)):
        raise ValueError(f"must be a number, string, boolean or list, got {value!r}")
    return value


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML silently keeps the last of two equal keys; a spec must not hide a typo that way."""


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
    """Safe YAML, with duplicate keys an error."""
    return yaml.load(text, Loader=_UniqueKeyLoader)


def cron_expression(value: Any) -> str:
    expression = string(value).strip()
    if expression in _CRON_MACROS:
        return expression
    parts = expression.split()
    if len(parts) != 5 or not all(_CRON_FIELD.match(part) for part in parts):
        raise ValueError(f"must be a 5-field cron expression like '0 3 * * 0' or one of {_CRON_MACROS}; got {value!r}")
    return expression


def names_from(allowed: tuple[str, ...]) -> Callable[[Any], tuple[str, ...]]:
    def parse(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not value or any(v not in allowed for v in value):
            raise ValueError(f"must be a non-empty list of this spec's configs ({', '.join(allowed)}); got {value!r}")
        return tuple(value)

    return parse


def subset_of(allowed: tuple[int, ...]) -> Callable[[Any], tuple[int, ...]]:
    def parse(value: Any) -> tuple[int, ...]:
        if not isinstance(value, list) or not value or any(v not in allowed for v in value):
            raise ValueError(f"must be a non-empty list of this spec's resolutions {list(allowed)}; got {value!r}")
        return tuple(sorted(value))

    return parse
