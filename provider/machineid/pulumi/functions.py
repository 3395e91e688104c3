"""Provider functions (invokes): getClusterInfo and renderAgentConfig."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from machineid.agent import config as agent_config
from machineid.model import validators as v
from machineid.model.fields import attr
from machineid.model.resources import JOIN_METHODS

PACKAGE = "machineid"


@dataclass
class ClusterInfoArgs:
    pass


@dataclass
class ClusterInfo:
    cluster_name: str = attr(default="", computed=True, doc="Name of the cluster.")
    version: str = attr(default="", computed=True, doc="Server version.")
    ca_pins: list[str] = attr(default_factory=list, computed=True, doc="CA pins, for the agent's first contact.")
    address: str = attr(default="", computed=True, doc="The address the provider talks to.")


@dataclass
class RenderArgs:
    bot_name: str = attr(default="", required=True, doc="The bot.", validators=[v.RESOURCE_NAME])
    token: str = attr(default="", secret=True, doc="Its join token (or the path of a file on the machine that "
                                                   "holds it).")
    join_method: str = attr(default="token", doc="token or iam.", validators=[v.one_of(*JOIN_METHODS)])
    destination_dir: str = attr(default="/opt/machine-id", doc="Where the agent writes the certificates.")
    data_dir: str = attr(default="", doc="Where the agent keeps its state. Default: /var/lib/machineid/bot-NAME.")
    config_path: str = attr(default="", doc="Where the config is installed. Default: /etc/machineid/bot-NAME.yaml.")
    auth_server: str = attr(default="", doc="Cluster address. Default: the provider's address.")
    ca_pins: list[str] = attr(default_factory=list, doc="CA pins. Default: the cluster's.")
    certificate_ttl: str = attr(default=agent_config.DEFAULT_CERT_TTL, doc="Certificate lifetime.",
                                validators=[v.duration(min_seconds=60)])
    renewal_interval: str = attr(default=agent_config.DEFAULT_RENEWAL_INTERVAL, doc="Renewal interval.",
                                 validators=[v.duration(min_seconds=1)])
    agent_path: str = attr(default="/usr/local/bin/machineid", doc="The machineid executable, for the unit.")


@dataclass
class Rendered:
    agent_config: str = attr(default="", computed=True, secret=True, doc="The agent's YAML config.")
    start_command: str = attr(default="", computed=True, doc="The command that starts the agent.")
    systemd_unit: str = attr(default="", computed=True, doc="A systemd unit that runs the agent.")


def render(args: RenderArgs) -> Rendered:
    data_dir = args.data_dir or f"/var/lib/machineid/bot-{args.bot_name}"
    config_path = args.config_path or f"/etc/machineid/bot-{args.bot_name}.yaml"
    cfg = agent_config.AgentConfig(
        auth_server=args.auth_server,
        onboarding=agent_config.Onboarding(join_method=args.join_method, token=args.token, ca_pins=args.ca_pins),
        storage=agent_config.Storage(directory=data_dir),
        destinations=[agent_config.Destination(directory=args.destination_dir)],
        certificate_ttl=args.certificate_ttl,
        renewal_interval=args.renewal_interval,
    )
    return Rendered(
        agent_config=agent_config.render(cfg),
        start_command=agent_config.start_command(config_path, args.agent_path),
        systemd_unit=agent_config.systemd_unit(config_path, args.agent_path, description=f"machineid bot "
                                               f"{args.bot_name}"),
    )


@dataclass(frozen=True)
class FunctionDef:
    token: str
    description: str
    inputs: type
    outputs: type
    needs_cluster: bool
    call: Callable[..., Any] | None = None


FUNCTIONS = {
    f"{PACKAGE}:index:getClusterInfo": FunctionDef(
        f"{PACKAGE}:index:getClusterInfo", "The cluster's name, version and CA pins.", ClusterInfoArgs,
        ClusterInfo, True),
    f"{PACKAGE}:index:renderAgentConfig": FunctionDef(
        f"{PACKAGE}:index:renderAgentConfig", "Render the agent's config, start command and systemd unit for a bot "
        "and token (pure: the cluster is asked only for defaults not given).", RenderArgs, Rendered, False),
}
