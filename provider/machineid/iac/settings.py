"""Provider-only inputs and computed outputs: what a bot's agent is rendered with, and a token's lifetime.

The render settings are declared once (the field factories below) and shared by the Bot resource and the
render function/data source; their defaults are the agent's own (machineid.agent.config)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from machineid.agent import config as agent
from machineid.model import validators as v
from machineid.model.fields import attr
from machineid.model.resources import DEFAULT_TOKEN_TTL, ProvisionTokenStatus

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
