"""Drives a real `tofu` or `terraform` in a working directory, as a user would (used by the tests, the quickstart
and the benchmark): the provider is installed into a private plugin mirror, so a plain `init` finds it."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from machineid.terraform import install


@dataclass
class Workspace:
    cli: Path  # the tofu or terraform executable
    directory: Path
    home: Path  # HOME for the CLI: its ~/.terraform.d/plugins holds the provider
    env: dict[str, str] = field(default_factory=dict)
    timeout: float = 300

    @classmethod
    def create(cls, cli: Path, directory: Path, home: Path, env: dict[str, str] | None = None) -> Workspace:
        directory.mkdir(parents=True, exist_ok=True)
        if not (home / ".terraform.d" / "plugins").is_dir():
            install.install(home / ".terraform.d" / "plugins")
        return cls(cli, directory, home, dict(env or {}))

    @property
    def name(self) -> str:
        return self.cli.name

    def write(self, text: str, filename: str = "main.tf") -> None:
        (self.directory / filename).write_text(text)

    def run(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
            ) -> subprocess.CompletedProcess[str]:
        full = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "MACHINEID_"))}
        full.update({"HOME": str(self.home), "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1",
                     "TF_INPUT": "0", **self.env, **(env or {})})
        proc = subprocess.run([str(self.cli), *args], cwd=self.directory, env=full, capture_output=True,
                              text=True, timeout=self.timeout, stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise AssertionError(f"{self.name} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n"
                                 f"{proc.stderr}")
        return proc

    def init(self) -> subprocess.CompletedProcess[str]:
        return self.run("init", "-no-color")

    def apply(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
              ) -> subprocess.CompletedProcess[str]:
        return self.run("apply", "-auto-approve", "-no-color", *args, check=check, env=env)

    def plan(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`plan -detailed-exitcode`: returncode 0 means no changes, 2 changes, 1 an error."""
        return self.run("plan", "-detailed-exitcode", "-no-color", *args, check=False)

    def destroy(self) -> subprocess.CompletedProcess[str]:
        return self.run("destroy", "-auto-approve", "-no-color")

    def outputs(self) -> dict[str, object]:
        import json

        raw = json.loads(self.run("output", "-json").stdout)
        return {k: v["value"] for k, v in raw.items()}
