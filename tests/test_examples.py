"""Every Python example is a complete Pulumi project: its requirements install into a fresh virtualenv (as the
Python language host does on `pulumi up`, from the runtime block's virtualenv option) and its program's imports
resolve there."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
PYTHON_EXAMPLES = sorted(p.parent for p in (ROOT / "examples").glob("*/Pulumi.yaml") if (p.parent / "__main__.py")
                         .exists())


@pytest.mark.parametrize("example", PYTHON_EXAMPLES, ids=lambda p: p.name)
def test_a_python_example_installs_and_imports_in_a_fresh_virtualenv(example: Path, tmp_path: Path) -> None:
    settings = yaml.safe_load((example / "Pulumi.yaml").read_text())
    runtime = settings["runtime"]
    assert isinstance(runtime, dict) and runtime["name"] == "python", "runtime needs its options block"
    assert runtime["options"]["virtualenv"] and runtime["options"].get("toolchain", "pip") == "pip"
    requirements = (example / "requirements.txt").read_text()
    assert "pulumi==" in requirements and "../../sdk/python" in requirements
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    install = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                              "-r", "requirements.txt"], cwd=example, capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    program = (example / "__main__.py").read_text()
    modules = sorted({alias.name for node in ast.walk(ast.parse(program)) if isinstance(node, ast.Import)
                      for alias in node.names}
                     | {node.module for node in ast.walk(ast.parse(program))
                        if isinstance(node, ast.ImportFrom) and node.module and not node.level})
    assert "pulumi_machineid" in modules
    check = subprocess.run([str(venv / "bin" / "python"), "-c", "; ".join(f"import {m}" for m in modules)],
                           cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stderr
    leftovers = [p for p in example.iterdir() if p.name in ("venv", "build") or p.name.endswith(".egg-info")]
    assert not leftovers, f"installing left {leftovers} in the example"
