"""Model objects <-> protobuf messages, generically through their JSON forms.

The model and the proto share field names, so one walk over the model's types does every kind; the only shape
difference is proto's `map<string, StringList>` for the model's dict[str, list[str]].
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, get_args, get_origin

from google.protobuf import json_format
from google.protobuf.message import Message

from machineid.model import codec

T = TypeVar("T")


def _is_string_list_map(tp: Any) -> bool:
    if get_origin(tp) is not dict:
        return False
    _, val = get_args(tp)
    return get_origin(val) is list and get_args(val) == (str,)


def _to_wire(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f, tp, _ in codec.model_fields(cls):
        if f.name not in data or data[f.name] is None:
            continue
        val = data[f.name]
        _, inner = codec._is_optional(tp)
        if _is_string_list_map(inner):
            val = {k: {"values": v} for k, v in val.items()}
        elif dataclasses.is_dataclass(inner):
            val = _to_wire(inner, val)  # type: ignore[arg-type]
        elif get_origin(inner) is list and dataclasses.is_dataclass(get_args(inner)[0]):
            val = [_to_wire(get_args(inner)[0], x) for x in val]
        out[f.name] = val
    return out


def _from_wire(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f, tp, _ in codec.model_fields(cls):
        if f.name not in data:
            continue
        val = data[f.name]
        _, inner = codec._is_optional(tp)
        if _is_string_list_map(inner):
            val = {k: list(v.get("values", [])) for k, v in val.items()}
        elif dataclasses.is_dataclass(inner):
            val = _from_wire(inner, val)  # type: ignore[arg-type]
        elif get_origin(inner) is list and dataclasses.is_dataclass(get_args(inner)[0]):
            val = [_from_wire(get_args(inner)[0], x) for x in val]
        out[f.name] = val
    return out


def to_pb(obj: Any, message_type: type[Message]) -> Any:
    """Model object -> protobuf message of the given type."""
    data = _to_wire(type(obj), codec.encode(obj))
    return json_format.ParseDict(data, message_type())


def from_pb(cls: type[T], message: Message) -> T:
    """Protobuf message -> model object (unset fields take the model's defaults)."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return codec.decode(cls, _from_wire(cls, data))
