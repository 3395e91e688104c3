"""Building a benchmark's Go baseline provider once: `go build` of a directory under benchmarks/ into
~/.cache/machineid/bench/bin, again only when its go.mod, go.sum or main.go change."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from pathlib import Path

CACHE = Path(os.environ.get("MACHINEID_CACHE", Path.home() / ".cache/machineid")) / "bench"
FILES = ("go.mod", "go.sum", "main.go")


def build(src_dir: Path, binary_name: str) -> Path:
    digest = hashlib.sha256(b"".join((src_dir / f).read_bytes() for f in FILES)).hexdigest()[:16]
    binary = CACHE / "bin" / binary_name
    stamp = CACHE / f"{binary_name}.version"
    if binary.exists() and stamp.exists() and stamp.read_text().strip() == digest:
        return binary
    work = CACHE / "src" / binary_name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for f in FILES:
        shutil.copy(src_dir / f, work / f)  # build outside the repo: go may touch go.sum
    binary.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"}
    print(f"building the Go baseline provider into {binary} (about 1-2 minutes the first time)", flush=True)
    t0 = time.monotonic()
    proc = subprocess.run(["go", "build", "-o", str(binary), "."], cwd=work, env=env, capture_output=True, text=True,
                          timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"go build failed:\n{proc.stdout}\n{proc.stderr}")
    stamp.write_text(digest + "\n")
    print(f"  built in {time.monotonic() - t0:.0f}s", flush=True)
    return binary
