"""A node's state as an operator reads it (`ctl nodes ls`, the providers): worked out from its status and the time
now, here once, so every tool that shows it agrees.

A node says how often it heartbeats; it is stale once it has missed MISSED_HEARTBEATS of them in a row (one late
heartbeat is noise, three are a node that is down or cut off from the cluster, whose labels and revocations are
going stale on it too).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from machineid.model import validators as v
from machineid.model.resources import Node

MISSED_HEARTBEATS = 3
NEVER_JOINED = "never joined"
ONLINE = "online"
STALE = "stale"
LOCKED = "locked"
STATES = (ONLINE, STALE, NEVER_JOINED, LOCKED)


def heartbeat_interval(node: Node) -> timedelta | None:
    """The interval the node last reported, or None (it never did, or it reads as nothing we know)."""
    text = node.status.heartbeat_interval
    if not text:
        return None
    try:
        return v.parse_duration(text)
    except ValueError:
        return None


def state(node: Node, now: datetime) -> str:
    st = node.status
    if st.locked:
        return LOCKED
    if st.last_heartbeat is None:
        return NEVER_JOINED if st.last_join is None else STALE
    interval = heartbeat_interval(node)
    if interval is None or now - st.last_heartbeat > MISSED_HEARTBEATS * interval:
        return STALE
    return ONLINE
