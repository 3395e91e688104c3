"""A node's setup rendered from its join settings: cloud-init user data and the same steps as a shell script.

Pure (the same inputs always render the same text), so a plan shows them before apply. Both render one list of
steps, so they cannot disagree: write the join token to a root-only file (token method), write the systemd unit,
install machineid, run `machineid node setup ... --join` (which writes the helper, the sshd drop-in and the
agent's config, joins once and reloads sshd), then enable `machineid node start` as a service. The token is
passed to `node setup` as the path of that file, never on a command line (which other users of the machine can
read in the process table).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any

import yaml

from machineid import __version__
from machineid.iac.settings import default_install_command
from machineid.node.layout import Layout

SERVICE = "machineid-node.service"
_LAYOUT = Layout()
TOKEN_FILE = str(_LAYOUT.etc / "join-token")
UNIT_FILE = str(_LAYOUT.systemd_unit)
_TOKEN_END = "MACHINEID_JOIN_TOKEN"
_UNIT_END = "MACHINEID_UNIT"


@dataclass
class NodeSetupArgs:
    name: str
    auth_server: str
    ca_pins: list[str] = field(default_factory=list)
    join_method: str = "token"
    token: str = ""  # the token itself (token method), or an iam/bound_keypair token's name; "" when not known
    install_command: str = ""
    package_index: str = ""
    run_as: str = "nobody"
    agent_path: str = "/usr/local/bin/machineid"


@dataclass(frozen=True)
class Rendered:
    user_data: str
    setup_script: str


def setup_argv(a: NodeSetupArgs) -> list[str]:
    """The `machineid node setup` command line (design contract 4): one --ca-pin per pin (two during a CA
    rotation); the token method's token as the file that holds it."""
    token = TOKEN_FILE if a.join_method == "token" else a.token
    argv = [a.agent_path, "node", "setup", "--auth-server", a.auth_server]
    for pin in a.ca_pins:
        argv += ["--ca-pin", pin]
    return [*argv, "--name", a.name, "--join-method", a.join_method, "--token", token, "--run-as", a.run_as,
            "--join"]


def systemd_unit(a: NodeSetupArgs) -> str:
    """Runs the node agent as root (it writes root-owned files and signals sshd), restarted when it fails."""
    return ("[Unit]\n"
            f"Description=machineid node agent (node {a.name})\n"
            "After=network-online.target\n"
            "Wants=network-online.target\n\n"
            "[Service]\n"
            "Type=simple\n"
            f"ExecStart={shlex.join([a.agent_path, 'node', 'start'])}\n"
            "Restart=on-failure\n"
            "RestartSec=5\n\n"
            "[Install]\n"
            "WantedBy=multi-user.target\n")


def _missing_token(a: NodeSetupArgs) -> str:
    """An imported node's single-use token is not known to the provider: the setup stops with the fix instead of
    failing at the join with no hint."""
    if a.token or a.join_method != "token":
        return ""
    return ("machineid: no join token: this node was imported and its single-use token is not known to the provider; "
            "set token_rotation (Pulumi: tokenRotation) to issue one")


def commands(a: NodeSetupArgs) -> list[str]:
    """The shell commands of the setup, in order, after the files are written."""
    install = a.install_command or default_install_command(a.package_index, a.agent_path)
    return [install, shlex.join(setup_argv(a)), "systemctl daemon-reload", f"systemctl enable --now {SERVICE}"]


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, so the user data reads as written."""


def _str(dumper: yaml.SafeDumper, value: str) -> Any:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def user_data(a: NodeSetupArgs) -> str:
    files: list[dict[str, Any]] = []
    if a.join_method == "token" and a.token:
        files.append({"path": TOKEN_FILE, "owner": "root:root", "permissions": "0600", "content": a.token + "\n"})
    files.append({"path": UNIT_FILE, "owner": "root:root", "permissions": "0644", "content": systemd_unit(a)})
    missing = _missing_token(a)
    # runcmd is one sh script, a line per entry: stop at the first command that fails.
    run = ["set -e", *([f"echo {shlex.quote(missing)} >&2; exit 1"] if missing else []), *commands(a)]
    body = yaml.dump({"write_files": files, "runcmd": run}, Dumper=_Dumper, sort_keys=False, width=1000)
    header = f"#cloud-config\n# machineid {__version__}: node {a.name} joins {a.auth_server} and enforces its labels.\n"
    if missing:
        header += "# " + missing + "\n"
    return header + body


def setup_script(a: NodeSetupArgs) -> str:
    missing = _missing_token(a)
    lines = ["#!/bin/sh",
             f"# machineid {__version__}: sets up node {a.name} (joins {a.auth_server}, enforces its labels, starts "
             f"{SERVICE}).",
             "# Run once, as root." + (" It holds the node's join token: keep it secret." if a.join_method == "token"
                                       else ""),
             "set -e"]
    if missing:
        lines.append(f"echo {shlex.quote(missing)} >&2; exit 1")
    if a.join_method == "token" and a.token:
        # The directory as sshd's checks want it (root, 0755: the helper reads the state file beside the token);
        # the token root-only from its first byte.
        lines += [f"install -d -m 0755 {shlex.quote(str(_LAYOUT.etc))}",
                  f"(umask 077 && cat > {shlex.quote(TOKEN_FILE)}) <<'{_TOKEN_END}'", a.token, _TOKEN_END]
    lines += [f"install -d -m 0755 {shlex.quote(str(_LAYOUT.systemd_unit.parent))}",
              f"cat > {shlex.quote(UNIT_FILE)} <<'{_UNIT_END}'", systemd_unit(a).rstrip("\n"), _UNIT_END,
              *commands(a)]
    return "\n".join(lines) + "\n"


def render(a: NodeSetupArgs) -> Rendered:
    return Rendered(user_data(a), setup_script(a))
