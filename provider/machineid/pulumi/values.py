"""Pulumi wire values: google.protobuf.Struct with two sentinels, secrets and unknowns.

Decoding unwraps secrets (remembering which top-level properties were secret) and turns the unknown sentinel
into UNKNOWN; encoding wraps the properties that must stay secret.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from typing import Any

from google.protobuf import struct_pb2

from machineid.iac.unknown import UNKNOWN, contains_unknown

__all__ = ["UNKNOWN", "contains_unknown", "decode", "encode", "secret"]

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
OUTPUT_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
UNKNOWN_STR = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _decode(value: Any, secret: list[bool]) -> Any:
    if isinstance(value, dict):
        sig = value.get(SIG_KEY)
        if sig == SECRET_SIG:
            secret[0] = True
            return _decode(value.get("value"), secret)
        if sig == OUTPUT_SIG:
            if value.get("secret"):
                secret[0] = True
            return _decode(value["value"], secret) if "value" in value else UNKNOWN
        return {k: _decode(v, secret) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v, secret) for v in value]
    if value == UNKNOWN_STR:
        return UNKNOWN
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _plain(value: struct_pb2.Value) -> Any:
    """A Struct value as plain Python, walked directly (json_format is several times slower, per call)."""
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {k: _plain(v) for k, v in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_plain(v) for v in value.list_value.values]
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        return value.number_value
    if kind == "bool_value":
        return value.bool_value
    return None


def decode(struct: struct_pb2.Struct | None) -> tuple[dict[str, Any], set[str]]:
    """Struct -> (plain properties, names of the top-level properties that were secret)."""
    if struct is None:
        return {}, set()
    raw = {k: _plain(v) for k, v in struct.fields.items()}
    props: dict[str, Any] = {}
    secrets: set[str] = set()
    for key, value in raw.items():
        flag = [False]
        props[key] = _decode(value, flag)
        if flag[0]:
            secrets.add(key)
    return props, secrets


def _encode(value: Any) -> Any:
    if value is UNKNOWN:
        return UNKNOWN_STR
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def secret(value: Any) -> dict[str, Any]:
    return {SIG_KEY: SECRET_SIG, "value": value}


def encode(props: dict[str, Any], secrets: AbstractSet[str] = frozenset()) -> struct_pb2.Struct:
    data = {}
    for key, value in props.items():
        if value is None:
            continue
        enc = _encode(value)
        data[key] = secret(enc) if key in secrets and value is not UNKNOWN else enc
    struct = struct_pb2.Struct()
    struct.update(data)
    return struct
