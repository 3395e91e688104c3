"""The principals helper sshd runs on a node (`machineid.node.helper`, installed by `node setup`): it decides as
`machineid.model.node_access` does, reads certificates as OpenSSH writes them, prints only `machineid:LOGIN`, and
fails closed when it cannot trust the node's state."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from machineid.model.node_access import EXTENSION, Grant, NodeAccess
from machineid.node import helper
from machineid.node.layout import Layout
from tests import nodes
from tests.conftest import run_cli

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="runs the helper as nobody, as sshd does (needs root)")
CA = ed25519.Ed25519PrivateKey.generate()


def cert(principals: list[str], extensions: dict[bytes, bytes], key: object = None) -> tuple[str, str]:
    user = key or ec.generate_private_key(ec.SECP256R1())
    b = (serialization.SSHCertificateBuilder().public_key(user.public_key())  # type: ignore[attr-defined]
         .serial(7).type(serialization.SSHCertificateType.USER).key_id(b"bot-x")
         .valid_principals([p.encode() for p in principals]).valid_after(0).valid_before(2**63)
         .add_extension(b"permit-pty", b""))
    for name in sorted(extensions):
        b = b.add_extension(name, extensions[name])
    key_type, b64 = b.sign(CA).public_bytes().decode().split()[:2]
    return key_type, b64


def test_the_helper_and_node_access_agree() -> None:
    """The same extension and labels give the same logins (or both refuse), on generated and malformed inputs."""
    rng = random.Random(19)
    keys, values = ["env", "tier", "team", "*"], ["prod", "dev", "db", "web", "*", "p*", "?ev", "[pd]*", ""]
    logins = ["root", "deploy", "ops"]

    def selector() -> dict[str, list[str]]:
        return {rng.choice(keys): rng.sample(values, rng.randint(0, 2)) for _ in range(rng.randint(0, 2))}

    cases = []
    for _ in range(1000):
        access = NodeAccess([Grant(tuple(rng.sample(logins, rng.randint(0, 3))), selector())
                             for _ in range(rng.randint(0, 3))], [selector() for _ in range(rng.randint(0, 2))])
        labels = {k: rng.choice(values[:4]) for k in rng.sample(keys[:3], rng.randint(0, 3))}
        cases.append((access.encode(), labels))
    malformed = [b"{not json", b"[]", b'{"v":2,"grants":[],"deny":[]}', b'{"v":1,"grants":{},"deny":[]}',
                 b'{"v":1,"grants":[],"deny":""}', b'{"v":1,"grants":["x"],"deny":[]}',
                 b'{"v":1,"grants":[{"logins":"root","labels":{}}],"deny":[]}',
                 b'{"v":1,"grants":[{"logins":["root"],"labels":{"env":"prod"}}],"deny":[]}',
                 b'{"v":1,"grants":[{"logins":["root"]}],"deny":[]}', b"\xff", b"[" * 100000,
                 b'{"v":1,"grants":[],"deny":[]}' + b" " * 70000]
    cases += [(raw, {"env": "prod"}) for raw in malformed]
    granted = 0
    for raw, labels in cases:
        try:
            want: list[str] | None = NodeAccess.decode(raw).logins_on(labels)
        except Exception:
            want = None
        try:
            got: list[str] | None = helper.logins_on(raw, labels)
        except Exception:
            got = None
        assert got == want, (raw, labels)
        granted += bool(want)
    assert granted > 40  # the generated cases grant something often enough to mean something


@pytest.mark.parametrize("kind", ["ed25519", "ecdsa", "rsa", "ssh-keygen"])
def test_the_helper_reads_certificates_as_openssh_writes_them(kind: str, tmp_path: Path) -> None:
    ext = {EXTENSION.encode(): b'{"v":1}'}
    if kind == "ssh-keygen":
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "ca")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ecdsa", "-N", "", "-f", str(tmp_path / "u")], check=True)
        subprocess.run(["ssh-keygen", "-q", "-s", str(tmp_path / "ca"), "-I", "x", "-n", "machineid:a,machineid:b",
                        "-O", f"extension:{EXTENSION}={{\"v\":1}}", str(tmp_path / "u.pub")], check=True)
        key_type, b64 = (tmp_path / "u-cert.pub").read_text().split()[:2]
    else:
        key = {"ed25519": ed25519.Ed25519PrivateKey.generate, "ecdsa": lambda: ec.generate_private_key(ec.SECP384R1()),
               "rsa": lambda: rsa.generate_private_key(65537, 2048)}[kind]()
        key_type, b64 = cert(["machineid:a", "machineid:b"], ext, key)
    principals, extensions = helper.parse_certificate(key_type, b64)
    assert principals == ["machineid:a", "machineid:b"]
    assert extensions[EXTENSION] == b'{"v":1}' and extensions["permit-pty"] == b""
    with pytest.raises(ValueError, match="does not match"):
        helper.parse_certificate("ssh-rsa-cert-v01@openssh.com" if kind != "rsa" else
                                 "ssh-ed25519-cert-v01@openssh.com", b64)
    with pytest.raises(ValueError):
        helper.parse_certificate(key_type, b64[:-8])


@pytest.fixture()
def installed() -> Iterator[Layout]:
    """A node set up by `node setup` (static labels env=prod) under its own root: the helper as installed."""
    with nodes.node_root() as root:
        ca = root / "user_ca.pub"
        ca.write_text(CA.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                   serialization.PublicFormat.OpenSSH).decode() + "\n")
        run_cli("node", "setup", "--root", str(root), "--labels", "env=prod", "--user-ca", str(ca), "--no-reload")
        yield Layout(root)


def as_nobody(layout: Layout, *args: str) -> subprocess.CompletedProcess[str]:
    """The helper as sshd runs it: as nobody, with an empty environment."""
    return subprocess.run([str(layout.principals_helper), *args], capture_output=True, text=True, env={}, cwd="/",
                          user="nobody", group="nogroup", extra_groups=[], timeout=30)


@as_root
def test_the_installed_helper_prints_only_the_granted_machineid_principal(installed: Layout) -> None:
    granted = NodeAccess([Grant(("deploy",), {"env": ["prod"]}), Grant(("ops",), {"env": ["dev"]})],
                         [{"tier": ["db"]}]).encode()
    ok = as_nobody(installed, "deploy", *cert(["machineid:deploy", "machineid:ops"], {EXTENSION.encode(): granted}))
    assert (ok.returncode, ok.stdout) == (0, "machineid:deploy\n"), ok.stderr
    refused = {  # login, certificate -> what the helper says in sshd's log
        "ops": (cert(["machineid:ops"], {EXTENSION.encode(): granted}), "no role of the certificate allows it"),
        "deploy": (cert(["deploy"], {EXTENSION.encode(): granted}), "does not carry the principal machineid:deploy"),
        "root": (cert(["machineid:root"], {}), "has no node-access@machineid extension"),
        "-oops": (cert(["machineid:deploy"], {EXTENSION.encode(): granted}), "is not a login"),
    }
    for login, (c, why) in refused.items():
        out = as_nobody(installed, login, *c)
        assert out.stdout == "" and why in out.stderr, (login, out.stderr)
    bad = as_nobody(installed, "deploy", *cert(["machineid:deploy"], {EXTENSION.encode(): b"{not json"}))
    assert (bad.returncode, bad.stdout) == (1, "") and "malformed node-access@machineid extension" in bad.stderr
    # deny wins once the node is labelled tier=db
    run_cli("node", "setup", "--root", str(installed.root), "--labels", "env=prod,tier=db", "--no-reload")
    assert as_nobody(installed, "deploy", *cert(["machineid:deploy"], {EXTENSION.encode(): granted})).stdout == ""


@as_root
def test_the_helper_fails_closed_when_it_cannot_trust_the_state(installed: Layout) -> None:
    granted = NodeAccess([Grant(("deploy",), {"env": ["prod"]})], []).encode()
    c = cert(["machineid:deploy"], {EXTENSION.encode(): granted})
    state = installed.state
    good = json.loads(state.read_text())
    cases = {
        "stale": ({**good, "max_age": 60, "refreshed_at": int(time.time()) - 3600}, 0o644,
                  "is stale: refreshed 3600s ago, more than its max_age of 60s"),
        "unreadable": (good, 0o600, "Permission denied"),
        "writable by others": (good, 0o666, "not a root-owned file that only root may write"),
        "malformed": ("[]", 0o644, "is not a format 1 state file"),
    }
    for name, (content, mode, why) in cases.items():
        state.write_text(content if isinstance(content, str) else json.dumps(content))
        os.chmod(state, mode)
        out = as_nobody(installed, "deploy", *c)
        assert (out.returncode, out.stdout) == (1, ""), name
        assert why in out.stderr and str(state) in out.stderr, (name, out.stderr)
        check = as_nobody(installed, "--check")
        assert check.returncode == 1 and "refusing every login" in check.stderr, name
    state.write_text(json.dumps({**good, "max_age": 60, "refreshed_at": int(time.time()) - 5}))
    os.chmod(state, 0o644)
    assert as_nobody(installed, "deploy", *c).stdout == "machineid:deploy\n"  # fresh within max_age
    state.unlink()
    missing = as_nobody(installed, "deploy", *c)
    assert missing.stdout == "" and f"cannot read the node state {state}" in missing.stderr


def test_the_deprecated_node_principals_answers_the_new_format_and_says_to_run_setup() -> None:
    granted = NodeAccess([Grant(("deploy",), {"env": ["prod"]})], [{"tier": ["db"]}]).encode()

    def principals(c: tuple[str, str], labels: str) -> subprocess.CompletedProcess[str]:
        return run_cli("node", "principals", "--labels", labels, "deploy", *c)

    new = principals(cert(["machineid:deploy"], {EXTENSION.encode(): granted}), "env=prod")
    assert new.stdout == "machineid:deploy\n"
    assert "deprecated" in new.stderr and "machineid node setup" in new.stderr
    assert principals(cert(["deploy"], {EXTENSION.encode(): granted}), "env=prod").stdout == "deploy\n"  # old certs
    assert principals(cert(["machineid:deploy"], {EXTENSION.encode(): granted}), "env=staging").stdout == ""
    assert principals(cert(["machineid:deploy"], {EXTENSION.encode(): granted}), "env=prod,tier=db").stdout == ""
    assert principals(cert(["machineid:deploy"], {}), "env=prod").stdout == ""  # no extension: no login
