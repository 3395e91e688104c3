"""Provider-only inputs and computed outputs: what a bot's agent is rendered with, and a token's lifetime.

The render settings are declared once (the field factories below) and shared by the Bot resource and the
render function/data source; their defaults are the agent's own (machineid.agent.config)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any
from urllib.parse import urlsplit

from machineid import __version__
from machineid.agent import config as agent
from machineid.model import validators as v
from machineid.model.errors import FieldViolation
from machineid.model.fields import attr
from machineid.model.resources import DEFAULT_TOKEN_TTL, NODE_JOIN_METHODS, NodeStatus, ProvisionTokenStatus

# Rendered into ssh_config, a systemd unit and YAML: absolute, and nothing those formats would read as syntax.
_PATH = [v.ABSOLUTE_PATH]


def destination_dir_field() -> Any:
    return attr(default=agent.DEFAULT_DESTINATION_DIR, doc="Where the agent writes the certificates.",
                validators=_PATH)


def data_dir_field() -> Any:
    return attr(default="", doc=f"Where the agent keeps its renewable identity. Default: "
                                f"{agent.default_data_dir('NAME')}.", validators=_PATH)


def config_path_field() -> Any:
    return attr(default="", doc=f"Where the rendered agent config is installed. Default: "
                                f"{agent.default_config_path('NAME')}.", validators=_PATH)


def certificate_ttl_field() -> Any:
    return attr(default=agent.DEFAULT_CERT_TTL, doc="Lifetime of the certificates the agent requests.",
                validators=[v.duration(min_seconds=60)])


def renewal_interval_field() -> Any:
    return attr(default=agent.DEFAULT_RENEWAL_INTERVAL, doc="How often the agent renews.",
                validators=[v.duration(min_seconds=1)])


def agent_path_field() -> Any:
    return attr(default=agent.DEFAULT_AGENT_PATH, doc="Path of the machineid executable on the machine (for the "
                                                      "systemd unit).", validators=_PATH)


@dataclass
class BotOnboarding:
    """Provider-only inputs of a Bot: its join token and how its agent is rendered."""

    token_ttl: str = attr(default=DEFAULT_TOKEN_TTL, doc="Lifetime of the bot's join token (the token is single "
                                                         "use).", validators=[v.duration(min_seconds=60)])
    token_name: str = attr(default="", secret=True,
                           doc="Join with this existing token (for example an iam or bound_keypair "
                               "ProvisionToken) instead of a new single-use one.")
    token_rotation: int = attr(default=0, doc="Change this number to issue a new join token (re-onboard the bot "
                                              "without deleting it).")
    destination_dir: str = destination_dir_field()
    data_dir: str = data_dir_field()
    config_path: str = config_path_field()
    certificate_ttl: str = certificate_ttl_field()
    renewal_interval: str = renewal_interval_field()
    agent_path: str = agent_path_field()


@dataclass
class Rendered:
    """The agent rendered for a bot: the render function's result and the last of a Bot's outputs."""

    agent_config: str = attr(default="", computed=True, secret=True,
                             doc="The YAML that `machineid bot start --config` reads (holds the token).")
    start_command: str = attr(default="", computed=True, doc="The command that starts the agent.")
    systemd_unit: str = attr(default="", computed=True, doc="A systemd unit that runs the agent.")


@dataclass
class BotJoin:
    """A Bot's names, its join token and where it joins: what its agent is rendered from."""

    user_name: str = attr(default="", computed=True, doc="The bot's user, bot-NAME.")
    role_name: str = attr(default="", computed=True, doc="The bot's own role, bot-NAME.")
    token: str = attr(default="", computed=True, secret=True, doc="The join token (secret for the token method).")
    join_method: str = attr(default="", computed=True, doc="Join method of the token: token, iam or bound_keypair.")
    token_expires: str = attr(default="", computed=True, doc="When the join token expires (RFC 3339).")
    ca_pins: list[str] = attr(default_factory=list, computed=True, doc="CA pins of the cluster.")
    auth_server: str = attr(default="", computed=True, doc="Address the agent joins.")


@dataclass
class BotOutputs(Rendered, BotJoin):
    """A Bot's outputs: BotJoin's fields, then Rendered's (a dataclass lists its bases' fields from the last base
    to the first; the generated schema, SDKs and docs follow this order)."""


# The bot outputs that come from its join token (kept in state: a single-use token cannot be read back).
TOKEN_OUTPUTS = ("token", "join_method", "token_expires", "ca_pins")
RENDERED_OUTPUTS = tuple(f.name for f in fields(Rendered))


@dataclass
class TokenOptions:
    """Provider-only inputs of a ProvisionToken."""

    ttl: str = attr(default=DEFAULT_TOKEN_TTL, doc="Lifetime from creation when `expires` is not set (a "
                                                   "bound_keypair token does not expire unless `expires` is set). "
                                                   "A token whose expiry has passed is replaced with a fresh one at "
                                                   "the next update.", validators=[v.duration(min_seconds=1)])


@dataclass
class TokenOutputs(ProvisionTokenStatus):
    """The token's status (set by the cluster at each bound_keypair join), its expiry, and whether it was used."""

    token_expires: str = attr(default="", computed=True, doc="When the token expires (RFC 3339).")
    used: bool = attr(default=False, computed=True,
                      doc="token method: true once its bot joined with it. The cluster deletes a used single-use "
                          "token; the resource stays (and is not replaced when its expiry passes) until an "
                          "argument changes. To issue a new one, change an argument or replace the resource.")


# The token outputs that joins change: unknown in the plan of an update (a join may land between plan and apply).
TOKEN_STATUS_OUTPUTS = tuple(f.name for f in fields(ProvisionTokenStatus))


# ---------------------------------------------------------------- nodes


def _package_index(value: Any) -> str | None:
    """An index pip can be pointed at with --index-url, written into a shell command and cloud-init YAML: https,
    no credentials (the rendered outputs are secrets, the inputs are not), nothing a shell or YAML would read."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parts = urlsplit(value)
    except ValueError:
        parts = None
    if parts is None or parts.scheme != "https" or not parts.hostname or parts.username or parts.password \
            or parts.query or parts.fragment or re.search(r"[\s\x00-\x1f\x7f\"'`$\\]", value):
        return (f'"{v.shown(value)}" is not an https:// URL of a package index without credentials, query or '
                "fragment (like https://pypi.example.com/simple)")
    return None


PACKAGE_INDEX = v.Validator("an https:// URL of a Python package index, without credentials", _package_index)
# A shell command: any text but control characters other than newlines and tabs.
SHELL_TEXT = v.regex(r"[^\x00-\x08\x0b-\x1f\x7f]*", "shell commands (no control characters but newlines and "
                     "tabs)", "the install command may not contain control characters other than newlines and tabs")
# sshd's AuthorizedPrincipalsCommandUser: a plain account name, never a template.
ACCOUNT = v.regex(r"[a-z_][a-z0-9_.-]{0,31}", "a POSIX account name",
                  "an account is a POSIX user name (lower case, at most 32 characters)")
NODE_VENV = "/opt/machineid"


def default_install_command(package_index: str, agent_path: str) -> str:
    """What installs this machineid version on a node when the program gives no install command: a root-owned
    virtualenv, linked at agent_path, from package_index, or else from the index pip is configured with on the node.
    Never the public index by default (the name machineid there is not this project's): with neither, the setup
    stops and says what to set."""
    pip = f"{NODE_VENV}/bin/pip"
    if package_index:
        index = f" --index-url {shlex.quote(package_index)}"
        configured = ""
    else:
        index = ""
        missing = (f"machineid: no package index to install machineid {__version__} from: set package_index, or "
                   "configure the index-url of pip on the node (machineid on the public index is not this project)")
        configured = (f'{{ [ -n "${{PIP_INDEX_URL:-}}" ] || {pip} config get global.index-url >/dev/null 2>&1 || '
                      f"{{ echo {shlex.quote(missing)} >&2; exit 1; }}; }} && ")
    return (f"python3.11 -m venv {NODE_VENV} && {configured}{pip} install --disable-pip-version-check{index} "
            f"{shlex.quote(f'machineid=={__version__}')} && ln -sf {NODE_VENV}/bin/machineid {shlex.quote(agent_path)}")


@dataclass
class NodeOnboarding:
    """Provider-only inputs of a Node: how it joins, and how its setup (user_data, setup_script) is rendered."""

    join_method: str = attr(
        default="token", doc="How the node joins: token (the provider creates a single-use Node token for it, held "
        "by the outputs token, user_data and setup_script), iam or bound_keypair (token_name names an existing Node "
        "token for this node).", validators=[v.one_of(*NODE_JOIN_METHODS)])
    token_name: str = attr(default="", doc="For join_method iam or bound_keypair: the existing ProvisionToken (roles "
                                           "[Node], node_name this node) the node joins with. Not a secret: that "
                                           "token's proof is the node's AWS identity or key pair.",
                           validators=[v.RESOURCE_NAME])
    token_ttl: str = attr(default=DEFAULT_TOKEN_TTL, doc="For join_method token: lifetime of the node's single-use "
                          "join token. The node must join (boot with user_data, or run setup_script) within it.",
                          validators=[v.duration(min_seconds=60)])
    token_rotation: int = attr(default=0, doc="For join_method token: change this number to issue a new join token "
                                              "(to set the node up again, or when the first expired unused); the "
                                              "previous one is deleted.")
    install_command: str = attr(
        default="", doc="Shell commands that install machineid on the node, so that agent_path runs it (\":\" when "
        "the image already has it). Default: a virtualenv (python3.11 -m venv " + NODE_VENV + ") with machineid "
        "at this provider's version, from package_index, linked at agent_path. Keep credentials out of it: it is an "
        "input, shown in plans.", validators=[SHELL_TEXT])
    package_index: str = attr(
        default="", doc="For the default install_command: the Python package index that serves machineid (your "
        "organisation's, like https://pypi.example.com/simple). Empty: the index pip is configured with on the node "
        "(pip.conf or PIP_INDEX_URL); with none configured the setup stops and says so, rather than install the "
        "public index's machineid, which is not this project's.", validators=[PACKAGE_INDEX])
    run_as: str = attr(default="nobody", doc="The account sshd runs the principals helper as "
                                             "(AuthorizedPrincipalsCommandUser; `node setup --run-as`).",
                       validators=[ACCOUNT])
    agent_path: str = attr(default=agent.DEFAULT_AGENT_PATH, doc="Path of the machineid executable on the node: "
                           "the setup and the systemd unit run it.", validators=_PATH)

    def check(self) -> Iterator[FieldViolation]:
        if self.join_method == "token" and self.token_name:
            yield FieldViolation(("token_name",), "applies to join_method iam or bound_keypair; for join_method "
                                 "token the provider creates the node's single-use token (token_rotation issues a "
                                 "new one): remove token_name")
        if self.join_method != "token" and not self.token_name:
            yield FieldViolation(("token_name",), f"is required for join_method {self.join_method}: name the "
                                 f"{self.join_method} ProvisionToken with roles [Node] and this node's node_name")


@dataclass
class NodeSetup:
    """A Node's join settings and rendered setup: the last of its outputs."""

    token: str = attr(default="", computed=True, secret=True,
                      doc="The join token: the single-use token the provider created (join_method token; secret), "
                          "or token_name.")
    token_expires: str = attr(default="", computed=True, doc="When the join token expires (RFC 3339; empty: never).")
    ca_pins: list[str] = attr(default_factory=list, computed=True, doc="CA pins of the cluster.")
    auth_server: str = attr(default="", computed=True, doc="Address the node joins (the provider's).")
    user_data: str = attr(default="", computed=True, secret=True,
                          doc="cloud-init user data (#cloud-config) for a VM that is this node: installs machineid, "
                              "runs `machineid node setup ... --join` and enables `machineid node start` as the "
                              "systemd service machineid-node. Holds the join token.")
    setup_script: str = attr(default="", computed=True, secret=True,
                             doc="The same setup as a POSIX shell script, to run once as root on the node. Holds the "
                                 "join token.")


@dataclass
class NodeOutputs(NodeSetup, NodeStatus):
    """A Node's outputs: the cluster's status of the node (NodeStatus), then NodeSetup's fields."""


# The node outputs that come from its join token (kept in state: a single-use token cannot be read back).
NODE_TOKEN_OUTPUTS = ("token", "token_expires", "ca_pins")
NODE_RENDERED_OUTPUTS = ("user_data", "setup_script")
NODE_STATUS_OUTPUTS = tuple(f.name for f in fields(NodeStatus))
