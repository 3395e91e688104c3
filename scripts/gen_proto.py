"""Generate the Python protobuf/gRPC stubs for proto/ into the package.

Two sets, each compiled into one package:
  proto/machineid/v1               -> machineid.api.v1 (the cluster API)
  proto/tfplugin, proto/goplugin   -> machineid.terraform.proto (the Terraform/OpenTofu plugin protocol subset)

protoc writes imports as `from machineid.v1 import x_pb2` (the proto directory); the stubs live in another package,
so the import lines are rewritten. Output is deterministic so that a test can regenerate and compare.

Usage: gen_proto.py PROTO_ROOT OUT_DIR [TERRAFORM_OUT_DIR]
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]

API_DIRS = ("machineid/v1",)
API_PACKAGE = "machineid.api.v1"
API_DOC = "Generated protobuf and gRPC stubs (scripts/gen); never edit by hand."
TERRAFORM_DIRS = ("tfplugin", "goplugin")
TERRAFORM_PACKAGE = "machineid.terraform.proto"
TERRAFORM_DOC = ("Generated protobuf and gRPC stubs of the Terraform/OpenTofu plugin protocol (scripts/gen); "
                 "never edit by hand.")


def generate(proto_root: str, dirs: tuple[str, ...], out_dir: str, package: str, doc: str) -> None:
    """Compile every .proto in `dirs` (relative to proto_root) into out_dir, importable as `package`."""
    root = Path(proto_root)
    out = Path(out_dir)
    files = sorted(str(p.relative_to(root)) for d in dirs for p in (root / d).glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as tmp:
        rc = protoc.main(
            ["protoc", f"-I{root}", f"-I{include}", f"--python_out={tmp}", f"--pyi_out={tmp}",
             f"--grpc_python_out={tmp}", *files]
        )
        if rc != 0:
            sys.exit(f"protoc failed with exit code {rc}")
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob("*_pb2*.py*"):
            old.unlink()
        for d in dirs:
            for src in sorted((Path(tmp) / d).iterdir()):
                text = src.read_text()
                for proto_dir in dirs:
                    module = re.escape(proto_dir.replace("/", "."))
                    text = re.sub(rf"^from {module} import", f"from {package} import", text, flags=re.M)
                (out / src.name).write_text(text)
    init = out / "__init__.py"
    if not init.exists():
        init.write_text(f'"""{doc}"""\n')


def main(proto_root: str, out_dir: str, terraform_out_dir: str | None = None) -> None:
    generate(proto_root, API_DIRS, out_dir, API_PACKAGE, API_DOC)
    if terraform_out_dir is not None:
        generate(proto_root, TERRAFORM_DIRS, terraform_out_dir, TERRAFORM_PACKAGE, TERRAFORM_DOC)


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    main(*sys.argv[1:])
