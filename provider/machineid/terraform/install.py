"""Make the plugin findable by `tofu init` / `terraform init` with no CLI configuration: an unpacked provider in
the implied local mirror (~/.terraform.d/plugins, which both CLIs search), for both registry hosts, since
`source = "machineid/machineid"` means registry.opentofu.org to OpenTofu and registry.terraform.io to Terraform.

init then installs it from there and writes the lock file (with an h1: hash of the package), exactly as it would
for a provider from a registry; no `dev_overrides`, no warning on every command."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

from machineid import __version__
from machineid.launch import script

HOSTS = ("registry.opentofu.org", "registry.terraform.io")
NAMESPACE = "machineid"
TYPE = "machineid"
SOURCE = f"{NAMESPACE}/{TYPE}"


def default_plugins_dir() -> Path:
    return Path(os.environ.get("HOME") or Path.home()) / ".terraform.d" / "plugins"


def target() -> str:
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"{platform.system().lower()}_{arch}"


def launcher(python: str = sys.executable) -> str:
    """The executable the CLIs run: this interpreter with the launcher (see machineid.launch.script)."""
    return script.text("terraform", f"terraform-provider-machineid {__version__}: installed by `machineid "
                                    "terraform install`", python)


@dataclass(frozen=True)
class Installed:
    paths: tuple[Path, ...]
    version: str


def install(plugins_dir: Path | None = None, python: str = sys.executable) -> Installed:
    root = plugins_dir or default_plugins_dir()
    text = launcher(python)
    paths = []
    for host in HOSTS:
        pkg = root / host / NAMESPACE / TYPE / __version__ / target()
        pkg.mkdir(parents=True, exist_ok=True)
        exe = pkg / f"terraform-provider-{TYPE}_v{__version__}"
        tmp = exe.with_name(exe.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o755)
        tmp.replace(exe)
        paths.append(exe)
    return Installed(tuple(paths), __version__)


def usage_hint(installed: Installed) -> str:
    return (f"installed terraform-provider-machineid {installed.version}:\n"
            + "".join(f"  {p}\n" for p in installed.paths)
            + "\nIn your configuration:\n\n"
              "  terraform {\n"
              "    required_providers {\n"
              f'      machineid = {{ source = "{SOURCE}", version = "{installed.version}" }}\n'
              "    }\n"
              "  }\n\n"
              "then `tofu init` (or `terraform init`) installs it and writes the lock file.\n")
