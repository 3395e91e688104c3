"""Where a node's status lives: a record of its own beside the node object, never in it.

A node heartbeats every minute or so. Written into the node object, each heartbeat would give it a new revision:
the revision a node reports as applied would be out of date by the time it was stored, and every conditional
write from code (the providers' updates carry the revision they read) would fail against a node that is merely
alive. So the node object changes only when its declaration does, and reads (Get, List, the answer to an upsert)
show the status from here. Deleting the node deletes its status, so a node created again under the same name
starts over (an identity of the old one matches no instance).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from machineid.cluster import records
from machineid.cluster.objects import Objects
from machineid.cluster.records import LastRenewal
from machineid.model.resources import Node, NodeStatus


@dataclass
class StoredNodeStatus(NodeStatus):
    KIND: ClassVar[str] = "node_status"


@dataclass
class NodeLastRenewal(LastRenewal):
    """A node's last renewal (or bound_keypair join), by node name: what LastRenewal is for a bot."""

    KIND: ClassVar[str] = "node_last_renewal"


def get(objects: Objects, name: str) -> NodeStatus:
    stored = records.get(objects, StoredNodeStatus, name)
    if stored is None:
        return NodeStatus()
    return NodeStatus(**{f.name: getattr(stored, f.name) for f in dataclasses.fields(NodeStatus)})


def put(objects: Objects, name: str, status: NodeStatus) -> None:
    """Inside the caller's transaction."""
    records.put(objects, name, StoredNodeStatus(**dataclasses.asdict(status)))


def delete(objects: Objects, name: str) -> None:
    records.delete(objects, StoredNodeStatus, name)
    records.delete(objects, NodeLastRenewal, name)


def with_status(objects: Objects, node: Node) -> Node:
    """The node as the API shows it: its declaration and revision, with the status from its record."""
    node.status = get(objects, node.metadata.name)
    return node
