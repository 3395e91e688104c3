"""The agent's configuration: the YAML file that `machineid bot start --config` reads and that the Pulumi
provider renders (one model, so the rendered file is exactly what the agent accepts).

The layout follows tbot's v1 config:

    version: v1
    auth_server: 127.0.0.1:3025
    onboarding: {join_method: token, token: /etc/machineid/token, ca_pins: [sha256:...]}
    storage: {directory: /var/lib/machineid/bot}
    destinations: [{directory: /opt/machine-id}]
    certificate_ttl: 1h
    renewal_interval: 20m
    destination_checks: strict   # or warn, off (left out when strict)
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from machineid.model import codec
from machineid.model import validators as v
from machineid.model.errors import FieldViolation, ValidationError
from machineid.model.fields import attr
from machineid.model.resources import JOIN_METHODS

CONFIG_VERSION = "v1"
DEFAULT_CERT_TTL = "1h"
DEFAULT_RENEWAL_INTERVAL = "20m"
# Where the rendered config puts things on the machine, unless told otherwise (declared once for every renderer).
DEFAULT_AGENT_PATH = "/usr/local/bin/machineid"
DEFAULT_DESTINATION_DIR = "/opt/machine-id"
DESTINATION_CHECKS = ("strict", "warn", "off")  # the first is the default


def default_data_dir(bot_name: str) -> str:
    return f"/var/lib/machineid/bot-{bot_name}"


def default_config_path(bot_name: str) -> str:
    return f"/etc/machineid/bot-{bot_name}.yaml"

PIN = v._regex(r"sha256:[0-9a-f]{64}", "sha256: and 64 lower-case hex digits",
               "a CA pin is sha256: followed by 64 hex digits, as `machineid ctl bots add` prints it")


@dataclass
class Onboarding:
    join_method: str = attr(default="token", doc="token, iam, bound_keypair, or a delegated join with the platform's "
                            "ID token: github, gitlab, kubernetes, oidc.", validators=[v.one_of(*JOIN_METHODS)])
    token: str = attr(default="", secret=True,
                      doc="The join token, or the path of a file that holds it (keeps it off the command line); for "
                          "bound_keypair the token's name.")
    registration_secret: str = attr(default="", secret=True,
                                    doc="bound_keypair: the token's one-time registration secret, or the path of a "
                                        "file that holds it; used only until the first join succeeds.")
    ca_pins: list[str] = attr(default_factory=list, doc="Pins of the cluster's CA, checked on first contact.",
                              validators=[v.each(PIN)])
    audience: str = attr(default="", doc="github, gitlab, kubernetes, oidc: the audience the ID token carries (what "
                         "the token's block asks for); empty means the cluster's name.")
    id_token_file: str = attr(default="", doc="github, gitlab, kubernetes, oidc: read the ID token from this file "
                              "(for platforms that write it to disk); MACHINEID_ID_TOKEN_FILE too.",
                              validators=[v.SAFE_PATH])
    id_token_env: str = attr(default="", doc="gitlab, oidc: the variable holding the ID token (the name of the "
                             "job's id_tokens entry); default MACHINEID_ID_TOKEN.")
    kubernetes_token_path: str = attr(default="", doc="kubernetes: the projected service-account token; default "
                                      "/var/run/secrets/tokens/machineid.", validators=[v.SAFE_PATH])


@dataclass
class Storage:
    directory: str = attr(default="", required=True, doc="Where the agent keeps its renewable identity (0700).",
                          validators=[v.SAFE_PATH])


@dataclass
class Destination:
    directory: str = attr(default="", required=True, doc="Where the short-lived certificates are written.",
                          validators=[v.SAFE_PATH])


@dataclass
class AgentConfig:
    version: str = attr(default=CONFIG_VERSION, doc="Config format version.", validators=[v.one_of(CONFIG_VERSION)])
    auth_server: str = attr(default="", required=True, doc="host:port of the cluster.")
    onboarding: Onboarding = attr(default_factory=Onboarding, doc="How the agent joins.")
    storage: Storage = attr(default_factory=Storage, doc="The agent's own state.")
    destinations: list[Destination] = attr(default_factory=list, required=True,
                                           doc="Directories that receive the certificates.")
    certificate_ttl: str = attr(default=DEFAULT_CERT_TTL, doc="Lifetime of issued certificates.",
                                validators=[v.duration(min_seconds=60)])
    renewal_interval: str = attr(default=DEFAULT_RENEWAL_INTERVAL, doc="How often to renew.",
                                 validators=[v.duration(min_seconds=1)])
    oneshot: bool = attr(default=False, doc="Write the certificates once and exit.")
    destination_checks: str = attr(
        default=DESTINATION_CHECKS[0], validators=[v.one_of(*DESTINATION_CHECKS)],
        doc="strict: refuse a destination that is, or is under, a symlink, that is writable by other users (or "
            "under a directory that is, without the sticky bit), or that is owned by another user than the agent's "
            "or root: whoever controls it can swap the certificates or redirect the private key. warn: log and go "
            "on. off: no checks.")

    def check(self) -> list[FieldViolation]:
        out = []
        # A missing token is checked by the agent, which knows whether the data dir holds an identity to renew.
        if self.auth_server and (":" not in self.auth_server or not self.auth_server.rsplit(":", 1)[1].isdigit()):
            out.append(FieldViolation(("auth_server",), f'"{self.auth_server}" is not host:port'))
        if not self.onboarding.ca_pins and self.onboarding.join_method in JOIN_METHODS:
            out.append(FieldViolation(("onboarding", "ca_pins"),
                                      "is required: the CA pin that `machineid ctl bots add` printed (--ca-pin)"))
        try:
            if v.parse_duration(self.renewal_interval) >= v.parse_duration(self.certificate_ttl):
                out.append(FieldViolation(("renewal_interval",), f"{self.renewal_interval} must be shorter than "
                                          f"certificate_ttl {self.certificate_ttl}, or certificates lapse"))
        except ValueError:
            pass  # reported by the field validators
        return out

    @property
    def ttl_seconds(self) -> float:
        return v.parse_duration(self.certificate_ttl).total_seconds()

    @property
    def interval_seconds(self) -> float:
        return v.parse_duration(self.renewal_interval).total_seconds()


def load(text: str, source: str = "config") -> AgentConfig:
    import yaml  # here, not at the top: the provider plugin imports this module at start-up and rarely needs YAML

    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ValidationError(f"{source} is not valid YAML: {e}") from None
    try:
        return codec.decode(AgentConfig, data)
    except ValidationError as e:
        raise ValidationError(e.violations, (source,)) from None


def render(config: AgentConfig) -> str:
    """The YAML the agent reads; fields at their defaults are still written, so the file says everything (but for
    oneshot, destination_checks and an empty registration_secret, which came later: configs rendered before them
    keep their exact text; likewise the delegated joins' settings when empty)."""
    import yaml

    data: dict[str, Any] = codec.encode(config)
    if not data.get("oneshot"):
        data.pop("oneshot", None)
    if data.get("destination_checks") == DESTINATION_CHECKS[0]:
        data.pop("destination_checks")
    for later in ("registration_secret", "audience", "id_token_file", "id_token_env", "kubernetes_token_path"):
        if not data["onboarding"].get(later):
            data["onboarding"].pop(later, None)
    return "# machineid bot agent configuration: machineid bot start --config THIS_FILE\n" + yaml.safe_dump(
        data, sort_keys=False)


def start_command(config_path: str, executable: str = "machineid") -> str:
    return f"{shlex.quote(executable)} bot start --config {shlex.quote(config_path)}"


def systemd_unit(config_path: str, executable: str = DEFAULT_AGENT_PATH, user: str = "machineid",
                 description: str = "machineid bot agent") -> str:
    return (
        "[Unit]\n"
        f"Description={description}\n"
        "After=network-online.target\n"
        "Wants=network-online.target\n\n"
        "[Service]\n"
        "Type=simple\n"
        f"User={user}\n"
        f"ExecStart={start_command(config_path, executable)}\n"
        "Restart=on-failure\n"
        "RestartSec=5\n"
        "KillSignal=SIGTERM\n\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def resolve_token(value: str, flag: str = "--token") -> str:
    """--token (and --registration-secret) take the value or the path of a file holding it. A token never contains
    '/', so a value that does is a path, and a path that names no file is an error: it is never sent as if it were
    the token."""
    if value and ("/" in value or value.startswith(".")):
        path = Path(value)
        try:
            return path.read_text().strip()
        except OSError as e:
            what = "token file" if flag == "--token" else "file"
            raise ValidationError(f"{flag}: cannot read the {what} {value}: {e.strerror}; pass the value or "
                                  "the path of a file that holds it") from None
    return value
