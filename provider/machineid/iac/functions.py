"""Cluster information and agent rendering: Pulumi functions and Terraform data sources over the same code."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from machineid.agent import config as agent
from machineid.iac import settings as s
from machineid.model import codec
from machineid.model import validators as v
from machineid.model.fields import attr
from machineid.model.instances import BotInstance
from machineid.model.resources import JOIN_METHODS


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
    join_method: str = attr(default="token", doc="token, iam or bound_keypair.",
                            validators=[v.one_of(*JOIN_METHODS)])
    destination_dir: str = s.destination_dir_field()
    data_dir: str = s.data_dir_field()
    config_path: str = s.config_path_field()
    auth_server: str = attr(default="", doc="Cluster address. Default: the provider's address.")
    ca_pins: list[str] = attr(default_factory=list, doc="CA pins. Default: the cluster's.")
    certificate_ttl: str = s.certificate_ttl_field()
    renewal_interval: str = s.renewal_interval_field()
    agent_path: str = s.agent_path_field()


def render(args: RenderArgs) -> s.Rendered:
    """Pure: the same inputs always render the same files (so plans can show them before apply)."""
    data_dir = args.data_dir or agent.default_data_dir(args.bot_name)
    config_path = args.config_path or agent.default_config_path(args.bot_name)
    cfg = agent.AgentConfig(
        auth_server=args.auth_server,
        onboarding=agent.Onboarding(join_method=args.join_method, token=args.token, ca_pins=args.ca_pins),
        storage=agent.Storage(directory=data_dir),
        destinations=[agent.Destination(directory=args.destination_dir)],
        certificate_ttl=args.certificate_ttl,
        renewal_interval=args.renewal_interval,
    )
    text = agent.render(cfg)
    if not args.token and args.join_method == "token":
        # An imported bot: the provider never saw its single-use token. Say so rather than render a config that
        # fails with no hint.
        text = ("# No join token: this bot was imported, and its token (single use) is not known to the provider.\n"
                "# Set token_rotation (Pulumi: tokenRotation) to issue one, or pass --token to the agent.\n") + text
    return s.Rendered(
        agent_config=text,
        start_command=agent.start_command(config_path, args.agent_path),
        systemd_unit=agent.systemd_unit(config_path, args.agent_path,
                                        description=f"machineid bot {args.bot_name}"),
    )


@dataclass(frozen=True)
class FunctionDef:
    name: str  # snake_case; Pulumi camelCases it, Terraform prefixes machineid_
    description: str
    inputs: type
    outputs: type


GET_CLUSTER_INFO = FunctionDef("get_cluster_info", "The cluster's name, version and CA pins.", ClusterInfoArgs,
                               ClusterInfo)
RENDER_AGENT_CONFIG = FunctionDef(
    "render_agent_config", "Render the agent's config, start command and systemd unit for a bot and token (pure: "
    "the cluster is asked only for defaults not given).", RenderArgs, s.Rendered)


@dataclass
class BotInstancesArgs:
    bot_name: str = attr(default="", doc="Only this bot's instances (default: every bot's).",
                         validators=[v.RESOURCE_NAME])
    version_older_than: str = attr(default="", doc="Only agents older than this version (or that never reported "
                                                   "one), e.g. 0.2.0.")
    not_seen_since: str = attr(default="", doc="Only instances not seen (joined or renewed) within this long, e.g. "
                                               "24h.", validators=[v.duration(min_seconds=1)])
    unhealthy_only: bool = attr(default=False, doc="Only instances whose last heartbeat reported a destination it "
                                                   "could not write.")


@dataclass
class BotInstanceSummary:
    instance_id: str = attr(default="", computed=True, doc="The instance (a lock's target.bot_instance).")
    bot_name: str = attr(default="", computed=True, doc="The bot.")
    join_method: str = attr(default="", computed=True, doc="How it joined.")
    current: bool = attr(default=False, computed=True, doc="Whether it holds the bot's current renewable identity.")
    version: str = attr(default="", computed=True, doc="The agent's version (its last heartbeat).")
    hostname: str = attr(default="", computed=True, doc="The machine's host name (its last heartbeat).")
    os: str = attr(default="", computed=True, doc="Operating system.")
    architecture: str = attr(default="", computed=True, doc="CPU architecture.")
    one_shot: bool = attr(default=False, computed=True, doc="Whether the agent runs once (a CI job).")
    healthy: bool = attr(default=False, computed=True, doc="Whether every destination held fresh certificates at "
                                                          "its last heartbeat.")
    last_seen: str = attr(default="", computed=True, doc="Its latest join or renewal (RFC 3339).")
    last_heartbeat: str = attr(default="", computed=True, doc="When it last reported (RFC 3339; empty: never).")


@dataclass
class BotInstances:
    instances: list[BotInstanceSummary] = attr(default_factory=list, computed=True,
                                               doc="The instances that match, by bot then instance ID.")


def summarize(found: list[BotInstance]) -> BotInstances:
    def when(t: datetime | None) -> str:
        return codec.format_time(t) if t else ""

    rows = [BotInstanceSummary(
        instance_id=i.instance_id, bot_name=i.bot_name, join_method=i.join_method, current=i.current,
        version=i.heartbeat.version, hostname=i.heartbeat.hostname, os=i.heartbeat.os,
        architecture=i.heartbeat.architecture, one_shot=i.heartbeat.one_shot, healthy=i.healthy(),
        last_seen=when(i.last_seen), last_heartbeat=when(i.last_heartbeat)) for i in found]
    return BotInstances(sorted(rows, key=lambda r: (r.bot_name, r.instance_id)))


GET_BOT_INSTANCES = FunctionDef(
    "get_bot_instances", "The bots' agents (one per join): version, host, last seen and health, with filters; a CI "
    "job can fail on agents older than a version or not seen for a day.", BotInstancesArgs, BotInstances)
FUNCTIONS = (GET_CLUSTER_INFO, RENDER_AGENT_CONFIG, GET_BOT_INSTANCES)
