"""The state file the principals helper reads (format in layout.py): the node's labels, the revision they come
from, when they were last refreshed from the cluster, and how long they may be trusted without a refresh.

It is written only after a sync the cluster answered, so `refreshed_at` says when the node last heard from the
cluster: while the cluster is out of reach it stays put, and past `max_age` the helper refuses logins (fail
closed) instead of enforcing labels the cluster may have changed since."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from machineid.api.identity import write_private
from machineid.node.layout import STATE_FORMAT, Layout


def write(layout: Layout, node: str, cluster: str, labels: dict[str, str], revision: str, refreshed_at: datetime,
          max_age: timedelta) -> None:
    data = {"format": STATE_FORMAT, "node": node, "cluster": cluster, "labels": dict(sorted(labels.items())),
            "revision": revision, "refreshed_at": int(refreshed_at.timestamp()),
            "max_age": int(max_age.total_seconds())}
    write_private(layout.written(layout.state), json.dumps(data, indent=2) + "\n", 0o644)


def read(layout: Layout) -> dict[str, object]:
    """The state as last written ({} when there is none or it cannot be read)."""
    try:
        data = json.loads(layout.written(layout.state).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def applied_revision(layout: Layout) -> str:
    """The revision whose labels the node enforces now: what the helper reads."""
    revision = read(layout).get("revision", "")
    return revision if isinstance(revision, str) else ""
