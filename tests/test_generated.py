"""Generated code is reproducible and the wire matches the model (a field is declared once)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from google.protobuf.descriptor import Descriptor

from machineid.api.v1 import types_pb2
from machineid.model import codec
from machineid.model.resources import KINDS

ROOT = Path(__file__).resolve().parent.parent


def test_protobuf_stubs_are_fresh(tmp_path: Path) -> None:
    out = tmp_path / "v1"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(ROOT / "proto"), str(out)],
                   check=True)
    committed = ROOT / "provider" / "machineid" / "api" / "v1"
    names = sorted(p.name for p in out.glob("*_pb2*.py*"))
    assert names == sorted(p.name for p in committed.glob("*_pb2*.py*"))
    stale = [n for n in names if (out / n).read_text() != (committed / n).read_text()]
    assert not stale, f"stale generated files {stale}: run scripts/gen"


def _walk(cls: Any, desc: Descriptor, path: str, problems: list[str]) -> None:
    model = {f.name: tp for f, tp, _ in codec.model_fields(cls)}
    wire = {f.name: f for f in desc.fields}
    for name in model.keys() - wire.keys():
        problems.append(f"{path}.{name}: in the model, not on the wire")
    for name in wire.keys() - model.keys():
        problems.append(f"{path}.{name}: on the wire, not in the model")
    for name in model.keys() & wire.keys():
        _, tp = codec.unwrap_optional(model[name])
        inner = get_args(tp)[0] if get_origin(tp) is list else tp
        if dataclasses.is_dataclass(inner):
            _walk(inner, wire[name].message_type, f"{path}.{name}", problems)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_model_and_proto_declare_the_same_fields(kind: str) -> None:
    cls = KINDS[kind]
    message = {"role": types_pb2.Role, "token": types_pb2.ProvisionToken, "bot": types_pb2.Bot,
               "user": types_pb2.User, "node": types_pb2.Node}[kind]
    problems: list[str] = []
    _walk(cls, message.DESCRIPTOR, kind, problems)
    assert not problems
