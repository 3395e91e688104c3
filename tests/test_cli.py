"""`machineid ctl` end to end, as an operator runs it: subprocesses against a real server, asserting what the
operator sees (stdout, exit codes, error messages that name the field and the fix) and what ends up stored."""

from __future__ import annotations

import hashlib
import json
import re
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import ssh

from tests.conftest import ServerProc, run_cli

Proc = subprocess.CompletedProcess[str]

# Connection settings cleared, so a test sees only the flags or variables it passes itself.
NO_CONNECTION_ENV = {"MACHINEID_AUTH_SERVER": "", "MACHINEID_IDENTITY": "", "MACHINEID_DATA_DIR": ""}

# The iam token of Teleport's Machine ID on AWS guide.
IAM_TOKEN: dict[str, Any] = {
    "kind": "token",
    "version": "v2",
    "metadata": {"name": "iam-token", "expires": "3000-01-01T00:00:00Z"},
    "spec": {
        "roles": ["Bot"],
        "join_method": "iam",
        "bot_name": "robot",
        "allow": [{"aws_account": "111111111111",
                   "aws_arn": "arn:aws:sts::111111111111:assumed-role/teleport-bot-role/i-*"}],
    },
}


# ---------------------------------------------------------------- helpers


def fails(proc: Proc, *expected: str) -> str:
    """Assert the command failed as a user would notice (non-zero exit, `error:` on stderr naming each expected
    text) and return stderr for further checks."""
    assert proc.returncode != 0, f"expected failure, got exit 0:\n{proc.stdout}"
    assert proc.stderr.startswith("error: "), proc.stderr
    for text in expected:
        assert text in proc.stderr, f"{text!r} not in stderr: {proc.stderr}"
    return proc.stderr


def assert_missing(server: ServerProc, ref: str) -> None:
    """The resource is not stored: `get` exits non-zero saying so."""
    fails(server.ctl("get", ref, check=False), "not found")


def role_doc(name: str, logins: list[str] | None = None, **spec: Any) -> dict[str, Any]:
    """A role document as a user writes it by hand."""
    allow: dict[str, Any] = {"logins": logins or ["ubuntu"], "node_labels": {"env": ["staging"]}}
    return {"kind": "role", "version": "v5", "metadata": {"name": name}, "spec": {"allow": allow, **spec}}


def write_docs(path: Path, *docs: dict[str, Any]) -> Path:
    """One YAML file, one document per resource (what `create -f` reads)."""
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return path


def get_doc(server: ServerProc, ref: str) -> dict[str, Any]:
    """Read one resource back through the CLI's own JSON output."""
    doc: dict[str, Any] = json.loads(server.ctl("get", ref, "--format=json").stdout)
    return doc


def get_docs(server: ServerProc, kind: str) -> list[dict[str, Any]]:
    """List a kind as JSON; the CLI prints a bare object for a single result, so normalize to a list."""
    out = json.loads(server.ctl("get", kind, "--format=json").stdout)
    return out if isinstance(out, list) else [out]


def _columns(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Column names and bounds of a `--format=text` table, from the dash line (cells such as
    `Allowed to login as` contain spaces, so splitting on whitespace would be wrong)."""
    header, dashes = text.splitlines()[:2]
    spans, pos = [], 0
    for dash in dashes.split(" "):
        spans.append((pos, pos + len(dash)))
        pos += len(dash) + 1
    return [header[a:b].strip() for a, b in spans], spans


def table_headers(text: str) -> list[str]:
    return _columns(text)[0]


def parse_table(text: str) -> list[dict[str, str]]:
    """Rows of a `--format=text` table, keyed by header."""
    names, spans = _columns(text)
    return [{n: row[a:b].strip() for n, (a, b) in zip(names, spans, strict=True)} for row in text.splitlines()[2:]]


def rows_by(text: str, column: str) -> dict[str, dict[str, str]]:
    return {r[column]: r for r in parse_table(text)}


@dataclass
class Enrollment:
    """What `bots add` (or `tokens add`) tells the operator to hand to the machine."""

    token: str
    pin: str
    flags: dict[str, str]


def parse_enrollment(stdout: str) -> Enrollment:
    """Pull the token, CA pin and the agent command's flags out of the human-readable output."""
    token = re.search(r"^The bot token: (\S+)$", stdout, re.M)
    pin = re.search(r"^CA pin: (\S+)$", stdout, re.M)
    command = stdout[stdout.index("machineid bot start"):].replace("\\\n", " ")
    assert token and pin, stdout
    return Enrollment(token.group(1), pin.group(1), dict(re.findall(r"--([\w-]+)=(\S+)", command)))


def spki_pin(cert_pem: str) -> str:
    """The CA pin as Teleport defines it: sha256 of the DER SubjectPublicKeyInfo (computed here independently)."""
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    der = cert.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def raw_ed25519(openssh_key: str) -> bytes:
    """Raw bytes of an `ssh-ed25519 AAAA...` key, to compare keys regardless of comments."""
    key = ssh.load_ssh_public_key(openssh_key.encode())
    assert isinstance(key, ed25519.Ed25519PublicKey)
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ctl_as(identity: Path | str, address: str, *args: str, check: bool = True) -> Proc:
    """Run ctl as a remote user would: address and identity file only, no access to the server's data dir."""
    return run_cli("ctl", "--auth-server", address, "--identity", str(identity), *args, env=NO_CONNECTION_ENV,
                   check=check)


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def printed_secrets() -> list[str]:
    """Every join token secret the CLI printed in this module; none may reach the audit log or the server log."""
    return []


@pytest.fixture(scope="module")
def added_bot(server: ServerProc, printed_secrets: list[str]) -> Iterator[tuple[str, Enrollment, Proc]]:
    """One `bots add` shared by the tests that only read its output or the bot it made."""
    proc = server.ctl("bots", "add", "builder", "--roles=access", "--logins=root")
    enrollment = parse_enrollment(proc.stdout)
    printed_secrets.append(enrollment.token)
    yield "builder", enrollment, proc


@pytest.fixture(scope="module")
def alice_identity(server: ServerProc, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Proc]:
    """alice, an auditor, and an identity file issued for her by `auth sign`."""
    server.ctl("users", "add", "alice", "--roles=auditor")
    out = tmp_path_factory.mktemp("alice") / "alice.identity"
    return out, server.ctl("auth", "sign", "--user", "alice", "--out", str(out))


# ---------------------------------------------------------------- get


def test_get_roles_text_is_the_tctl_table(server: ServerProc) -> None:
    """Operators read roles at a glance: the tctl column layout, with templates and wildcards spelled out."""
    out = server.ctl("get", "roles", "--format=text").stdout
    assert table_headers(out) == ["Role", "Allowed to login as", "Node Labels", "Access to resources"]
    rows = rows_by(out, "Role")
    assert {"access", "editor", "auditor"} <= rows.keys()
    assert rows["access"]["Allowed to login as"] == "{{internal.logins}}"
    assert rows["access"]["Node Labels"] == "<all nodes>"
    assert rows["editor"]["Access to resources"] == "*:*"
    assert rows["auditor"]["Allowed to login as"] == ""
    assert "role:list,read" in rows["auditor"]["Access to resources"]
    assert "token" not in rows["auditor"]["Access to resources"]  # auditors never see join tokens


@pytest.mark.parametrize("form", ["yaml", "json"])
def test_get_roles_machine_formats_are_resource_documents(server: ServerProc, form: str) -> None:
    """YAML and JSON output are complete documents (kind/version/metadata/spec) that tools and `create` accept."""
    out = server.ctl("get", "roles", f"--format={form}").stdout
    docs = list(yaml.safe_load_all(out)) if form == "yaml" else json.loads(out)
    by_name = {d["metadata"]["name"]: d for d in docs}
    assert {"access", "editor", "auditor"} <= by_name.keys()
    for doc in docs:
        assert doc["kind"] == "role" and doc["version"] == "v5"
        assert doc["metadata"]["revision"] and isinstance(doc["spec"], dict)
    assert by_name["access"]["spec"]["allow"]["logins"] == ["{{internal.logins}}"]


def test_get_one_role_as_yaml(server: ServerProc) -> None:
    """`get role/NAME` prints exactly that one document (the starting point of the edit flow)."""
    docs = list(yaml.safe_load_all(server.ctl("get", "role/access").stdout))
    assert len(docs) == 1
    assert docs[0]["kind"] == "role" and docs[0]["metadata"]["name"] == "access"
    assert docs[0]["spec"]["allow"]["node_labels"] == {"*": ["*"]}


# ---------------------------------------------------------------- create


def test_create_role_then_recreate_needs_force(server: ServerProc, tmp_path: Path) -> None:
    """A plain `create` never overwrites silently; the error says how to overwrite, and --force does."""
    path = write_docs(tmp_path / "role.yaml", role_doc("cli-dev"))
    assert 'role "cli-dev" has been created' in server.ctl("create", "-f", str(path)).stdout

    fails(server.ctl("create", "-f", str(path), check=False), "already exists", "--force")

    write_docs(path, role_doc("cli-dev", logins=["deploy"]))
    assert 'role "cli-dev" has been updated' in server.ctl("create", "--force", "-f", str(path)).stdout
    assert get_doc(server, "role/cli-dev")["spec"]["allow"]["logins"] == ["deploy"]


def test_force_create_of_a_new_resource_says_created(server: ServerProc, tmp_path: Path) -> None:
    """--force may create or overwrite; the message must tell the operator which one happened."""
    path = write_docs(tmp_path / "role.yaml", role_doc("cli-forced"))
    assert 'role "cli-forced" has been created' in server.ctl("create", "--force", "-f", str(path)).stdout


def test_create_from_stdin_with_several_documents(server: ServerProc) -> None:
    """`-f -` reads a pipe; documents apply in order, so a user can reference a role created just above it."""
    text = yaml.safe_dump_all([role_doc("cli-piped"),
                               {"kind": "user", "version": "v2", "metadata": {"name": "piper"},
                                "spec": {"roles": ["cli-piped"]}}])
    out = server.ctl("create", "-f", "-", input=text).stdout
    assert 'role "cli-piped" has been created' in out and 'user "piper" has been created' in out
    assert get_doc(server, "user/piper")["spec"]["roles"] == ["cli-piped"]


def test_edit_flow_is_conditional_on_revision(server: ServerProc, tmp_path: Path) -> None:
    """get > edit > create applies without --force because of the revision, and the same stale file cannot
    clobber the newer version: the error names the stale revision."""
    server.ctl("create", "-f", str(write_docs(tmp_path / "new.yaml", role_doc("cli-edit"))))
    text = server.ctl("get", "role/cli-edit", "--format=yaml").stdout
    stale_revision = yaml.safe_load(text)["metadata"]["revision"]
    path = tmp_path / "edited.yaml"
    path.write_text(text.replace("- ubuntu", "- deploy"))

    assert 'role "cli-edit" has been updated' in server.ctl("create", "-f", str(path)).stdout
    fails(server.ctl("create", "-f", str(path), check=False), stale_revision, "stale")
    assert get_doc(server, "role/cli-edit")["spec"]["allow"]["logins"] == ["deploy"]


# (case, bad document, texts the error must contain: the document, the field path, the offending value or fix)
BAD_DOCUMENTS: list[tuple[str, dict[str, Any], list[str]]] = [
    ("typo", {**role_doc("x"), "spec": {"alow": {"logins": ["root"]}}},
     ["document 2 (role): spec.alow: unknown field", 'did you mean "allow"']),
    ("login", role_doc("x", logins=["Root Admin"]), ["document 2 (role): spec.allow.logins", '"Root Admin"']),
    ("ttl-negative", role_doc("x", options={"max_session_ttl": "-5h"}),
     ["document 2 (role): spec.options.max_session_ttl", '"-5h"']),
    ("ttl-garbage", role_doc("x", options={"max_session_ttl": "banana"}),
     ["document 2 (role): spec.options.max_session_ttl", '"banana" is not a duration']),
    ("arn", {**IAM_TOKEN, "spec": {**IAM_TOKEN["spec"],
                                   "allow": [{"aws_account": "111111111111", "aws_arn": "arm:aws:sts::1:role/*"}]}},
     ["document 2 (token): spec.allow[0].aws_arn", "write an ARN like arn:aws:sts::"]),
    ("kind", {"kind": "widget", "version": "v1", "metadata": {"name": "x"}, "spec": {}},
     ['document 2: kind: "widget" is not a resource kind', "role, token"]),
]


def test_bad_documents_fail_naming_the_field_and_write_nothing(server: ServerProc, tmp_path: Path) -> None:
    """Every document is checked before any is written: a valid role ahead of the bad one must not be stored.
    (One test, one listing at the end, to keep the subprocess count down.)"""
    canaries = set()
    for case, bad_doc, expected in BAD_DOCUMENTS:
        canary = f"cli-canary-{case}"
        canaries.add(canary)
        path = write_docs(tmp_path / f"{case}.yaml", role_doc(canary), bad_doc)
        err = fails(server.ctl("create", "-f", str(path), check=False), *expected)
        assert "Traceback" not in err and err.count("\n") == 1, f"{case}: {err}"
    stored = {d["metadata"]["name"] for d in get_docs(server, "roles")}
    assert not canaries & stored


def test_create_bot_document_then_update_with_force(server: ServerProc, tmp_path: Path,
                                                    printed_secrets: list[str]) -> None:
    """A bot document enrolls like `bots add`; re-applying needs --force, which updates roles and traits."""
    doc: dict[str, Any] = {"kind": "bot", "version": "v1", "metadata": {"name": "cli-yaml-bot"},
                           "spec": {"roles": ["access"], "traits": {"logins": ["deploy"]}}}
    path = write_docs(tmp_path / "bot.yaml", doc)
    enrollment = parse_enrollment(server.ctl("create", "-f", str(path)).stdout)
    printed_secrets.append(enrollment.token)
    assert re.fullmatch(r"[0-9a-f]{32}", enrollment.token)

    fails(server.ctl("create", "-f", str(path), check=False), "already exists", "--force")

    doc["spec"]["traits"]["logins"] = ["deploy", "ci"]
    write_docs(path, doc)
    assert 'bot "cli-yaml-bot" has been updated' in server.ctl("create", "--force", "-f", str(path)).stdout
    assert rows_by(server.ctl("bots", "ls").stdout, "Bot")["cli-yaml-bot"]["Logins"] == "deploy,ci"


def test_iam_token_from_the_guide_then_bot_joins_with_it(server: ServerProc, tmp_path: Path) -> None:
    """The AWS guide's flow: create the iam token, then `bots add --token=iam-token`; the agent command must use
    the iam join method and the token's (non-secret) name."""
    out = server.ctl("create", "-f", str(write_docs(tmp_path / "iam.yaml", IAM_TOKEN))).stdout
    assert 'token "iam-token" has been created' in out
    row = rows_by(server.ctl("tokens", "ls").stdout, "Token")["iam-token"]
    assert (row["Join Method"], row["Bot"], row["Expires"]) == ("iam", "robot", "3000-01-01T00:00:00Z")

    enrollment = parse_enrollment(server.ctl("bots", "add", "robot", "--roles=access", "--token=iam-token").stdout)
    assert enrollment.token == "iam-token"
    assert enrollment.flags["join-method"] == "iam" and enrollment.flags["token"] == "iam-token"


# ---------------------------------------------------------------- rm


def test_rm_role_and_rm_of_missing(server: ServerProc, tmp_path: Path) -> None:
    """rm deletes; deleting again fails loudly instead of pretending success."""
    server.ctl("create", "-f", str(write_docs(tmp_path / "r.yaml", role_doc("cli-doomed"))))
    assert 'role "cli-doomed" has been deleted' in server.ctl("rm", "role/cli-doomed").stdout
    fails(server.ctl("rm", "role/cli-doomed", check=False), "not found", "cli-doomed")


# ---------------------------------------------------------------- bots


def test_bots_add_prints_token_pin_and_agent_command(server: ServerProc,
                                                     added_bot: tuple[str, Enrollment, Proc]) -> None:
    """Everything the operator copies to the machine is printed, and the agent command is ready to paste."""
    _, enrollment, proc = added_bot
    assert re.fullmatch(r"[0-9a-f]{32}", enrollment.token)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", enrollment.pin)
    assert "machineid bot start" in proc.stdout
    assert enrollment.flags["token"] == enrollment.token
    assert enrollment.flags["ca-pin"] == enrollment.pin
    assert enrollment.flags["auth-server"] == server.address
    assert enrollment.flags["join-method"] == "token"


def test_bots_add_with_unknown_role_names_the_field(server: ServerProc) -> None:
    """A typo in --roles is reported against spec.roles[0] and no half-made bot is left behind."""
    fails(server.ctl("bots", "add", "cli-typo-bot", "--roles=acess", check=False), "spec.roles[0]", '"acess"')
    assert_missing(server, "bot/cli-typo-bot")


def test_bots_ls_shows_the_bot(server: ServerProc, added_bot: tuple[str, Enrollment, Proc]) -> None:
    name, _, _ = added_bot
    row = rows_by(server.ctl("bots", "ls").stdout, "Bot")[name]
    assert row == {"Bot": name, "User": f"bot-{name}", "Roles": "access", "Logins": "root", "Join Method": "token",
                   "Recoveries": "-", "Generation": "0", "Locked": "no"}


def test_bots_rm_removes_bot_user_role_and_tokens(server: ServerProc, printed_secrets: list[str]) -> None:
    """Deleting a bot must not leave a usable user, role or join token behind."""
    enrollment = parse_enrollment(server.ctl("bots", "add", "cli-gone", "--roles=access").stdout)
    printed_secrets.append(enrollment.token)
    assert 'bot "cli-gone" has been deleted' in server.ctl("bots", "rm", "cli-gone").stdout
    for ref in ("bot/cli-gone", "user/bot-cli-gone", "role/bot-cli-gone"):
        assert_missing(server, ref)
    assert enrollment.token not in {t["metadata"]["name"] for t in get_docs(server, "tokens")}


def test_bots_unlock(server: ServerProc, added_bot: tuple[str, Enrollment, Proc]) -> None:
    """Unlocking a bot that is not locked says so; a wrong name is an error."""
    name, _, _ = added_bot
    fails(server.ctl("bots", "unlock", name, check=False), "is not locked")
    fails(server.ctl("bots", "unlock", "cli-no-such-bot", check=False), "not found")


# ---------------------------------------------------------------- tokens


def test_tokens_add_ls_rm(server: ServerProc, added_bot: tuple[str, Enrollment, Proc],
                          printed_secrets: list[str]) -> None:
    """A fresh token for an existing bot: printed once, listed with its expiry, removable."""
    name, _, _ = added_bot
    before = datetime.now(UTC)
    proc = server.ctl("tokens", "add", "--type=bot", f"--bot-name={name}", "--ttl=30m")
    enrollment = parse_enrollment(proc.stdout)
    printed_secrets.append(enrollment.token)
    assert re.fullmatch(r"[0-9a-f]{32}", enrollment.token)
    assert "expire in 30 minutes" in proc.stdout

    row = rows_by(server.ctl("tokens", "ls").stdout, "Token")[enrollment.token]
    assert (row["Join Method"], row["Bot"]) == ("token", name)
    expires = datetime.fromisoformat(row["Expires"].replace("Z", "+00:00"))
    assert timedelta(minutes=29) < expires - before < timedelta(minutes=31)

    assert 'token "(secret)" has been deleted' in server.ctl("tokens", "rm", enrollment.token).stdout
    assert enrollment.token not in server.ctl("tokens", "ls").stdout


@pytest.mark.parametrize("ttl", ["-5m", "banana"])
def test_tokens_add_rejects_bad_ttl(server: ServerProc, added_bot: tuple[str, Enrollment, Proc], ttl: str) -> None:
    name, _, _ = added_bot
    fails(server.ctl("tokens", "add", "--type=bot", f"--bot-name={name}", f"--ttl={ttl}", check=False),
          "--ttl", ttl)


# ---------------------------------------------------------------- users


def test_users_add_ls_rm(server: ServerProc) -> None:
    server.ctl("users", "add", "carol", "--roles=auditor", "--logins=carol")
    row = rows_by(server.ctl("users", "ls").stdout, "User")["carol"]
    assert (row["Roles"], row["Logins"], row["Bot"]) == ("auditor", "carol", "")
    assert 'user "carol" has been deleted' in server.ctl("users", "rm", "carol").stdout
    assert "carol" not in rows_by(server.ctl("users", "ls").stdout, "User")


# ---------------------------------------------------------------- auth


def test_auth_export_user_ca_is_a_trusted_user_ca_keys_line(server: ServerProc,
                                                            alice_identity: tuple[Path, Proc]) -> None:
    """One key per line, as sshd's TrustedUserCAKeys wants, and it is the key that signs users' SSH certs."""
    lines = server.ctl("auth", "export", "--type=user").stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ssh-ed25519 AAAA")
    ca_key = raw_ed25519(lines[0])

    cert_line = next(ln for ln in alice_identity[0].read_text().splitlines() if "-cert-v01@openssh.com " in ln)
    cert = ssh.load_ssh_public_identity(cert_line.encode())
    assert isinstance(cert, ssh.SSHCertificate) and cert.type == ssh.SSHCertificateType.USER
    cert.verify_cert_signature()
    signer = cert.signature_key()
    assert isinstance(signer, ed25519.Ed25519PublicKey)
    assert signer.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw) == ca_key


def test_auth_export_host_ca_is_a_known_hosts_line(server: ServerProc) -> None:
    out = server.ctl("auth", "export", "--type=host").stdout
    cluster = re.escape(server.cluster_name)
    m = re.fullmatch(rf"@cert-authority \*\.{cluster},{cluster} (ssh-ed25519 \S+) type=host\n", out)
    assert m, out
    raw_ed25519(m.group(1))


def test_auth_export_tls_ca_matches_the_pin_bots_add_printed(server: ServerProc,
                                                             added_bot: tuple[str, Enrollment, Proc]) -> None:
    """The pin an operator hands out must verify against the CA the cluster exports, or no bot can join."""
    out = server.ctl("auth", "export", "--type=tls").stdout
    assert out.startswith("-----BEGIN CERTIFICATE-----") and out.count("BEGIN CERTIFICATE") == 1
    cert = x509.load_pem_x509_certificate(out.encode())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert spki_pin(out) == added_bot[1].pin


def test_auth_sign_writes_a_private_identity_file(alice_identity: tuple[Path, Proc]) -> None:
    path, proc = alice_identity
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert f"has been written to {path}" in proc.stdout
    assert "PRIVATE KEY" in path.read_text()


def test_identity_file_allows_auditor_reads(server: ServerProc, alice_identity: tuple[Path, Proc]) -> None:
    rows = rows_by(ctl_as(alice_identity[0], server.address, "get", "roles", "--format=text").stdout, "Role")
    assert {"access", "editor", "auditor"} <= rows.keys()


def test_identity_file_refuses_writes(server: ServerProc, alice_identity: tuple[Path, Proc], tmp_path: Path) -> None:
    """An auditor cannot change the cluster; the refusal says who may not do what, and nothing is stored."""
    path = write_docs(tmp_path / "r.yaml", role_doc("cli-by-alice"))
    fails(ctl_as(alice_identity[0], server.address, "create", "-f", str(path), check=False),
          "alice may not create role")
    assert_missing(server, "role/cli-by-alice")


def test_environment_replaces_connection_flags(server: ServerProc, alice_identity: tuple[Path, Proc]) -> None:
    env = {**NO_CONNECTION_ENV, "MACHINEID_AUTH_SERVER": server.address, "MACHINEID_IDENTITY": str(alice_identity[0])}
    out = run_cli("ctl", "users", "ls", env=env).stdout
    assert rows_by(out, "User")["alice"]["Roles"] == "auditor"


def test_no_connection_info_says_what_to_set() -> None:
    proc = run_cli("ctl", "get", "roles", env=NO_CONNECTION_ENV, check=False)
    fails(proc, "--auth-server", "--identity", "MACHINEID_AUTH_SERVER", "MACHINEID_IDENTITY", "--data-dir")


# ---------------------------------------------------------------- audit (keep last: checks every secret above)


def test_audit_records_events_but_no_token_secret(server: ServerProc, added_bot: tuple[str, Enrollment, Proc],
                                                  printed_secrets: list[str]) -> None:
    """Audit records who did what to which token, yet never the secret a bot could join with; nor does the log."""
    name, _, _ = added_bot
    enrollment = parse_enrollment(server.ctl("tokens", "add", "--type=bot", f"--bot-name={name}").stdout)
    printed_secrets.append(enrollment.token)

    text = server.ctl("audit").stdout
    events = json.loads(server.ctl("audit", "--format=json").stdout)
    assert table_headers(text) == ["ID", "Time", "Actor", "Action", "Target", "Outcome"]
    actions = {(e["actor"], e["action"], e["target"]) for e in events}
    assert ("admin", "bot.create", f"bot/{name}") in actions
    assert any(a == "token.create" and t.startswith("token/token-") for _, a, t in actions)

    log = server.log_text()
    assert len(printed_secrets) >= 2
    for secret in printed_secrets:
        assert secret not in text
        assert secret not in json.dumps(events)
        assert secret not in log


def test_server_start_on_a_taken_port_says_so_and_leaves_nothing_behind(server: ServerProc, tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    out = run_cli("server", "start", "--data-dir", str(tmp_path / "data"), "--listen", server.address,
                  env={"TMPDIR": str(tmp)}, check=False)
    assert out.returncode == 7  # a conflict: the port is taken
    assert f"--listen {server.address}: cannot listen there (Address already in use)" in out.stderr
    assert "Traceback" not in out.stderr
    assert list(tmp.iterdir()) == []  # the internal sockets' directory was removed
    assert not (tmp_path / "data" / "server.json").exists()
