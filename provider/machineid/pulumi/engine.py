"""Drive the real Pulumi engine for the bundled examples: the main job and the end-to-end tests use it.

Python programs run as Automation API inline programs that execute the example's own `__main__.py` (the Python
language host is not published as a Go module, so `pulumi up` of a `runtime: python` project cannot run on these
machines; on a user's machine it can). YAML programs run with the plain `pulumi` CLI and the YAML language host.
Every run uses a private PULUMI_HOME, the local file backend and a passphrase secrets provider.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from machineid import __version__

PASSPHRASE = "machineid-local-passphrase"


@dataclass
class Engine:
    tools_bin: Path  # holds pulumi and pulumi-language-yaml (scripts/install-tools)
    home: Path  # PULUMI_HOME, and the file backend under it
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        (self.home / "state").mkdir(exist_ok=True)
        # Install this checkout's plugin into the private plugin cache, as `pulumi plugin install` would, so the
        # engine uses exactly it (and does not warn about a plugin picked up from $PATH).
        plugin_dir = self.home / "plugins" / f"resource-machineid-v{__version__}"
        plugin_dir.mkdir(parents=True, exist_ok=True)
        link = plugin_dir / "pulumi-resource-machineid"
        target = Path(sys.executable).parent / "pulumi-resource-machineid"
        if not link.is_symlink() or link.readlink() != target:
            link.unlink(missing_ok=True)
            link.symlink_to(target)

    @property
    def backend_url(self) -> str:
        return f"file://{self.home / 'state'}"

    def environ(self) -> dict[str, str]:
        venv_bin = str(Path(sys.executable).parent)  # pulumi-resource-machineid lives beside this Python
        path = os.pathsep.join([str(self.tools_bin), venv_bin, os.environ.get("PATH", "")])
        return {
            **os.environ,
            "PATH": path,
            "PULUMI_HOME": str(self.home),
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DIY_BACKEND_NO_LEGACY_WARNING": "true",
            "PULUMI_IGNORE_AMBIENT_PLUGINS": "true",
            **self.env,
        }

    # ---------------------------------------------------------------- Python programs (Automation API)
    def python_stack(self, example: Path, stack: str, config: dict[str, str] | None = None) -> auto.Stack:
        """The example's own __main__.py, run as an inline program with its Pulumi.yaml's project settings.

        The workspace (stack config files) lives under PULUMI_HOME, so the example's directory stays untouched.
        """
        settings = yaml.safe_load((example / "Pulumi.yaml").read_text())
        main = example / "__main__.py"

        def program() -> None:
            runpy.run_path(str(main), run_name="__main__")

        work = self.home / "work" / settings["name"]
        work.mkdir(parents=True, exist_ok=True)
        return self.inline_stack(settings["name"], stack, program, work, config, settings.get("description"))

    def inline_stack(self, project: str, stack: str, program: Callable[[], None], work_dir: Path,
                     config: dict[str, str] | None = None, description: str | None = None) -> auto.Stack:
        env = self.environ()
        for key in ("PATH", "PULUMI_HOME", "PULUMI_CONFIG_PASSPHRASE", *self.env):
            os.environ[key] = env[key]  # the inline program and its default provider read these
        opts = auto.LocalWorkspaceOptions(
            work_dir=str(work_dir),
            pulumi_home=str(self.home),
            env_vars={k: v for k, v in env.items() if k.startswith(("PULUMI_", "MACHINEID_", "PATH"))},
            project_settings=auto.ProjectSettings(
                name=project, runtime="python", description=description,
                backend=auto.ProjectBackend(url=self.backend_url),
            ),
            secrets_provider="passphrase",
            pulumi_command=auto.PulumiCommand(root=str(self.tools_bin.parent), skip_version_check=True),
        )
        st = auto.create_or_select_stack(stack_name=stack, project_name=project, program=program, opts=opts)
        for key, value in (config or {}).items():
            st.set_config(key, auto.ConfigValue(value))
        return st

    # ---------------------------------------------------------------- the plain CLI (YAML programs and more)
    def cli(self, *args: str, cwd: Path, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(self.tools_bin / "pulumi"), *args, "--non-interactive"], cwd=cwd,
                              env=self.environ(), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"pulumi {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def yaml_stack(self, project: Path, stack: str, config: dict[str, str] | None = None) -> None:
        if self.cli("stack", "select", stack, cwd=project, check=False).returncode != 0:
            self.cli("stack", "init", stack, "--secrets-provider", "passphrase", cwd=project)
        for key, value in (config or {}).items():
            self.cli("config", "set", key, value, cwd=project)


def outputs_plain(outputs: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v.value for k, v in outputs.items()}
