"""scripts/install-tools shares one cache between runs (tests, CI jobs, the quickstart): two runs at once must both
end with working tools. A stand-in `go` (it "builds" by sleeping and checks that its source directory still exists)
makes this take seconds instead of real builds."""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FAKE_GO = """#!/bin/bash
# go mod download -json MOD@VER | go build [flags] -o OUT PKG
case "$1" in
  mod)
    dir="$FAKE_MODCACHE/$(echo "$4" | tr '/@' '__')"
    mkdir -p "$dir/cmd"
    echo "{\\"Dir\\": \\"$dir\\"}" ;;
  build)
    out=""
    while [ $# -gt 0 ]; do [ "$1" = -o ] && out="$2"; shift; done
    sleep 1.5
    if ! ls "$PWD" >/dev/null 2>&1; then echo "fake go: the source directory vanished" >&2; exit 1; fi
    printf '#!/bin/sh\\necho fake\\n' > "$out"
    chmod +x "$out"
    echo "$out" >> "$FAKE_LOG" ;;
  *) exit 0 ;;
esac
"""


def test_two_runs_at_once_on_one_cache_both_succeed(tmp_path: Path) -> None:
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    go = bin_dir / "go"
    go.write_text(FAKE_GO)
    go.chmod(go.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MACHINEID_TOOLS_DIR": str(tmp_path / "tools"),
           "MACHINEID_TOOLS": "pulumi", "FAKE_MODCACHE": str(tmp_path / "modcache"),
           "FAKE_LOG": str(tmp_path / "builds.log")}
    script = str(ROOT / "scripts" / "install-tools")
    first = subprocess.Popen([script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.7)  # the first is building by now
    second = subprocess.Popen([script], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outs = [p.communicate(timeout=120) for p in (first, second)]
    for proc, (out, err) in zip((first, second), outs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip().splitlines()[-1] == str(tmp_path / "tools" / "bin")
    assert "waiting for it" in outs[1][1]
    for tool in ("pulumi", "pulumi-language-yaml", "machineid-sdkgen"):
        ran = subprocess.run([str(tmp_path / "tools" / "bin" / tool)], capture_output=True, text=True)
        assert ran.stdout == "fake\n"
    assert len((tmp_path / "builds.log").read_text().splitlines()) == 3  # each built once: the second run waited
    assert not list((tmp_path / "tools" / "src").iterdir())  # no build directory left behind
