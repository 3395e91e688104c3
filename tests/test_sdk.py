"""The generated Pulumi SDKs: the committed schema and SDKs match what `scripts/gen` produces, and each SDK builds
with its own toolchain (Node.js with its own tsc, Go with `go build`, Python with pip) from a temp copy, so the
repo is never written to. Tests skip only when a toolchain is absent; caches (npm, the Go module and build caches)
make repeated runs fast."""

from __future__ import annotations

import difflib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SDK = ROOT / "sdk"
CACHE = Path(os.environ.get("MACHINEID_CACHE", Path.home() / ".cache" / "machineid"))
TOOLS_BIN = Path(os.environ.get("MACHINEID_TOOLS_DIR", CACHE / "tools")) / "bin"
NPM_CACHE = CACHE / "npm"
# The engine the provider is tested against; the Node.js SDK is compiled against the same @pulumi/pulumi.
PULUMI_NODEJS_VERSION = "3.259.0"

# Build and cache artefacts that are never committed (mirrors the .gitignore files under sdk/).
IGNORED_DIRS = {"__pycache__", "node_modules", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
IGNORED_TREES = {("nodejs", "bin"), ("python", "build"), ("python", "dist")}


def _ignored(rel: Path) -> bool:
    parts = rel.parts
    if any(p in IGNORED_DIRS or p.endswith(".egg-info") for p in parts[:-1]):
        return True
    if len(parts) > 2 and parts[:2] in IGNORED_TREES:
        return True
    return rel.suffix == ".pyc"


def _tree(root: Path) -> dict[str, Path]:
    """Every file under root that belongs in the repo, by its POSIX path relative to root."""
    return {rel.as_posix(): p for p in root.rglob("*")
            if p.is_file() and not _ignored(rel := p.relative_to(root))}


def _run(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None,
         what: str = "") -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"{what or ' '.join(args)} failed ({proc.returncode}) in {cwd}:\n"
                             f"--- stdout\n{proc.stdout[-8000:]}\n--- stderr\n{proc.stderr[-8000:]}")
    return proc


def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"`{tool}` is not on PATH: {why}")
    return path


@pytest.mark.timeout(1800)  # the first run builds the pinned tools (Pulumi CLI, SDK generator): ~7 minutes
def test_schema_and_sdks_are_fresh(tmp_path: Path) -> None:
    if shutil.which("go") is None and not (TOOLS_BIN / "machineid-sdkgen").exists():
        pytest.skip("`go` is not on PATH and the SDK generator is not built: scripts/gen cannot run")
    out = tmp_path / "out"
    _run([str(ROOT / "scripts" / "gen"), str(out)], cwd=ROOT, timeout=1700, what="scripts/gen")
    generated, committed = _tree(out / "sdk"), _tree(SDK)
    missing = sorted(generated.keys() - committed.keys())
    extra = sorted(committed.keys() - generated.keys())
    stale = sorted(n for n in generated.keys() & committed.keys()
                   if generated[n].read_bytes() != committed[n].read_bytes())
    if missing or extra or stale:
        details = []
        for name in stale[:3]:
            diff = difflib.unified_diff(committed[name].read_text(errors="replace").splitlines(),
                                        generated[name].read_text(errors="replace").splitlines(),
                                        f"committed/sdk/{name}", f"generated/sdk/{name}", lineterm="", n=2)
            details.append("\n".join(list(diff)[:40]))
        raise AssertionError(
            "the committed schema/SDKs are out of date: run scripts/gen\n"
            f"  generated but not committed: {missing}\n  committed but not generated: {extra}\n"
            f"  differing: {stale}\n" + "\n".join(details))


@pytest.mark.timeout(900)
def test_nodejs_sdk_compiles(tmp_path: Path) -> None:
    _require("node", "cannot compile the Node.js SDK")
    npm = _require("npm", "cannot install the Node.js SDK's dependencies")
    npx = _require("npx", "cannot run the Node.js SDK's tsc")
    work = tmp_path / "nodejs"
    shutil.copytree(SDK / "nodejs", work, ignore=shutil.ignore_patterns("node_modules", "bin"))
    package = json.loads((work / "package.json").read_text())
    assert "@pulumi/pulumi" in package.get("dependencies", {}), package
    assert "typescript" in package.get("devDependencies", {}), package
    package["dependencies"]["@pulumi/pulumi"] = PULUMI_NODEJS_VERSION  # typescript: as package.json asks
    (work / "package.json").write_text(json.dumps(package, indent=4) + "\n")

    NPM_CACHE.mkdir(parents=True, exist_ok=True)
    env = {"npm_config_cache": str(NPM_CACHE), "npm_config_update_notifier": "false"}
    # --ignore-scripts: compiling needs no install scripts (protobufjs' postinstall only patches its own files).
    _run([npm, "install", "--no-audit", "--no-fund", "--prefer-offline", "--ignore-scripts"], cwd=work,
         timeout=840, env=env, what="npm install")
    installed = json.loads((work / "node_modules" / "@pulumi" / "pulumi" / "package.json").read_text())
    assert installed["version"] == PULUMI_NODEJS_VERSION
    assert (work / "node_modules" / ".bin" / "tsc").exists(), "the SDK's own typescript was not installed"

    # The resolved configuration (tsconfig.json has comments, so let tsc itself parse it).
    config = json.loads(_run([npx, "--no-install", "tsc", "-p", ".", "--showConfig"], cwd=work, timeout=120,
                             env=env, what="tsc --showConfig").stdout)
    out_dir = work / config["compilerOptions"].get("outDir", ".")
    proc = _run([npx, "--no-install", "tsc", "-p", "."], cwd=work, timeout=300, env=env, what="tsc -p .")
    assert not proc.stdout.strip(), f"tsc reported diagnostics:\n{proc.stdout}"
    assert (out_dir / "index.js").exists(), f"tsc wrote no {out_dir.name}/index.js"
    sources = [Path(f) for f in config.get("files", [])]
    assert sources, config
    not_emitted = [str(s) for s in sources
                   if not (out_dir / s.with_suffix(".js")).exists() or not (out_dir / s.with_suffix(".d.ts")).exists()]
    assert not not_emitted, f"tsc emitted no .js/.d.ts for {not_emitted}"


@pytest.mark.timeout(1800)  # the first run downloads and compiles the Pulumi Go SDK's dependencies
def test_go_sdk_builds(tmp_path: Path) -> None:
    go = _require("go", "cannot build the Go SDK")
    work = tmp_path / "machineid"
    shutil.copytree(SDK / "go" / "machineid", work)
    flags = f"{os.environ.get('GOFLAGS', '')} -mod=mod".strip()
    _run([go, "build", "./..."], cwd=work, timeout=1700, env={"GOFLAGS": flags, "GOTOOLCHAIN": "local"},
         what="go build ./...")


def test_python_sdk_installs_and_imports(tmp_path: Path) -> None:
    # Install from a copy: pip builds in the source tree, which would leave build/ and egg-info in the repo.
    src, target = tmp_path / "src", tmp_path / "site"
    shutil.copytree(SDK / "python", src, ignore=shutil.ignore_patterns("*.egg-info", "build", "dist", "__pycache__"))
    # --no-build-isolation: build with the venv's setuptools, no index needed; --no-deps: pulumi, parver and semver
    # come from the project venv.
    _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
          "--no-build-isolation", "--target", str(target), str(src)], cwd=tmp_path, timeout=240,
         what="pip install sdk/python")
    probe = textwrap.dedent("""
        import json, pathlib, sys
        import pulumi_machineid as m
        import pulumi_machineid.config
        names = ["Bot", "Role", "ProvisionToken", "Provider", "get_cluster_info", "render_agent_config"]
        pkg = pathlib.Path(m.__file__).parent
        print(json.dumps({
            "file": m.__file__,
            "missing": [n for n in names if not hasattr(m, n)],
            "plugin": json.loads((pkg / "pulumi-plugin.json").read_text()),
            "typed": (pkg / "py.typed").exists(),
        }))
    """)
    # -W error: importing the generated code must not warn (deprecated pulumi APIs and the like).
    proc = _run([sys.executable, "-W", "error", "-c", probe], cwd=tmp_path, timeout=120,
                env={"PYTHONPATH": str(target)}, what="import pulumi_machineid")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).resolve().is_relative_to(target.resolve()), \
        f"imported {result['file']}, not the pip-installed copy"
    assert result["missing"] == [], result
    committed_plugin = json.loads((SDK / "python" / "pulumi_machineid" / "pulumi-plugin.json").read_text())
    assert result["plugin"] == committed_plugin, result
    assert result["typed"], "py.typed is not installed"
