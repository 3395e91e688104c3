"""`machineid node setup`: make a plain OpenSSH node trust the cluster and enforce node labels at login.

It installs the self-contained principals helper, the user CA, an empty revocation list, the node's labels (static
mode, for a node without the agent) or the agent's settings (join mode), and the sshd drop-in; it checks every path
the way sshd will before writing anything (so a node never ends up refusing everyone without saying why), writes
atomically, asks `sshd -t` before it reloads sshd, and puts everything back when sshd rejects the result. A second
run with the same settings changes nothing and says so. `--dry-run` prints every file and changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from machineid.model import codec
from machineid.model.errors import PermissionDeniedError, ValidationError
from machineid.node import files, helper, sshd
from machineid.node.files import Change, Planned
from machineid.node.layout import STATE_FORMAT, Layout
from machineid.node.sshd_paths import Account, Problem, check_chain, check_interpreter

DEFAULT_PYTHON = Path("/usr/bin/python3")
# What to do when a directory above the node's root is one sshd refuses (a temporary directory, a user's home).
ROOT_FIX = ("choose a --root (or MACHINEID_NODE_ROOT) whose every directory up to / only root can write, such as "
            "/var/lib/machineid-node, or the default /")
HELPER_STATE_LINE = "STATE_PATH = "


@dataclass(frozen=True)
class Join:
    """Join mode: the node agent's settings (`node start` reads them from Layout.config)."""

    name: str
    auth_server: str
    ca_pins: list[str]
    join_method: str
    token: str  # the token itself for join_method token (a secret: never printed), else the token's name


@dataclass(frozen=True)
class Options:
    layout: Layout
    labels: dict[str, str] | None = None  # static mode
    name: str = ""
    join: Join | None = None
    user_ca: str | None = None  # the CA's public key line(s)
    host_key: Path | None = None  # PREFIX: PREFIX, PREFIX.pub, PREFIX-cert.pub
    run_as: str = "nobody"
    python: Path = DEFAULT_PYTHON
    sshd_config: Path | None = None
    sshd_pid_file: Path | None = None
    reload: bool = True
    dry_run: bool = False
    join_now: bool = False  # --join: one join and sync before the reload, so sshd starts with a host certificate
    now: float = field(default_factory=time.time)

    @property
    def main_config(self) -> Path:
        return self.sshd_config or self.layout.sshd_config

    @property
    def pid_file(self) -> Path:
        return self.sshd_pid_file or self.layout.at("run/sshd.pid")

    @property
    def join_token_file(self) -> Path:
        return self.layout.etc / "join-token"


def render_helper(python: Path, state: Path) -> bytes:
    """The helper's own source, with the interpreter in its `#!` line and this node's state file."""
    lines = Path(helper.__file__).read_text().splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith(HELPER_STATE_LINE)]
    if not lines[0].startswith("#!") or len(at) != 1:
        raise AssertionError("machineid/node/helper.py lost its #! line or its STATE_PATH line")
    lines[0] = f"#!{python} -IS\n"
    lines[at[0]] = f"STATE_PATH = {json.dumps(str(state))}  # this node's, written by `machineid node setup`\n"
    return "".join(lines).encode()


def state_json(opts: Options, existing: bytes | None) -> bytes:
    """A static node's state: its labels with no freshness limit (max_age 0: nothing refreshes it). The same labels
    as last time keep the file as it is, so a second run changes nothing."""
    assert opts.labels is not None
    state = {"format": STATE_FORMAT, "node": opts.name, "cluster": "", "labels": opts.labels, "revision": "",
             "refreshed_at": int(opts.now), "max_age": 0}
    if existing is not None:
        try:
            old = json.loads(existing)
            if isinstance(old, dict) and {**old, "refreshed_at": state["refreshed_at"]} == state:
                return existing
        except ValueError:
            pass
    return (json.dumps(state, indent=2, sort_keys=True) + "\n").encode()


def agent_config(opts: Options) -> bytes:
    """Layout.config, as the design fixes it (`node start` refuses unknown keys)."""
    j = opts.join
    assert j is not None
    from machineid.node.config import NodeConfig, render

    config = NodeConfig(name=j.name, auth_server=j.auth_server, ca_pins=list(j.ca_pins), join_method=j.join_method,
                        token=str(opts.join_token_file) if j.join_method == "token" else j.token,
                        sshd_pid_file=str(opts.pid_file) if opts.reload else "")
    return (sshd.HEADER + render(config)).encode()


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _host_key_files(opts: Options) -> list[Planned]:
    """The host key and certificate `ctl nodes add --out PREFIX` made (copied here), or, without --host-key, a new
    key when the node has none (the agent gets it signed in join mode)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from machineid.api import certs

    layout = opts.layout
    pub = layout.host_key.with_name(layout.host_key.name + ".pub")
    if opts.host_key is None:
        key = ed25519.Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        return [Planned(layout.host_key, private, 0o600, "the node's host key (generated when missing)",
                        "(a new Ed25519 private key, not shown)", only_if_missing=True, read_at_start=True),
                Planned(pub, (certs.ssh_public_key_line(key.public_key()) + "\n").encode(), 0o644,
                        "its public key", only_if_missing=True)]
    prefix = opts.host_key
    cert_path = prefix.with_name(prefix.name + "-cert.pub")
    try:
        private = prefix.read_bytes()
        cert_text = cert_path.read_bytes()
        given = serialization.load_ssh_private_key(private, None)
        cert = serialization.load_ssh_public_identity(cert_text)
    except (OSError, ValueError, TypeError) as e:
        raise ValidationError(f"--host-key {prefix}: needs the host key and {cert_path} as `machineid ctl nodes add "
                              f"--out {prefix}` writes them ({e})") from None
    ssh = serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    if not isinstance(cert, serialization.SSHCertificate) or \
            cert.public_key().public_bytes(*ssh) != given.public_key().public_bytes(*ssh):
        raise ValidationError(f"--host-key {prefix}: {cert_path} is not a certificate for that key")
    out = [Planned(layout.host_key, private, 0o600, f"the node's host key (from {prefix})", "(private key, not shown)",
                   read_at_start=True),
           Planned(layout.host_cert, cert_text, 0o644, f"its host certificate (from {cert_path})", read_at_start=True)]
    src_pub = prefix.with_name(prefix.name + ".pub")
    if src_pub.is_file():
        out.append(Planned(pub, src_pub.read_bytes(), 0o644, f"its public key (from {src_pub})"))
    return out


def plan(opts: Options, dropin: list[str] | None) -> list[Planned]:
    layout = opts.layout
    out = [Planned(layout.principals_helper, render_helper(opts.python, layout.state), 0o755,
                   f"the principals helper sshd runs as {opts.run_as}")]
    if opts.labels is not None:
        out.append(Planned(layout.state, state_json(opts, _read(layout.written(layout.state))), 0o644,
                           "the node's labels, for the helper (no freshness limit: nothing refreshes them)"))
    if opts.join is not None:
        if opts.join.join_method == "token":
            out.append(Planned(opts.join_token_file, opts.join.token.encode() + b"\n", 0o600, "the join token",
                               "(the join token, not shown)"))
        out.append(Planned(layout.config, agent_config(opts), 0o600, "the node agent's settings (`node start`)"))
    if opts.user_ca is not None:
        out.append(Planned(layout.user_ca, opts.user_ca.encode(), 0o644, "the cluster's user CA (TrustedUserCAKeys)"))
    out.append(Planned(layout.revoked_keys, b"", 0o644, "an empty revocation list (RevokedKeys; the agent refreshes "
                                                       "it)", "(empty)", only_if_missing=True))
    out += _host_key_files(opts)
    if dropin is not None:
        out.append(Planned(layout.sshd_dropin, (sshd.HEADER + "\n".join(dropin) + "\n").encode(), 0o644,
                           "the sshd drop-in", read_at_start=True))
    return out


def _refuse(title: str, problems: list[Problem] | list[str]) -> ValidationError:
    return ValidationError(title + ":\n" + "\n".join(f"  {p}" for p in problems))


def preflight(opts: Options, account: Account | None) -> list[Problem]:
    """Before anything is written: the interpreter, and the directories the helper and the state go into (or
    their nearest existing parents), as sshd and the helper's user will find them."""
    layout = opts.layout
    problems = check_interpreter(opts.python, account)
    for d in (layout.helper_dir, layout.etc):
        problems += check_chain(d, reader=account, directory=True, elsewhere=ROOT_FIX)
    return list(dict.fromkeys(problems))


def postflight(opts: Options, account: Account) -> list[Problem]:
    layout = opts.layout
    problems = check_chain(layout.principals_helper, reader=account, read=True, execute=True, elsewhere=ROOT_FIX)
    if layout.state.exists():
        problems += check_chain(layout.state, reader=account, read=True, elsewhere=ROOT_FIX)
    return list(dict.fromkeys(problems))


def run_helper_check(opts: Options, account: Account) -> tuple[int, str]:
    """`principals --check` as the helper's user, with an empty environment: what sshd will get."""
    try:
        proc = subprocess.run([str(opts.layout.principals_helper), "--check"], capture_output=True, text=True,
                              timeout=30, env={}, cwd="/", user=account.uid, group=account.gid,
                              extra_groups=sorted(account.gids))
    except OSError as e:
        return 127, f"cannot run it as {account.name}: {e}"
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _describe(change: Change, dry_run: bool) -> list[str]:
    p = change.planned
    verb = {files.NEW: "would write" if dry_run else "wrote", files.CHANGED: "would replace" if dry_run else
            "replaced", files.UNCHANGED: "unchanged", files.KEPT: "kept (exists)"}[change.status]
    head = f"{verb}: {p.path} (mode {p.mode:04o}) - {p.what}"
    if not dry_run or change.status in (files.UNCHANGED, files.KEPT):
        return [head]
    if p.summary or p.path.name == "principals":
        summary = p.summary or (f"({len(p.data)} bytes, sha256 {hashlib.sha256(p.data).hexdigest()[:16]}...; "
                                f"{p.data.splitlines()[0].decode()})")
        return [head, f"    {summary}"]
    return [head, *(f"    | {line}" for line in p.data.decode().splitlines())]


def setup(opts: Options, say: Callable[[str], None]) -> int:
    layout = opts.layout
    image = layout.dest_dir is not None
    owner_root = os.geteuid() == 0
    if not owner_root and not opts.dry_run and not image:
        raise PermissionDeniedError("node setup writes root-owned files that sshd trusts: run it as root (--dry-run "
                                    "shows what it would write; --dest-dir writes an image's files)")
    account: Account | None = None
    if not image:
        try:
            account = Account.lookup(opts.run_as)
        except KeyError:
            raise ValidationError(f"--run-as: there is no user {opts.run_as!r} on this machine") from None
        problems = preflight(opts, account)
        if problems:
            raise _refuse("node setup: refusing; sshd would refuse the principals helper, and every login with it",
                          problems)

    main_path = layout.written(opts.main_config)
    main_text = main_path.read_text(errors="replace") if main_path.is_file() else None
    lines = sshd.dropin_lines(layout, opts.run_as, sshd.default_host_keys(main_text or "", layout))
    included = main_text is None or sshd.includes_dropin(main_text, layout)
    changes = [files.plan_change(p, layout.written(p.path), owner_root) for p in plan(opts, lines if included
                                                                                        else None)]
    pending = [c for c in changes if c.status in (files.NEW, files.CHANGED)]
    missing_include = (f"\n{opts.main_config} does not include {layout.sshd_dropin_dir}/*.conf: add these lines to "
                       "it (before any Match block), then run `machineid node setup` again:\n" +
                       "\n".join(f"  {ln}" for ln in lines))
    if opts.dry_run:
        for c in changes:
            for line in _describe(c, True):
                say(line)
        if not included:
            say(missing_include)
        say(f"\n--dry-run: nothing written; {len(pending)} file(s) would change" if pending else
            "\n--dry-run: nothing would change; the node is set up")
        return 0

    written: list[Change] = []
    created: list[Path] = []
    checked: list[str] = []  # what the checks found, said after the files
    try:
        for c in pending:
            created += files.write_atomic(c.target, c.planned.data, c.planned.mode, owner_root)
            written.append(c)
        if not image:
            assert account is not None
            _verify(opts, account, main_text is not None and included, lines, checked.append)
    except BaseException:
        files.undo(written, created, owner_root)
        if written:
            say(f"put back the {len(written)} file(s) written (the node is as it was)")
        raise
    for c in changes:
        for line in _describe(c, False):
            say(line)
    for line in checked:
        say(line)
    if not included:
        say(missing_include)

    host_cert_renewed = False
    if opts.join_now and not image:
        from machineid.node import agent

        result = agent.sync_once(layout, reload=False)
        host_cert_renewed = result.host_cert_renewed
        labels = ", ".join(f"{k}={v}" for k, v in sorted(result.labels.items())) or "none"
        say(f"\n{'joined the cluster and synced' if result.joined else 'synced with the cluster'}: labels "
            f"{labels} (revision {result.revision}); host certificate "
            + (f"valid until {codec.format_time(result.host_cert_expires)}" if result.host_cert_expires else
               "not issued yet")
            + "\nkeep it fresh: run `machineid node start` as a service (it renews and heartbeats)")
    if image:
        say(f"\nwritten under {layout.dest_dir} for an image; sshd checks them when the node boots")
    elif main_text is None:
        say(f"\nno sshd_config at {opts.main_config}: not checked with sshd -t, and sshd not reloaded")
    elif host_cert_renewed or any(c.planned.read_at_start for c in written):
        say("\n" + (sshd.reload(opts.pid_file) if opts.reload else
                    "not reloaded (--no-reload): reload sshd to use the new settings"))
    if opts.join is None and not layout.written(layout.host_cert).exists():
        say(f"\nno host certificate at {layout.host_cert}: bots' ssh will not trust this node until it has one; "
            "register the node with `machineid ctl nodes add NAME --addr HOST:PORT --out PREFIX` and run this again "
            "with --host-key PREFIX")
    say(f"\n{len(written)} file(s) written, {len(changes) - len(written)} unchanged" if written else
        "\nnothing changed: the node is already set up")
    return 0


def _verify(opts: Options, account: Account, dropin_in_effect: bool, lines: list[str],
            say: Callable[[str], None]) -> None:
    """After writing, before any reload: the paths as sshd will judge them, the helper run as its user, `sshd -t`,
    and that sshd uses the drop-in's settings. Raises (and the caller puts everything back) on any problem."""
    problems = postflight(opts, account)
    if problems:
        raise _refuse("node setup: refusing; sshd would refuse the principals helper", problems)
    code, said = run_helper_check(opts, account)
    if code == 0:
        say(f"\nthe helper, run as {account.name}: {said}")
    elif opts.labels is None and not opts.layout.state.exists():
        say(f"\nthe helper refuses every login until the node agent (`machineid node start`) writes "
            f"{opts.layout.state}")
    else:
        raise _refuse(f"node setup: refusing; the helper, run as {account.name}, fails", [said])
    if not opts.main_config.is_file():
        return
    rejected = sshd.check_config(opts.main_config)
    if rejected:
        raise _refuse(f"node setup: refusing; sshd -t -f {opts.main_config} rejects the configuration",
                      rejected.splitlines())
    say(f"sshd -t -f {opts.main_config}: accepted")
    if dropin_in_effect:
        wrong = sshd.overridden(opts.main_config, lines)
        if wrong:
            raise _refuse(f"node setup: refusing; sshd takes these settings from elsewhere (the first value it reads "
                          f"wins: remove them from {opts.main_config} or the files it includes before "
                          f"{opts.layout.sshd_dropin.name})", wrong)
