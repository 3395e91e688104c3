"""Generated code is reproducible, the wire matches the model (a field is declared once), and our subset of the
Terraform/OpenTofu plugin protocol matches the upstream definitions field for field."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from google.protobuf.descriptor import Descriptor
from google.protobuf.descriptor_pb2 import FileDescriptorProto, FileDescriptorSet

from machineid.api.v1 import types_pb2
from machineid.model import codec, kinds
from machineid.model.resources import KINDS

ROOT = Path(__file__).resolve().parent.parent


def _assert_same_stubs(out: Path, committed: Path) -> None:
    names = sorted(p.name for p in out.glob("*_pb2*.py*"))
    assert names == sorted(p.name for p in committed.glob("*_pb2*.py*"))
    stale = [n for n in names if (out / n).read_text() != (committed / n).read_text()]
    assert not stale, f"stale generated files {stale}: run scripts/gen"


def test_protobuf_stubs_are_fresh(tmp_path: Path) -> None:
    out = tmp_path / "v1"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(ROOT / "proto"), str(out)],
                   check=True)
    _assert_same_stubs(out, ROOT / "provider" / "machineid" / "api" / "v1")


def test_terraform_protocol_stubs_are_fresh(tmp_path: Path) -> None:
    out = tmp_path / "terraform"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), str(ROOT / "proto"), str(tmp_path / "v1"),
                    str(out)], check=True)
    _assert_same_stubs(out, ROOT / "provider" / "machineid" / "terraform" / "proto")


# The upstream definitions our subsets must match on the wire, where the pinned OpenTofu and go-plugin sources were
# downloaded (toolchain: the Go module cache). Read here, never copied into the project.
_GOMODCACHE = Path(os.environ.get("GOMODCACHE") or Path.home() / "go" / "pkg" / "mod")
_TOFU_PROTOCOL = _GOMODCACHE / "github.com/opentofu/opentofu@v1.12.6/docs/plugin-protocol"
_UPSTREAM = {
    "tfplugin/tfplugin6.proto": _TOFU_PROTOCOL / "tfplugin6.10.proto",
    "tfplugin/tfplugin5.proto": _TOFU_PROTOCOL / "tfplugin5.10.proto",
    "goplugin/grpc_controller.proto":
        _GOMODCACHE / "github.com/hashicorp/go-plugin@v1.7.0/internal/plugin/grpc_controller.proto",
}


def _descriptor(include: Path, name: str, tmp_path: Path) -> FileDescriptorProto:
    from grpc_tools import protoc  # type: ignore[import-untyped]

    out = tmp_path / (name.replace("/", "_") + ".pb")
    args = ["protoc", f"-I{include}", f"-I{Path(protoc.__file__).parent / '_proto'}", f"--descriptor_set_out={out}",
            name]
    assert protoc.main(args) == 0
    return FileDescriptorSet.FromString(out.read_bytes()).file[0]


def _shape(fd: FileDescriptorProto) -> dict[str, Any]:
    """What the wire depends on: per message its fields (number, type, label, message type); enum values; RPCs."""
    shape: dict[str, Any] = {}

    def walk(msg: Any, prefix: str) -> None:
        name = prefix + msg.name
        shape[name] = {f.name: (f.number, f.type, f.label, f.type_name) for f in msg.field}
        for enum in msg.enum_type:
            shape[f"{name}.{enum.name}"] = {v.name: v.number for v in enum.value}
        for nested in msg.nested_type:
            walk(nested, name + ".")

    for msg in fd.message_type:
        walk(msg, "")
    for enum in fd.enum_type:
        shape[enum.name] = {v.name: v.number for v in enum.value}
    for service in fd.service:
        shape[f"service {service.name}"] = {
            m.name: (m.input_type, m.output_type, m.client_streaming, m.server_streaming) for m in service.method}
    return shape


@pytest.mark.parametrize("name", sorted(_UPSTREAM))
def test_terraform_protocol_subset_matches_upstream_on_the_wire(name: str, tmp_path: Path) -> None:
    upstream = _UPSTREAM[name]
    if not upstream.exists():
        pytest.skip(f"{upstream} is not downloaded (go mod download the pinned OpenTofu / go-plugin)")
    ours = _descriptor(ROOT / "proto", name, tmp_path)
    theirs = _descriptor(upstream.parent, upstream.name, tmp_path)
    assert ours.package == theirs.package
    mine, up = _shape(ours), _shape(theirs)
    problems = [f"{item}: not upstream" for item in mine.keys() - up.keys()]
    for item in mine.keys() & up.keys():
        problems += [f"{item}.{member}: {value} here, {up[item].get(member)} upstream"
                     for member, value in mine[item].items() if up[item].get(member) != value]
    assert not problems


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
    message = getattr(types_pb2, kinds.BY_NAME[kind].message)
    problems: list[str] = []
    _walk(cls, message.DESCRIPTOR, kind, problems)
    assert not problems
