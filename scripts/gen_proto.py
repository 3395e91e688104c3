"""Generate the Python protobuf/gRPC stubs for proto/machineid/v1 into the package.

protoc writes imports as `from machineid.v1 import x_pb2`; the stubs live in `machineid.api.v1`, so the import
lines are rewritten. Output is deterministic so that a test can regenerate and compare.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc  # type: ignore[import-untyped]


def main(proto_root: str, out_dir: str) -> None:
    root = Path(proto_root)
    out = Path(out_dir)
    files = sorted(str(p.relative_to(root)) for p in (root / "machineid" / "v1").glob("*.proto"))
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
        for src in sorted((Path(tmp) / "machineid" / "v1").iterdir()):
            text = src.read_text()
            text = re.sub(r"^from machineid\.v1 import", "from machineid.api.v1 import", text, flags=re.M)
            (out / src.name).write_text(text)
    init = out / "__init__.py"
    if not init.exists():
        init.write_text('"""Generated protobuf and gRPC stubs (scripts/gen); never edit by hand."""\n')


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
