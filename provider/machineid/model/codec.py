"""Type-driven conversion between model dataclasses and plain data (YAML, JSON, protobuf JSON), and validation.

Decoding collects every problem as a FieldViolation with its path instead of stopping at the first, so a user
fixes a file in one go; unknown fields are errors with a "did you mean" hint.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import cache
from typing import Any, TypeVar, get_args, get_origin

from machineid.model.errors import FieldViolation, Path, ValidationError
from machineid.model.fields import FIELD_KEY, FieldSpec

T = TypeVar("T")


@cache
def type_hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


@cache
def model_fields(cls: Any) -> tuple[tuple[dataclasses.Field[Any], Any, FieldSpec | None], ...]:
    """(field, resolved type, FieldSpec or None) for each dataclass field, in declaration order; worked out once
    per class (the walkers below run on every request)."""
    hints = type_hints(cls)
    return tuple((f, hints[f.name], f.metadata.get(FIELD_KEY)) for f in dataclasses.fields(cls))


def unwrap_optional(tp: Any) -> tuple[bool, Any]:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(get_args(tp)) == 2:
            return True, args[0]
    return False, tp


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is list:
        return "a list"
    if origin is dict:
        return "a map"
    if dataclasses.is_dataclass(tp):
        return "an object"
    if tp is datetime:
        return 'an RFC 3339 time like "2030-01-01T00:00:00Z"'
    return {str: "a string", int: "an integer", bool: "a boolean (true or false)"}.get(tp, str(tp))


def parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        dt = datetime.fromisoformat(value.strip())
    else:
        raise ValueError("not a time")
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def format_time(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


@dataclasses.dataclass(frozen=True)
class Shape:
    """What walking values of a type needs to know, worked out once per type (the hot paths see the same few)."""

    optional: bool
    tp: Any
    kind: str  # object | list | dict | time | bool | int | str | other
    item: Any = None  # list item type, or dict value type
    item_is_list: bool = False  # dict values that are lists (a single scalar is accepted for them)


@cache
def shape(tp: Any) -> Shape:
    optional, inner = unwrap_optional(tp)
    origin = get_origin(inner)
    if dataclasses.is_dataclass(inner):
        return Shape(optional, inner, "object")
    if origin is list:
        return Shape(optional, inner, "list", get_args(inner)[0])
    if origin is dict:
        val_tp = get_args(inner)[1]
        return Shape(optional, inner, "dict", val_tp, get_origin(val_tp) is list)
    if inner is datetime:
        return Shape(optional, inner, "time")
    kind = {bool: "bool", int: "int", str: "str"}.get(inner, "other")
    return Shape(optional, inner, kind)


@cache
def _object_fields(cls: Any) -> tuple[tuple[str, ...], frozenset[str], tuple[tuple[str, Any], ...]]:
    """(field names in order, the same as a set, (name, type) pairs) of a dataclass."""
    fields = model_fields(cls)
    names = tuple(f.name for f, _, _ in fields)
    return names, frozenset(names), tuple((f.name, tp) for f, tp, _ in fields)


def _decode(tp: Any, data: Any, path: Path, out: list[FieldViolation]) -> Any:
    sh = shape(tp)
    if data is None:
        if sh.optional:
            return None
        # An explicit null for a non-optional field means "the default": handled by the caller.
        raise _UseDefault
    kind = sh.kind
    if kind == "str":
        if isinstance(data, str):
            return data
        # YAML reads an unquoted 0755 as 493 and 012345678901 as a number without its zero: the string meant is
        # lost by then, so a number is refused, with the fix, rather than turned into a different name.
        if isinstance(data, int | float) and not isinstance(data, bool):
            out.append(FieldViolation(path, f"must be a string, got the number {data!r}; quote it (YAML reads "
                                            "unquoted digits as a number: 0755 becomes 493)"))
            raise _UseDefault
    elif kind == "object":
        if not isinstance(data, dict):
            out.append(FieldViolation(path, f"must be {_type_name(sh.tp)}, got {type(data).__name__}"))
            raise _UseDefault
        return _decode_object(typing.cast(type, sh.tp), data, path, out)
    elif kind == "list":
        if not isinstance(data, list | tuple):
            out.append(FieldViolation(path, f"must be a list, got {type(data).__name__}"))
            raise _UseDefault
        items = []
        for i, item in enumerate(data):
            try:
                items.append(_decode(sh.item, item, (*path, i), out))
            except _UseDefault:
                out.append(FieldViolation((*path, i), "must not be null"))
        return items
    elif kind == "dict":
        if not isinstance(data, dict):
            out.append(FieldViolation(path, f"must be a map, got {type(data).__name__}"))
            raise _UseDefault
        result = {}
        for k, val in data.items():
            # Teleport accepts a single value where a list is expected in label maps and traits.
            if sh.item_is_list and isinstance(val, str | int):
                val = [val]
            try:
                result[str(k)] = _decode(sh.item, val, (*path, str(k)), out)
            except _UseDefault:
                out.append(FieldViolation((*path, str(k)), "must not be null"))
        return result
    elif kind == "time":
        try:
            return parse_time(data)
        except ValueError:
            out.append(FieldViolation(path, f"must be {_type_name(sh.tp)}, got {data!r}"))
            raise _UseDefault from None
    elif kind == "bool":
        if isinstance(data, bool):
            return data
    elif kind == "int":
        if isinstance(data, int) and not isinstance(data, bool):
            return data
        if isinstance(data, float) and data.is_integer():
            return int(data)
        if isinstance(data, str) and data.strip().lstrip("-").isdigit():
            return int(data)
    out.append(FieldViolation(path, f"must be {_type_name(sh.tp)}, got {type(data).__name__} {data!r}"))
    raise _UseDefault


class _UseDefault(Exception):
    pass


def _decode_object(cls: type[T], data: dict[str, Any], path: Path, out: list[FieldViolation]) -> T:
    names, known, fields = _object_fields(typing.cast(Any, cls))
    for key in data:
        if key not in known:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f'; did you mean "{close[0]}"?' if close else f"; known fields: {', '.join(names)}"
            out.append(FieldViolation((*path, str(key)), f"unknown field{hint}"))
    kwargs = {}
    for name, tp in fields:
        if name in data:
            try:  # noqa: SIM105  (a plain try: contextlib.suppress costs on this hot path)
                kwargs[name] = _decode(tp, data[name], (*path, name), out)
            except _UseDefault:
                pass
    return cls(**kwargs)


def decode(cls: type[T], data: Any, path: Path = (), *, validate: bool = False) -> T:
    """Plain data -> model object; raises ValidationError listing every problem (types and unknown fields, and
    with validate the model's rules too, for what could be decoded)."""
    out: list[FieldViolation] = []
    if not isinstance(data, dict):
        raise ValidationError([FieldViolation(path, f"must be an object, got {type(data).__name__}")])
    obj = _decode_object(cls, data, path, out)
    if validate:
        out.extend(v for v in violations(obj, path) if v not in out and not any(o.path == v.path for o in out))
    if out:
        raise ValidationError(out)
    return obj


def decode_and_validate(cls: type[T], data: Any, path: Path = ()) -> T:
    return decode(cls, data, path, validate=True)


def encode(obj: Any, *, omit_empty: bool = False) -> Any:
    """Model object -> plain data (times as RFC 3339 strings). omit_empty drops zero values (for YAML output)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        result: dict[str, Any] = {}
        for name in _object_fields(type(obj))[0]:
            val = encode(getattr(obj, name), omit_empty=omit_empty)
            if omit_empty and val in (None, "", [], {}, 0, False):
                continue
            result[name] = val
        return result
    if isinstance(obj, list):
        return [encode(x, omit_empty=omit_empty) for x in obj]
    if isinstance(obj, dict):
        return {k: encode(x, omit_empty=omit_empty) for k, x in obj.items()}
    if isinstance(obj, datetime):
        return format_time(obj)
    return obj


# Bounds on every free-form value, so that no object (and no page of a list) grows without limit: a string (a
# description, a label value, a trait) and the entries of a list or a map.
MAX_TEXT = 4096
MAX_ENTRIES = 256


def size_violations(val: Any, path: Path, max_text: int = MAX_TEXT) -> Iterator[FieldViolation]:
    if isinstance(val, str):
        if len(val) > max_text:
            yield FieldViolation(path, f"is {len(val)} characters long; shorten it to at most {max_text}")
        return
    if isinstance(val, list | dict):
        if len(val) > MAX_ENTRIES:
            yield FieldViolation(path, f"has {len(val)} entries; at most {MAX_ENTRIES} are allowed (split the "
                                       "object, or use a wildcard or a trait template)")
            return
        items = val.items() if isinstance(val, dict) else enumerate(val)
        for key, item in items:
            if isinstance(key, str) and len(key) > MAX_TEXT:
                yield FieldViolation(path, f"has a key of {len(key)} characters; shorten it to at most {MAX_TEXT}")
            if not dataclasses.is_dataclass(item):
                yield from size_violations(item, (*path, key))


def violations(obj: Any, path: Path = ()) -> Iterator[FieldViolation]:
    """Every rule the model declares for obj: size bounds, required fields, field validators, then cross-field
    checks."""
    cls: Any = type(obj)
    for f, _tp, spec in model_fields(cls):
        val = getattr(obj, f.name)
        p = (*path, f.name)
        if spec is not None and not spec.computed:
            oversized = list(size_violations(val, p, spec.max_length or MAX_TEXT))
            if oversized:
                yield from oversized
                continue
            if spec.required and val in ("", None, [], {}):
                yield FieldViolation(p, "is required")
                continue
            if val not in ("", None):
                for validator in spec.validators:
                    found = validator.find(val)
                    if found:
                        yield FieldViolation((*p, *found[0]), found[1])
        if dataclasses.is_dataclass(val):
            yield from violations(val, p)
        elif isinstance(val, list):
            for i, item in enumerate(val):
                if dataclasses.is_dataclass(item):
                    yield from violations(item, (*p, i))
    check = getattr(obj, "check", None)
    if callable(check):
        for v in check():
            yield FieldViolation(path + v.path, v.reason)


def validate(obj: Any, path: Path = ()) -> None:
    problems = list(violations(obj, path))
    if problems:
        raise ValidationError(problems)
