"""Which logins a certificate grants on which nodes, decided the same way by the cluster (when it lists nodes) and
by each node (when sshd asks the principals helper, `machineid.node.helper`, which repeats decode and logins_on in
the standard library only: change both together; a test holds them equal), so node_labels hold where access happens.

An SSH user certificate carries its roles' rules in an extension: per role, the logins it allows (templates
expanded, denied logins removed) with that role's allow node selector, plus every role's deny selector. A node
grants a login when some grant lists it with a selector matching the node's labels and no deny selector matches
(deny wins). A certificate without the extension grants nothing on such a node.
"""

from __future__ import annotations

import fnmatch
import json
import unicodedata
from collections.abc import Iterable
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


def wildcard_keys(selector: Selector) -> list[str]:
    """The keys of a selector whose values admit every node that has the key, judged by what labels_match accepts
    (not by spelling): '*', and globs such as '?*', '**' or 'a*' with '[!a]*' together. For the key '*' the
    matcher wants the value '*' itself, so that is its only wildcard."""
    return [key for key, values in selector.items()
            if "*" in values or (key != "*" and matches_every_value(values))]


_STAR = "*"
# Where runs of the label values judged here start (no control characters, no lone surrogates): a piece of a
# character class that begins in a gap still has a value character at one of these.
_RUN_STARTS = (0x20, 0xA0, 0xE000)
_MAX_STATES = 4096


def _value_char(code: int) -> bool:
    return 0 <= code <= 0x10FFFF and not 0xD800 <= code <= 0xDFFF and unicodedata.category(chr(code)) != "Cc"


def _glob_tokens(pattern: str) -> tuple[str, ...]:
    """The pattern split as fnmatch reads it: '*', or a one-character glob ('?', a '[...]' class, a literal)."""
    out: list[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "[":
            j = i + 1
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j < n:
                out.append(pattern[i:j + 1])
                i = j + 1
                continue
        if c != _STAR or not out or out[-1] != _STAR:
            out.append(c)
        i += 1
    return tuple(out)


def matches_every_value(patterns: Iterable[str]) -> bool:
    """Whether the value globs, together, match every non-empty label value (fnmatch, as labels_match uses).

    Exact: the globs' union is walked as an automaton over one character of each class of characters the globs
    cannot tell apart (class boundaries are characters the globs name, and their neighbours). A union too large to
    walk counts as a wildcard."""
    globs = [_glob_tokens(p) for p in patterns]
    if not globs:
        return False
    codes = {ord(c) + d for g in globs for tok in g for c in tok for d in (-1, 0, 1)} | set(_RUN_STARTS)
    alphabet = [chr(c) for c in sorted(codes) if _value_char(c)]

    def closure(states: Iterable[tuple[int, int]]) -> frozenset[tuple[int, int]]:
        out = set()
        for g, i in states:
            out.add((g, i))
            while i < len(globs[g]) and globs[g][i] == _STAR:
                i += 1
                out.add((g, i))
        return frozenset(out)

    def step(states: frozenset[tuple[int, int]], ch: str) -> frozenset[tuple[int, int]]:
        nxt = []
        for g, i in states:
            if i < len(globs[g]):
                tok = globs[g][i]
                if tok == _STAR:
                    nxt.append((g, i))
                elif fnmatch.fnmatchcase(ch, tok):
                    nxt.append((g, i + 1))
        return closure(nxt)

    start = closure((g, 0) for g in range(len(globs)))
    seen: set[frozenset[tuple[int, int]]] = set()
    todo = [step(start, ch) for ch in alphabet]
    while todo:
        states = todo.pop()
        if states in seen:
            continue
        if not any(i == len(globs[g]) for g, i in states):
            return False  # a value reaching here matches no glob
        seen.add(states)
        if len(seen) > _MAX_STATES:
            return True
        todo += [step(states, ch) for ch in alphabet]
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
        if not isinstance(data.get("grants"), list) or not isinstance(data.get("deny"), list):
            raise ValueError("malformed node access extension")
        grants = []
        for g in data["grants"]:
            if not isinstance(g, dict):
                raise ValueError("malformed grant")
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
