"""Terraform values: cty's msgpack (or JSON) DynamicValues <-> the core's plain values, shaped by a schema.

Unknowns (msgpack extension 0, and OpenTofu's refined unknowns, extension 12) decode to the core's UNKNOWN.
Objects going out carry every attribute and block of their schema: the CLIs refuse an object with one missing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import msgpack

from machineid.iac.unknown import UNKNOWN
from machineid.model import codec
from machineid.terraform.schema import Block

_UNKNOWN_EXT = msgpack.ExtType(0, b"\x00")


def _ext(code: int, data: bytes) -> Any:
    return UNKNOWN  # every extension cty defines stands for an unknown value (refined or not)


def decode(msgpack_bytes: bytes, json_bytes: bytes = b"") -> Any:
    if msgpack_bytes:
        return msgpack.unpackb(msgpack_bytes, ext_hook=_ext, raw=False, strict_map_key=False)
    if json_bytes:
        return json.loads(json_bytes)
    return None


def _default(value: Any) -> Any:
    if value is UNKNOWN:
        return _UNKNOWN_EXT
    raise TypeError(f"cannot encode {type(value).__name__} as a Terraform value")


def encode(value: Any) -> bytes:
    return msgpack.packb(value, default=_default, use_bin_type=True)


def complete(block: Block, value: Any) -> Any:
    """The value with every attribute and block of the schema present (null, or an empty list of blocks)."""
    if value is None or value is UNKNOWN:
        return value
    out: dict[str, Any] = {}
    for a in block.attributes:
        out[a.name] = value.get(a.name)
    for b in block.blocks:
        v = value.get(b.name)
        if b.nesting == "group" and v is None:
            out[b.name] = complete(b.block, codec.encode(b.tp()))  # never null: its defaults
        elif b.is_object:
            out[b.name] = complete(b.block, v)
        elif v is UNKNOWN:
            out[b.name] = v
        else:
            out[b.name] = [complete(b.block, x) for x in (v or [])]
    return out


def planned(block: Block, config: Any, normalized: Any) -> Any:
    """What the plan says an object will be: the configuration where it sets a value (a planned value must equal
    a non-null configured one), else the core's completed value (the model's default), and no single block the
    configuration leaves out (a group block left out: its defaults)."""
    if config is None or config is UNKNOWN:
        return config
    norm = normalized if isinstance(normalized, dict) else {}
    out: dict[str, Any] = {}
    for a in block.attributes:
        c = config.get(a.name)
        out[a.name] = c if c is not None else norm.get(a.name)
    for b in block.blocks:
        c = config.get(b.name)
        n = norm.get(b.name)
        if b.nesting == "group":
            out[b.name] = planned(b.block, {} if c is None else c, n)  # left out: the defaults, planned
        elif b.is_object:
            out[b.name] = planned(b.block, c, n)
        elif c is UNKNOWN:
            out[b.name] = c
        else:
            items = n if isinstance(n, list) else []
            out[b.name] = [planned(b.block, x, items[i] if i < len(items) else None) for i, x in enumerate(c or [])]
    return out


def stated(block: Block, value: Any, ref: Any) -> Any:
    """The cluster's object in the shape the state had (ref: the plan, or the prior state; None on import): a
    single block the state leaves out stays out while the cluster holds its default (a group block is always
    there), and a time that names the same instant keeps the state's spelling. A real difference shows, so drift
    is never hidden."""
    if value is None:
        return None
    r = ref if isinstance(ref, dict) else {}
    out: dict[str, Any] = {}
    for a in block.attributes:
        v = value.get(a.name)
        old = r.get(a.name)
        if isinstance(v, str) and isinstance(old, str) and v != old and codec.shape(a.tp).tp is datetime:
            try:
                if codec.parse_time(v) == codec.parse_time(old):
                    v = old
            except ValueError:
                pass
        out[a.name] = v
    for b in block.blocks:
        v = value.get(b.name)
        old = r.get(b.name)
        if b.nesting == "group":
            out[b.name] = stated(b.block, v if v is not None else codec.encode(b.tp()), old)
        elif b.is_object:
            if old is None and (v is None or v == codec.encode(b.tp())):
                out[b.name] = None
            else:
                out[b.name] = stated(b.block, v if v is not None else codec.encode(b.tp()), old)
        else:
            olds = old if isinstance(old, list) else []
            out[b.name] = [stated(b.block, x, olds[i] if i < len(olds) else None) for i, x in enumerate(v or [])]
    return out
