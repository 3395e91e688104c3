"""Bot instances: one record per agent (per join), what it proved and what it last reported, so an operator sees
the fleet (which version, which host, when last seen, healthy or not) and can lock one machine (a lock's
target.bot_instance) without locking the whole bot. Written by the cluster only; records outlive the agent's
credentials for a retention the operator sets, so a vanished machine stays visible."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from machineid.model import validators as v
from machineid.model.fields import attr

MAX_DESTINATIONS = 16
MAX_HEARTBEAT_TEXT = 128


@dataclass
class DestinationHealth:
    path: str = attr(default="", doc="The destination directory.", max_length=1024)
    healthy: bool = attr(default=False, doc="Whether the agent wrote fresh certificates there in this cycle.")
    error: str = attr(default="", doc="Why not, when it is not healthy.", max_length=512)


@dataclass
class Heartbeat:
    """What the agent reports with each cycle (its renewal): bounded, never trusted for access decisions."""

    version: str = attr(default="", doc="The machineid version the agent runs.", max_length=MAX_HEARTBEAT_TEXT)
    hostname: str = attr(default="", doc="The machine's host name.", max_length=MAX_HEARTBEAT_TEXT)
    os: str = attr(default="", doc="Operating system (linux, darwin, ...).", max_length=MAX_HEARTBEAT_TEXT)
    architecture: str = attr(default="", doc="CPU architecture (x86_64, aarch64, ...).",
                             max_length=MAX_HEARTBEAT_TEXT)
    uptime_seconds: int = attr(default=0, doc="How long the agent process has run.")
    one_shot: bool = attr(default=False, doc="Whether the agent runs once (a CI job) rather than as a service.")
    destinations: list[DestinationHealth] = attr(default_factory=list, doc="Each destination's health (the "
                                                 f"first {MAX_DESTINATIONS}).")


@dataclass
class BotInstance:
    instance_id: str = attr(default="", computed=True, doc="The instance: one join of the bot (a lock's "
                                                           "target.bot_instance).", validators=[v.INSTANCE_ID])
    bot_name: str = attr(default="", computed=True, doc="The bot.")
    join_method: str = attr(default="", computed=True, doc="How it joined.")
    join_token: str = attr(default="", computed=True, doc="The token it joined with (a single-use token by its ID).")
    join_attributes: dict[str, str] = attr(default_factory=dict, computed=True,
                                           doc="What a delegated or IAM join proved (repository, ref, AWS ARN...).")
    renewable: bool = attr(default=False, computed=True, doc="Whether it renews (token, bound_keypair) or joins at "
                                                            "every cycle (iam and the delegated methods).")
    generation: int = attr(default=0, computed=True, doc="Its identity's generation (renewals so far + 1).")
    first_seen: datetime | None = attr(default=None, computed=True, doc="When it joined.")
    last_seen: datetime | None = attr(default=None, computed=True, doc="Its latest join or renewal.")
    last_heartbeat: datetime | None = attr(default=None, computed=True, doc="When it last reported its heartbeat.")
    heartbeat: Heartbeat = attr(default_factory=Heartbeat, computed=True, doc="What it last reported.")
    current: bool = attr(default=False, computed=True, doc="Whether it holds the bot's current renewable identity "
                                                          "(a newer join supersedes it).")

    def healthy(self) -> bool:
        return all(d.healthy for d in self.heartbeat.destinations)


def version_older(version: str, than: str) -> bool:
    """Whether `version` (the agent's) is older than `than`, comparing dotted numbers; an unknown (empty) version
    counts as older."""
    def parts(text: str) -> tuple[int, ...]:
        out = []
        for p in text.split("+")[0].split("-")[0].split("."):
            out.append(int(p) if p.isdigit() else 0)
        return tuple(out)

    if not version:
        return True
    return parts(version) < parts(than)


def select(found: Sequence[BotInstance], *, older_than: str = "", not_seen_since: float = 0.0,
           unhealthy: bool = False, now: datetime | None = None) -> list[BotInstance]:
    """The filters of `ls` (and of the providers' data source)."""
    now = now or datetime.now(UTC)
    out = []
    for inst in found:
        if older_than and not version_older(inst.heartbeat.version, older_than):
            continue
        if not_seen_since and inst.last_seen is not None and (now - inst.last_seen).total_seconds() < not_seen_since:
            continue
        if unhealthy and inst.healthy():
            continue
        out.append(inst)
    return out
