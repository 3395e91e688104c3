"""Install the provider into Pulumi's plugin cache, laid out as `pulumi plugin install` lays out a plugin, so the
engine finds `pulumi-resource-machineid` there rather than on $PATH (which it uses, but warns about, every run).

The cache is $PULUMI_HOME/plugins (else ~/.pulumi/plugins). A plugin is the directory resource-machineid-v<version>
holding an executable pulumi-resource-machineid; the engine skips a directory while resource-machineid-v<version>
.partial exists, and installers serialise on an flock of resource-machineid-v<version>.lock (Pulumi 3.259,
pkg/pluginstorage/download.go). The executable is a small script that runs this installation's interpreter, so the
plugin is the installed package itself, whatever $PATH holds.
"""

from __future__ import annotations

import fcntl
import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from machineid import __version__
from machineid.launch import script

KIND, NAME = "resource", "machineid"
EXECUTABLE = f"pulumi-{KIND}-{NAME}"


def default_home() -> Path:
    """Where the `pulumi` CLI keeps its plugins when run from this environment."""
    return Path(os.environ.get("PULUMI_HOME") or Path.home() / ".pulumi")


def plugin_dir(home: Path, version: str = __version__) -> Path:
    return home / "plugins" / f"{KIND}-{NAME}-v{version}"


def launcher(python: str = sys.executable) -> str:
    """The plugin executable: this interpreter with the launcher, which has a warm fork server serve the engine
    (see machineid.launch); the engine starts the plugin once or more per command."""
    return script.text("pulumi", f"{EXECUTABLE} {__version__}: installed by `machineid pulumi install`", python)


@dataclass(frozen=True)
class Installed:
    home: Path
    executable: Path
    version: str
    changed: bool  # False: the same plugin was already installed


def install(home: Path | None = None, python: str = sys.executable) -> Installed:
    """Install (or replace) this package's plugin in HOME/plugins; a no-op when it is already there as is."""
    home = home or default_home()
    final = plugin_dir(home)
    final.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    exe = final / EXECUTABLE
    partial = final.with_name(final.name + ".partial")
    text = launcher(python)
    fd = os.open(final.with_name(final.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # the lock `pulumi plugin install` takes (Go's lockedfile: flock)
        if _installed_as(final, text):
            return Installed(home, exe, __version__, changed=False)
        # As Pulumi does: mark the directory partial before touching it, so no engine runs a half-written plugin.
        partial.write_bytes(b"")
        if final.is_symlink():
            final.unlink()
        elif final.exists():
            shutil.rmtree(final)
        final.mkdir(mode=0o700)
        tmp = exe.with_name(exe.name + ".tmp")
        tmp.write_text(text)
        tmp.chmod(0o700)
        tmp.replace(exe)
        partial.unlink()
        return Installed(home, exe, __version__, changed=True)
    finally:
        os.close(fd)  # releases the flock


def _installed_as(final: Path, text: str) -> bool:
    """Complete (no .partial), a real directory and executable (not the symlinks of older test homes), and the
    launcher this installation would write."""
    exe = final / EXECUTABLE
    if final.with_name(final.name + ".partial").exists() or final.is_symlink() or exe.is_symlink():
        return False
    return exe.is_file() and exe.read_text(errors="replace") == text


def usage_hint(installed: Installed, path: str | None = None) -> str:
    """What was done, how to check it, and the one case where the engine still would not use it."""
    verb = "installed" if installed.changed else "already installed:"
    home = "" if installed.home == default_home() else f"PULUMI_HOME={shlex.quote(str(installed.home))} "
    out = (f"{verb} the Pulumi resource plugin machineid {installed.version}\n  {installed.executable}\n\n"
           f"Check it with `{home}pulumi plugin ls`: it lists `{NAME}  {KIND}  {installed.version}`.\n")
    ambient = shutil.which(EXECUTABLE, path=path)
    if ambient:
        out += (f"\nNote: {EXECUTABLE} is also on your PATH:\n  {ambient}\n"
                "The engine prefers $PATH to its plugin cache, and warns `using pulumi-resource-machineid from\n"
                "$PATH` on every run; set PULUMI_IGNORE_AMBIENT_PLUGINS=true, or run `pulumi` without that\n"
                "directory on PATH.\n")
    return out
