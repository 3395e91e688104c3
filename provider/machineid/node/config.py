"""The node agent's settings (`Layout.config`, YAML, root-owned 0600): `node setup` writes them (`render`), `node
start` reads them (`load`). One model for both, so what setup writes is exactly what the agent accepts; an unknown
key is an error naming it (a misspelt key would otherwise be silently ignored, with its default in its place).

    version: 1
    name: web1                          # the node's name in the cluster
    auth_server: HOST:PORT
    ca_pins: [sha256:...]
    join_method: token                  # token | iam | bound_keypair
    token: /etc/machineid/join-token    # token: a root-only file holding it; iam, bound_keypair: the token's name
    heartbeat_interval: 60s
    sshd_pid_file: /run/sshd.pid        # SIGHUP target when the host certificate changes ("" = do not reload)

Keys the agent adds to the shared contract (optional):

    registration_secret: /etc/machineid/registration-secret
        bound_keypair with a registration secret instead of a preregistered key: the secret, or a root-only file
        holding it; used only until the first join succeeds.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from machineid.agent.config import PIN
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, ValidationError
from machineid.model.fields import attr
from machineid.model.resources import NODE_JOIN_METHODS

CONFIG_VERSION = 1
DEFAULT_HEARTBEAT_INTERVAL = "60s"
DEFAULT_SSHD_PID_FILE = "/run/sshd.pid"
MIN_HEARTBEAT_SECONDS = 1
MAX_HEARTBEAT_SECONDS = 86400


_VERSION = v.Validator(f"{CONFIG_VERSION}", lambda x: None if x == CONFIG_VERSION else
                       f"{x} is not a config version this agent reads; use {CONFIG_VERSION}")


@dataclass
class NodeConfig:
    version: int = attr(default=CONFIG_VERSION, doc="Config format version.", validators=[_VERSION])
    name: str = attr(default="", required=True, doc="The node's name in the cluster.", validators=[v.RESOURCE_NAME])
    auth_server: str = attr(default="", required=True, doc="host:port of the cluster.")
    ca_pins: list[str] = attr(default_factory=list, required=True,
                              doc="Pins of the cluster's CA, checked before anything is sent.",
                              validators=[v.each(PIN)])
    join_method: str = attr(default="token", doc="token, iam or bound_keypair.",
                            validators=[v.one_of(*NODE_JOIN_METHODS)])
    token: str = attr(default="", secret=True,
                      doc="token: the path of a root-only file holding the single-use token (or the token); iam, "
                          "bound_keypair: the token's name.")
    registration_secret: str = attr(default="", secret=True,
                                    doc="bound_keypair: the token's registration secret, or a file holding it.")
    heartbeat_interval: str = attr(default=DEFAULT_HEARTBEAT_INTERVAL, doc="How often the node syncs.",
                                   validators=[v.duration(min_seconds=MIN_HEARTBEAT_SECONDS,
                                                          max_seconds=MAX_HEARTBEAT_SECONDS)])
    sshd_pid_file: str = attr(default=DEFAULT_SSHD_PID_FILE, doc="sshd's pid file: SIGHUP when the host certificate "
                              'changes ("" = do not reload).', validators=[v.SAFE_PATH])

    def check(self) -> list[FieldViolation]:
        out = []
        if self.auth_server and (":" not in self.auth_server or not self.auth_server.rsplit(":", 1)[1].isdigit()):
            out.append(FieldViolation(("auth_server",), f'"{self.auth_server}" is not host:port'))
        return out

    @property
    def interval(self) -> timedelta:
        return v.parse_duration(self.heartbeat_interval)


def load(path: Path) -> NodeConfig:
    import yaml

    try:
        text = path.read_text()
    except OSError as e:
        raise ValidationError(f"{path}: cannot read the node's config ({e.strerror}); `machineid node setup` writes "
                              "it") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValidationError(f"{path} is not valid YAML: {e}") from None
    try:
        return codec.decode_and_validate(NodeConfig, data)
    except ValidationError as e:
        raise ValidationError(e.violations, (str(path),)) from None


def render(config: NodeConfig) -> str:
    """What `node setup` writes (root-owned 0600): every key, but an empty registration_secret."""
    import yaml

    codec.validate(config)
    data: dict[str, Any] = codec.encode(config)
    if not data["registration_secret"]:
        del data["registration_secret"]
    return "# machineid node agent configuration (machineid node start reads it)\n" + yaml.safe_dump(
        data, sort_keys=False)
