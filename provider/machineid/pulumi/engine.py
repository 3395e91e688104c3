"""Drive the real Pulumi engine for the bundled examples: the main job and the end-to-end tests use it.

Python programs run as Automation API inline programs that execute the example's own `__main__.py` (the Python
language host is not published as a Go module, so `pulumi up` of a `runtime: python` project cannot run on these
machines; on a user's machine it can). YAML programs run with the plain `pulumi` CLI and the YAML language host.
Every run uses a private PULUMI_HOME, the local file backend and a passphrase secrets provider. The home is 0700 and
its passphrase is random, generated once per home into HOME/passphrase (0600): the state holds join tokens, and a
passphrase fixed in the source would let anyone who can read the state decrypt them.
"""

from __future__ import annotations

import os
import runpy
import secrets
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pulumi import automation as auto

from machineid.pulumi import install

PASSPHRASE_FILE = "passphrase"  # in the home
# What every home used before the per-home passphrase: stacks encrypted with it only open with it.
LEGACY_PASSPHRASE = "machineid-local-passphrase"


def private_dir(path: Path) -> None:
    """Create a 0700 directory, or narrow an existing one: the state and the passphrase are for this user only."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if stat.S_IMODE(path.stat().st_mode) != 0o700:
        path.chmod(0o700)


def home_passphrase(home: Path) -> str:
    """The home's passphrase, from HOME/passphrase; generated (0600, from the first byte) when there is none.

    A home whose state predates the file was encrypted with LEGACY_PASSPHRASE, so that is what gets recorded: a new
    passphrase would lock its stacks. The 0700 home keeps other users out of that state all the same.
    """
    path = home / PASSPHRASE_FILE
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return _create_passphrase(path, LEGACY_PASSPHRASE if _has_stacks(home) else secrets.token_urlsafe(32))
    except OSError as e:
        raise RuntimeError(f"cannot read the Pulumi passphrase {path}: {e.strerror} (a symlink is refused)") from None
    with os.fdopen(fd) as f:
        if stat.S_IMODE(os.fstat(f.fileno()).st_mode) & 0o077:
            os.fchmod(f.fileno(), 0o600)
        phrase = f.read().rstrip("\n")
    if not phrase:
        raise RuntimeError(f"the Pulumi passphrase file {path} is empty; remove it only if the home holds no stacks "
                           "(their secrets need the passphrase they were encrypted with)")
    return phrase


def _create_passphrase(path: Path, phrase: str) -> str:
    """Write the whole file under a private name, then link it into place: a concurrent Engine on the same home
    never reads a half-written file, and the first one to link wins."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(phrase + "\n")
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            return home_passphrase(path.parent)
        return phrase
    finally:
        tmp.unlink(missing_ok=True)


def _has_stacks(home: Path) -> bool:
    stacks = home / "state" / ".pulumi" / "stacks"
    return stacks.is_dir() and any(p.is_file() for p in stacks.rglob("*"))


@dataclass
class Engine:
    tools_bin: Path  # holds pulumi and pulumi-language-yaml (scripts/install-tools)
    home: Path  # PULUMI_HOME, and the file backend under it
    env: dict[str, str] = field(default_factory=dict)

    passphrase: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        private_dir(self.home)
        private_dir(self.home / "state")
        self.passphrase = home_passphrase(self.home)
        # This checkout's plugin in the private plugin cache, as `machineid pulumi install` puts it, so the engine
        # uses exactly it (and does not warn about a plugin picked up from $PATH).
        install.install(self.home)

    @property
    def backend_url(self) -> str:
        return f"file://{self.home / 'state'}"

    def environ(self) -> dict[str, str]:
        """The engine's environment. The home's passphrase overrides one set in the caller's environment: the
        home's stacks are encrypted with the home's passphrase, and one meant for the caller's other stacks would
        lock them on the next run."""
        venv_bin = str(Path(sys.executable).parent)  # pulumi-resource-machineid lives beside this Python
        path = os.pathsep.join([str(self.tools_bin), venv_bin, os.environ.get("PATH", "")])
        return {
            **{k: v for k, v in os.environ.items() if k != "PULUMI_CONFIG_PASSPHRASE_FILE"},
            "PATH": path,
            "PULUMI_HOME": str(self.home),
            "PULUMI_BACKEND_URL": self.backend_url,
            "PULUMI_CONFIG_PASSPHRASE": self.passphrase,
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
        os.environ.pop("PULUMI_CONFIG_PASSPHRASE_FILE", None)  # the Automation API passes os.environ on too
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
