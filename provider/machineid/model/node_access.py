"""Which logins a certificate grants on which nodes, decided the same way by the cluster (when it lists nodes) and
by each node (when sshd asks `machineid node principals`), so node_labels hold where access happens.

An SSH user certificate carries its roles' rules in an extension: per role, the logins it allows (templates
expanded, denied logins removed) with that role's allow node selector, plus every role's deny selector. A node
grants a login when some grant lists it with a selector matching the node's labels and no deny selector matches
(deny wins). A certificate without the extension grants nothing on such a node.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field

EXTENSION = "node-access@machineid"
MAX_EXTENSION = 64 * 1024

Selector = dict[str, list[str]]


def labels_match(selector: Selector, labels: dict[str, str]) -> bool:
    """Teleport's node_labels: every key must match (a value glob); '*': ['*'] matches every node; empty, none."""
    if not selector:
        return False
    for key, values in selector.items():
        if key == "*":
            if "*" not in values:
                return False
            continue
        if key not in labels:
            return False
        if "*" not in values and not any(fnmatch.fnmatchcase(labels[key], val) for val in values):
            return False
    return True


@dataclass(frozen=True)
class Grant:
    logins: tuple[str, ...]
    labels: Selector


@dataclass
class NodeAccess:
    grants: list[Grant] = field(default_factory=list)
    deny: list[Selector] = field(default_factory=list)

    def logins_on(self, labels: dict[str, str]) -> list[str]:
        if any(labels_match(d, labels) for d in self.deny):
            return []
        out: list[str] = []
        for g in self.grants:
            if labels_match(g.labels, labels):
                out += [lg for lg in g.logins if lg not in out]
        return out

    def encode(self) -> bytes:
        return json.dumps({"v": 1, "grants": [{"logins": list(g.logins), "labels": g.labels} for g in self.grants],
                           "deny": self.deny}, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, raw: bytes) -> NodeAccess:
        """Strict: anything unexpected is an error (and so no access), never a guess."""
        if len(raw) > MAX_EXTENSION:
            raise ValueError("node access extension too large")
        data = json.loads(raw)
        if not isinstance(data, dict) or data.get("v") != 1:
            raise ValueError("unknown node access extension version")
        grants = []
        for g in data["grants"]:
            logins, labels = g["logins"], g["labels"]
            if not isinstance(logins, list) or not all(isinstance(x, str) for x in logins):
                raise ValueError("malformed logins")
            grants.append(Grant(tuple(logins), _selector(labels)))
        return cls(grants, [_selector(d) for d in data["deny"]])


def _selector(value: object) -> Selector:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
            for k, v in value.items()):
        raise ValueError("malformed node selector")
    return {str(k): [str(x) for x in v] for k, v in value.items()}
