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


def _reshape(cls: type, data: dict[str, Any], to_wire: bool) -> dict[str, Any]:
    """Walk plain data by the model's types, turning dict[str, list[str]] into proto's StringList maps (to_wire)
    or back."""
    out: dict[str, Any] = {}
    for f, tp, _ in codec.model_fields(cls):
        val = data.get(f.name)
        if val is None:
            continue
        _, inner = codec.unwrap_optional(tp)
        if _is_string_list_map(inner):
            val = ({k: {"values": v} for k, v in val.items()} if to_wire
                   else {k: list(v.get("values", [])) for k, v in val.items()})
        elif dataclasses.is_dataclass(inner):
            val = _reshape(inner, val, to_wire)  # type: ignore[arg-type]
        elif get_origin(inner) is list and dataclasses.is_dataclass(get_args(inner)[0]):
            val = [_reshape(get_args(inner)[0], x, to_wire) for x in val]
        out[f.name] = val
    return out


def to_pb(obj: Any, message_type: type[Message]) -> Any:
    """Model object -> protobuf message of the given type."""
    data = _reshape(type(obj), codec.encode(obj), to_wire=True)
    return json_format.ParseDict(data, message_type())


def from_pb(cls: type[T], message: Message) -> T:
    """Protobuf message -> model object (unset fields take the model's defaults)."""
    data = json_format.MessageToDict(message, preserving_proto_field_name=True)
    return codec.decode(cls, _reshape(cls, data, to_wire=False))
