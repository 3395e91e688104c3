#!/usr/bin/python3 -IS
"""machineid's principals helper: sshd's AuthorizedPrincipalsCommand on a node (`%u %t %k`).

`machineid node setup` installs this file, as it is, at a root-owned path with a root-owned interpreter in its
first line and the node's state file named in STATE_PATH below. It is self-contained (the standard library of
Python 3.8 or newer, no virtualenv, no `cryptography`) so that sshd can run it as `nobody` from directories only
root can write, which is what sshd demands of the command and every directory above it.

sshd has verified the certificate's signature, validity and CA before it asks. This program decides only which
login the certificate's roles grant on this node: it parses the OpenSSH certificate, reads the node-access
extension (the roles' grants and deny selectors; `machineid.model.node_access` is the reference it must agree
with), reads this node's labels from the state file, and prints `machineid:LOGIN` when a grant lists LOGIN with a
selector matching the labels, no deny selector matches, and the certificate carries that principal. Anything else
prints nothing: sshd then refuses the login. Every reason goes to stderr (sshd's log).

It fails closed: a missing, unreadable or malformed state file, or one older than its max_age (the node agent could
not refresh labels and revocations from the cluster for that long), refuses every login. It never writes anything.

`principals --check` prints what it would decide with (the labels and the state's age), for an operator.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import os
import stat
import sys
import time

STATE_PATH = "/etc/machineid/state.json"  # rewritten by `machineid node setup` for the node's root
PRINCIPAL_PREFIX = "machineid:"
EXTENSION = "node-access@machineid"
MAX_EXTENSION = 64 * 1024
MAX_STATE = 1024 * 1024
STATE_FORMAT = 1
USER_CERT = 1
# The public key fields between the nonce and the serial, per certificate type (PROTOCOL.certkeys): each is an SSH
# string (an mpint is one too).
KEY_FIELDS = {
    "ssh-rsa-cert-v01@openssh.com": 2,
    "ssh-dss-cert-v01@openssh.com": 4,
    "ecdsa-sha2-nistp256-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp384-cert-v01@openssh.com": 2,
    "ecdsa-sha2-nistp521-cert-v01@openssh.com": 2,
    "ssh-ed25519-cert-v01@openssh.com": 1,
    "sk-ecdsa-sha2-nistp256-cert-v01@openssh.com": 3,
    "sk-ssh-ed25519-cert-v01@openssh.com": 2,
}


class Refused(Exception):
    """No login at all, for the reason given (the state cannot be trusted, the input is malformed)."""


class Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ValueError("truncated certificate")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uint(self, size: int) -> int:
        return int.from_bytes(self.take(size), "big")

    def string(self) -> bytes:
        return self.take(self.uint(4))

    def strings(self) -> list[bytes]:
        out = []
        while self.pos < len(self.data):
            out.append(self.string())
        return out

    def done(self) -> None:
        if self.pos != len(self.data):
            raise ValueError("trailing data in certificate")


def parse_certificate(key_type: str, b64: str) -> tuple[list[str], dict[str, bytes]]:
    """The principals and extensions (name -> value) of an OpenSSH user certificate, read from its wire format."""
    if key_type not in KEY_FIELDS:
        raise ValueError("not an OpenSSH certificate type: " + repr(key_type[:80]))
    try:
        blob = base64.b64decode(b64.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError):
        raise ValueError("the certificate is not base64") from None
    r = Reader(blob)
    if r.string() != key_type.encode():
        raise ValueError("the certificate's type does not match " + key_type)
    r.string()  # nonce
    for _ in range(KEY_FIELDS[key_type]):
        r.string()
    r.uint(8)  # serial
    if r.uint(4) != USER_CERT:
        raise ValueError("not a user certificate")
    r.string()  # key id
    principals = [p.decode("utf-8") for p in Reader(r.string()).strings()]
    r.uint(8)  # valid after
    r.uint(8)  # valid before
    r.string()  # critical options
    raw_extensions = Reader(r.string())
    r.string()  # reserved
    r.string()  # signature key
    r.string()  # signature
    r.done()
    extensions = {}
    while raw_extensions.pos < len(raw_extensions.data):
        name = raw_extensions.string().decode("utf-8")
        data = raw_extensions.string()
        value = b""
        if data:  # a value is itself an SSH string inside the extension's data
            inner = Reader(data)
            value = inner.string()
            inner.done()
        if name in extensions:
            raise ValueError("extension " + name + " appears twice")
        extensions[name] = value
    return principals, extensions


def labels_match(selector: dict[str, list[str]], labels: dict[str, str]) -> bool:
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


def _selector(value: object) -> dict[str, list[str]]:
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, list) and all(isinstance(x, str) for x in v)
            for k, v in value.items()):
        raise ValueError("malformed node selector")
    return {str(k): [str(x) for x in v] for k, v in value.items()}


def logins_on(raw: bytes, labels: dict[str, str]) -> list[str]:
    """The logins the node-access extension grants on a node with these labels (deny wins): NodeAccess.decode
    followed by NodeAccess.logins_on, strictly (anything unexpected is an error, never a guess)."""
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
        logins = g["logins"]
        if not isinstance(logins, list) or not all(isinstance(x, str) for x in logins):
            raise ValueError("malformed logins")
        grants.append((logins, _selector(g["labels"])))
    deny = [_selector(d) for d in data["deny"]]
    if any(labels_match(d, labels) for d in deny):
        return []
    out: list[str] = []
    for logins, selector in grants:
        if labels_match(selector, labels):
            out += [lg for lg in logins if lg not in out]
    return out


class State:
    """What the helper reads from the state file (the agent's, or `node setup --labels`' for a static node)."""

    def __init__(self, node: str, labels: dict[str, str], refreshed_at: float, max_age: float) -> None:
        self.node = node
        self.labels = labels
        self.refreshed_at = refreshed_at
        self.max_age = max_age

    def describe(self, now: float) -> str:
        labels = ",".join(k + "=" + v for k, v in sorted(self.labels.items())) or "(none)"
        fresh = ("no freshness limit" if not self.max_age else
                 "refreshed " + str(int(now - self.refreshed_at)) + "s ago (limit " + str(int(self.max_age)) + "s)")
        return "node " + (self.node or "(unnamed)") + ", labels " + labels + ", " + fresh


def read_state(path: str, now: float) -> State:
    """The node's state, trusted only if root wrote it (a root-owned file that only root may write) and, when it
    has a max_age, refreshed within it."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise Refused("cannot read the node state " + path + ": " + (e.strerror or str(e)) +
                      " (run `machineid node setup`, or start the node agent)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022:
            raise Refused("the node state " + path + " is not a root-owned file that only root may write")
        raw = os.read(fd, MAX_STATE + 1)
    finally:
        os.close(fd)
    try:
        data = json.loads(raw) if len(raw) <= MAX_STATE else None
    except (ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
        raise Refused("the node state " + path + " is not a format " + str(STATE_FORMAT) + " state file")
    labels, node = data.get("labels"), data.get("node", "")
    refreshed, max_age = data.get("refreshed_at"), data.get("max_age")
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        raise Refused("the node state " + path + " has malformed labels")
    if not isinstance(refreshed, (int, float)) or isinstance(refreshed, bool) or \
            not isinstance(max_age, (int, float)) or isinstance(max_age, bool) or max_age < 0:
        raise Refused("the node state " + path + " needs a refreshed_at time and a max_age of 0 or more seconds")
    if max_age > 0 and now - refreshed > max_age:
        raise Refused("the node state " + path + " is stale: refreshed " + str(int(now - refreshed)) + "s ago, "
                      "more than its max_age of " + str(int(max_age)) + "s (is the node agent running and reaching "
                      "the cluster?)")
    return State(node if isinstance(node, str) else "", labels, float(refreshed), float(max_age))


def decide(login: str, key_type: str, certificate: str, state_path: str, now: float) -> list[str]:
    """The principals to print for this login; raises Refused (nothing printed) when nothing can be trusted."""
    if not login or login.startswith("-"):
        raise Refused("the login " + repr(login[:80]) + " is not a login")
    labels = read_state(state_path, now).labels
    try:
        principals, extensions = parse_certificate(key_type, certificate)
    except (ValueError, UnicodeDecodeError) as e:
        raise Refused("malformed certificate: " + str(e)) from None
    raw = extensions.get(EXTENSION)
    if raw is None:
        log("no login for " + login + ": the certificate has no " + EXTENSION + " extension (not issued by a "
            "machineid cluster that says where it may log in)")
        return []
    try:
        allowed = logins_on(raw, labels)
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise Refused("malformed " + EXTENSION + " extension: " + str(e)) from None
    wanted = PRINCIPAL_PREFIX + login
    if login not in allowed:
        log("no login for " + login + ": no role of the certificate allows it on a node labelled " +
            ",".join(k + "=" + v for k, v in sorted(labels.items())) + " (or a deny selector matches)")
        return []
    if wanted not in principals:
        log("no login for " + login + ": the certificate does not carry the principal " + wanted)
        return []
    return [wanted]


def log(message: str) -> None:
    sys.stderr.write("machineid principals: " + message + "\n")


def check(state_path: str, now: float) -> int:
    """`principals --check`: what this node decides with, or why it refuses everyone."""
    try:
        state = read_state(state_path, now)
    except Refused as e:
        log("refusing every login: " + str(e))
        return 1
    sys.stdout.write("node state " + state_path + ": " + state.describe(now) + "\n")
    return 0


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        return check(STATE_PATH, time.time())
    if len(argv) != 3:
        log("refusing: expected exactly the login, the key type and the certificate (%u %t %k)")
        return 2
    try:
        granted = decide(argv[0], argv[1], argv[2], STATE_PATH, time.time())
    except Refused as e:
        log("refusing: " + str(e))
        return 1
    for principal in granted:
        sys.stdout.write(principal + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
