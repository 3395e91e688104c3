"""`machineid node setup` as an operator runs it on a node (as root), under a node root the tests own: what it
writes, that it says what it would write and changes nothing with --dry-run, that a second run changes nothing,
that it refuses with the path and the fix what sshd would refuse, that sshd checks the result before any reload,
and that it never leaves a node half set up."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from machineid.node.layout import Layout
from tests import nodes
from tests.conftest import ServerProc, run_cli

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="node setup writes root-owned files (needs root)")
TOKEN = "d3adb33fd3adb33fd3adb33fd3adb33f"
PIN = "sha256:" + "ab" * 32


def user_ca(where: Path) -> Path:
    key = ed25519.Ed25519PrivateKey.generate()
    path = where / "user_ca.pub"
    path.write_text(key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                                  serialization.PublicFormat.OpenSSH).decode() + "\n")
    return path


def setup(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("node", "setup", "--root", str(root), *args, check=False)


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            out[str(p.relative_to(root))] = (st.st_mode, st.st_uid, b"" if p.is_dir() else p.read_bytes())
    return out


@pytest.fixture()
def root() -> Iterator[Path]:
    with nodes.node_root() as r:
        yield r


def test_dry_run_prints_every_file_and_changes_nothing(root: Path) -> None:
    ca = user_ca(root)
    nodes.write_main_config(root, nodes.free_port())
    before = snapshot(root)
    out = setup(root, "--labels", "env=prod", "--name", "web1", "--user-ca", str(ca), "--dry-run")
    assert out.returncode == 0, out.stderr
    layout = Layout(root)
    for path in (layout.principals_helper, layout.state, layout.user_ca, layout.revoked_keys, layout.host_key,
                 layout.sshd_dropin):
        assert f"would write: {path} " in out.stdout
    assert f"AuthorizedPrincipalsCommand {layout.principals_helper} %u %t %k" in out.stdout  # the drop-in, shown
    assert '"env": "prod"' in out.stdout and "#!/usr/bin/python3 -IS" in out.stdout
    assert "nothing written" in out.stdout
    assert snapshot(root) == before


def test_a_second_run_changes_nothing_and_says_so(root: Path) -> None:
    ca = user_ca(root)
    nodes.write_main_config(root, nodes.free_port())
    first = setup(root, "--labels", "env=prod", "--user-ca", str(ca))
    assert first.returncode == 0, first.stdout + first.stderr
    assert "sshd -t -f" in first.stdout and "accepted" in first.stdout
    assert "no host certificate at" in first.stdout and "--host-key PREFIX" in first.stdout  # said, not silent
    layout = Layout(root)
    helper = layout.principals_helper.read_text()
    # the helper needs no virtualenv: the system's interpreter, the standard library only
    assert helper.startswith("#!/usr/bin/python3 -IS\n") and "import machineid" not in helper
    assert f'STATE_PATH = "{layout.state}"' in helper
    for path, mode in ((layout.principals_helper, 0o755), (layout.state, 0o644), (layout.host_key, 0o600),
                       (layout.sshd_dropin, 0o644), (layout.revoked_keys, 0o644)):
        st = path.stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid) == (mode, 0), path
    assert layout.revoked_keys.read_bytes() == b""
    assert "StrictModes" not in layout.sshd_dropin.read_text()
    before = snapshot(root)
    time.sleep(1.1)  # a rewritten state file would carry a new refreshed_at
    second = setup(root, "--labels", "env=prod", "--user-ca", str(ca))
    assert second.returncode == 0 and "nothing changed: the node is already set up" in second.stdout
    assert snapshot(root) == before


def test_a_world_writable_parent_is_refused_naming_the_path_and_the_fix() -> None:
    """The issue's `bad ownership or modes for directory`: a node root (or cache) under /tmp. Refused before
    anything is written, naming /tmp and what to do, instead of a node that refuses every login."""
    base = Path(tempfile.mkdtemp())  # under /tmp, which anyone may write
    try:
        os.chmod(base, 0o755)
        ca = user_ca(base)
        out = setup(base / "node", "--labels", "env=prod", "--user-ca", str(ca))
        assert out.returncode == 3, out.stdout + out.stderr
        tmp = Path(tempfile.gettempdir()).resolve()
        assert f"{tmp}: writable by others (mode 1777; sshd refuses everything under it)" in out.stderr
        assert "fix: choose a --root (or MACHINEID_NODE_ROOT) whose every directory up to / only root can write" \
            in out.stderr
        assert not (base / "node").exists()
    finally:
        shutil.rmtree(base)


def test_an_interpreter_under_a_world_writable_directory_is_refused(root: Path) -> None:
    """A venv's python under /tmp (MACHINEID_CACHE=/tmp/...): the helper's #! line must not name it."""
    base = Path(tempfile.mkdtemp())
    try:
        os.chmod(base, 0o755)
        (base / "python3").symlink_to("/usr/bin/python3")
        out = setup(root, "--labels", "env=prod", "--python", str(base / "python3"))
        assert out.returncode == 3
        assert f"{Path(tempfile.gettempdir()).resolve()}: writable by others" in out.stderr
        assert "fix: use an interpreter in directories only root can write: --python /usr/bin/python3" in out.stderr
        assert snapshot(root) == {}
    finally:
        shutil.rmtree(base)


def test_directories_sshd_or_nobody_would_refuse_are_named_with_the_fix(root: Path) -> None:
    """A group-writable directory (sshd refuses it) and one nobody cannot enter (root's 0700 home, where the
    virtualenv was: `Could not stat AuthorizedPrincipalsCommand ...: Permission denied`)."""
    node = root / "node"
    node.mkdir(mode=0o775)
    os.chmod(node, 0o775)
    out = setup(node, "--labels", "env=prod")
    assert out.returncode == 3
    assert f"{node}: writable by group (mode 775; sshd refuses it); fix: chmod go-w {node}" in out.stderr
    os.chmod(node, 0o700)
    out = setup(node, "--labels", "env=prod")
    assert out.returncode == 3
    assert f"{node}: nobody cannot enter it (mode 700), and sshd runs the helper as nobody; fix: chmod o+x {node}" \
        in out.stderr
    assert os.listdir(node) == []


def test_without_an_include_of_the_drop_in_it_prints_the_lines(root: Path) -> None:
    config = nodes.write_main_config(root, nodes.free_port())
    config.write_text(config.read_text().replace("Include", "# Include"))
    out = setup(root, "--labels", "env=prod", "--user-ca", str(user_ca(root)))
    assert out.returncode == 0, out.stderr
    layout = Layout(root)
    assert f"does not include {layout.sshd_dropin_dir}/*.conf: add these lines" in out.stdout
    assert f"  AuthorizedPrincipalsCommand {layout.principals_helper} %u %t %k" in out.stdout
    assert "  AuthorizedPrincipalsCommandUser nobody" in out.stdout
    assert not layout.sshd_dropin.exists()


def test_what_sshd_rejects_or_takes_from_elsewhere_is_refused_and_put_back(root: Path) -> None:
    config = nodes.write_main_config(root, nodes.free_port())
    ca = user_ca(root)
    main = config.read_text()
    config.write_text(main + "NoSuchOption yes\n")
    before = snapshot(root)
    out = setup(root, "--labels", "env=prod", "--user-ca", str(ca))
    assert out.returncode == 3
    assert f"sshd -t -f {config} rejects the configuration" in out.stderr and "NoSuchOption" in out.stderr
    assert "put back the" in out.stdout and snapshot(root) == before
    # first value wins: an earlier AuthorizedPrincipalsCommandUser would run the helper as root
    config.write_text("AuthorizedPrincipalsCommandUser root\n" + main)
    before = snapshot(root)
    out = setup(root, "--labels", "env=prod", "--user-ca", str(ca))
    assert out.returncode == 3
    assert "sshd takes these settings from elsewhere" in out.stderr
    assert "AuthorizedPrincipalsCommandUser: sshd uses root instead of nobody" in out.stderr
    assert snapshot(root) == before


def test_the_distributions_host_keys_stay(root: Path) -> None:
    """A HostKey in the drop-in replaces sshd's default keys: they are listed first, so people's known_hosts still
    match and only certificate-checking clients see the node's own key."""
    config = nodes.write_main_config(root, nodes.free_port())
    default = Layout(root).at("etc/ssh/ssh_host_ed25519_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(default)], check=True)
    assert setup(root, "--labels", "env=prod", "--user-ca", str(user_ca(root))).returncode == 0
    lines = Layout(root).sshd_dropin.read_text().splitlines()
    assert lines[1:3] == [f"HostKey {default}", f"HostKey {Layout(root).host_key}"]
    config.write_text(f"HostKey {default}\n" + config.read_text())  # named in sshd_config: nothing to keep
    assert setup(root, "--labels", "env=prod").returncode == 0
    assert f"HostKey {default}" not in Layout(root).sshd_dropin.read_text()


def test_join_mode_writes_the_agents_settings_and_never_shows_the_token(root: Path) -> None:
    nodes.write_main_config(root, nodes.free_port())
    token_file = root / "web1.token"
    token_file.write_text(TOKEN + "\n")
    args = ["--auth-server", "auth.example.com:3025", "--ca-pin", PIN, "--name", "web1", "--token", str(token_file),
            "--user-ca", str(user_ca(root))]
    dry = setup(root, *args, "--dry-run")
    assert dry.returncode == 0 and "(the join token, not shown)" in dry.stdout
    out = setup(root, *args)
    assert out.returncode == 0, out.stderr
    for text in (dry.stdout, dry.stderr, out.stdout, out.stderr):
        assert TOKEN not in text
    layout = Layout(root)
    import yaml

    config = yaml.safe_load(layout.config.read_text())
    assert config == {"version": 1, "name": "web1", "auth_server": "auth.example.com:3025", "ca_pins": [PIN],
                      "join_method": "token", "token": str(layout.etc / "join-token"), "heartbeat_interval": "60s",
                      "sshd_pid_file": str(layout.at("run/sshd.pid"))}
    assert (layout.etc / "join-token").read_text() == TOKEN + "\n"
    for secret in (layout.config, layout.etc / "join-token"):
        assert (stat.S_IMODE(secret.stat().st_mode), secret.stat().st_uid) == (0o600, 0)
    assert not layout.state.exists()  # the agent writes it; until then the helper refuses every login
    assert "the helper refuses every login until the node agent" in out.stdout
    bad = setup(root, *args[:-4], "--token", "not a token", "--labels", "env=prod")
    assert bad.returncode == 3 and "--labels is for a node without the agent" in bad.stderr
    missing = setup(root, "--auth-server", "auth.example.com:3025", "--token", str(token_file))
    assert missing.returncode == 3 and "join mode needs --name, --ca-pin" in missing.stderr


def test_sshd_is_reloaded_only_when_what_it_reads_at_start_changed(root: Path) -> None:
    port = nodes.free_port()
    nodes.write_main_config(root, port, f"HostKey {root}/bootstrap_key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "bootstrap_key")], check=True)
    proc = nodes.start_sshd(root, port)
    try:
        first = setup(root, "--labels", "env=prod", "--user-ca", str(user_ca(root)))
        assert first.returncode == 0 and f"reloaded sshd (SIGHUP to pid {proc.pid})" in first.stdout
        labels = setup(root, "--labels", "env=dev")  # the helper reads labels at each login: no reload
        assert labels.returncode == 0 and "reloaded" not in labels.stdout and "1 file(s) written" in labels.stdout
        Layout(root).sshd_dropin.write_text("# edited by hand\n")
        no_reload = setup(root, "--labels", "env=dev", "--no-reload")
        assert "not reloaded (--no-reload)" in no_reload.stdout
        deadline = time.monotonic() + 10
        while nodes.sshd_log(root).count("Received SIGHUP") < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert nodes.sshd_log(root).count("Received SIGHUP") == 1
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_node_that_only_trusts_the_user_ca_refuses_our_certificates(fresh_server: ServerProc, root: Path) -> None:
    """`TrustedUserCAKeys` without the principals helper used to accept every certificate for its logins, whatever
    the roles' node_labels said; now the principals are machineid:LOGIN, which no account is called."""
    from tests.test_agent_ssh import ensure_login

    login = ensure_login()
    fresh_server.ctl("create", "-f", "-", input="kind: role\nmetadata: {name: plain}\nspec:\n  allow:\n"
                                                f"    logins: [{login}]\n    node_labels: {{'*': '*'}}\n")
    token = json.loads(fresh_server.ctl("bots", "add", "plain", "--roles=plain", "--format=json").stdout)["token"]
    pin = json.loads((fresh_server.data_dir / "server.json").read_text())["ca_pin"]
    dest = root / "bot"
    run_cli("bot", "start", "--data-dir", str(root / "bot-data"), "--destination-dir", str(dest), "--token", token,
            "--join-method", "token", "--ca-pin", pin, "--auth-server", fresh_server.address, "--oneshot")
    ca = root / "user_ca.pub"
    ca.write_text(fresh_server.ctl("auth", "export", "--type=user").stdout)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / "host_key")], check=True)
    port = nodes.free_port()
    config = nodes.write_main_config(root, port, f"HostKey {root}/host_key", f"TrustedUserCAKeys {ca}")
    config.write_text(config.read_text().replace("Include", "# Include"))
    proc = nodes.start_sshd(root, port)
    try:
        refused = subprocess.run(["ssh", "-i", str(dest / "key"), "-o", f"CertificateFile={dest / 'key-cert.pub'}",
                                  "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o",
                                  "UserKnownHostsFile=/dev/null", "-p", str(port), f"{login}@127.0.0.1", "true"],
                                 capture_output=True, text=True, timeout=30)
        assert refused.returncode == 255 and "Permission denied" in refused.stderr
        assert "name is not a listed principal" in nodes.sshd_log(root)
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_quickstart_as_non_root_says_what_the_node_checks_instead(monkeypatch: pytest.MonkeyPatch,
                                                                       root: Path) -> None:
    """Not root: no helper (sshd runs it only from root-owned files), and it says so rather than dropping
    enforcement silently; the node checks the login with an AuthorizedPrincipalsFile of machineid:LOGIN."""
    from machineid import quickstart

    layout = Layout(root)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    config, notice = quickstart.main_sshd_config(layout, 2222, "alice", root / "host_key", root / "user_ca.pub")
    assert "node-side enforcement needs root" in notice and "checks the login only" in notice
    assert f"AuthorizedPrincipalsFile {layout.at('principals')}" in config
    assert layout.at("principals").read_text() == "machineid:alice\n"
    assert "AuthorizedPrincipalsCommand" not in config and "StrictModes" not in config
    monkeypatch.undo()
    config, notice = quickstart.main_sshd_config(layout, 2222, "alice", root / "host_key", root / "user_ca.pub")
    assert notice == "" and f"Include {layout.sshd_dropin_dir}/*.conf" in config and "StrictModes" not in config


def test_an_image_build_writes_under_dest_dir_naming_the_final_paths(root: Path) -> None:
    """--dest-dir (image builds): the files land under DEST, their contents name the node's own paths, and nothing
    outside DEST is touched (no sshd -t, no reload: sshd checks them when the image boots)."""
    outside = Path("/etc/machineid")
    existed = outside.exists()
    out = run_cli("node", "setup", "--root", "/", "--dest-dir", str(root), "--labels", "env=prod", "--user-ca",
                  str(user_ca(root)), check=False)
    assert out.returncode == 0, out.stderr
    final = Layout(Path("/"))
    dropin = (root / "etc/ssh/sshd_config.d/50-machineid.conf").read_text()
    assert f"AuthorizedPrincipalsCommand {final.principals_helper} %u %t %k" in dropin
    assert f"TrustedUserCAKeys {final.user_ca}" in dropin
    helper = (root / "usr/local/libexec/machineid/principals").read_text()
    assert f'STATE_PATH = "{final.state}"' in helper
    assert json.loads((root / "etc/machineid/state.json").read_text())["labels"] == {"env": "prod"}
    assert f"written under {root} for an image" in out.stdout and "reloaded" not in out.stdout
    assert outside.exists() == existed


def test_not_root_it_refuses_to_write_and_says_why(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    from machineid.model.errors import PermissionDeniedError
    from machineid.node.setup import Options, setup

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(PermissionDeniedError, match="run it as root"):
        setup(Options(layout=Layout(root), labels={"env": "prod"}), print)
    assert snapshot(root) == {}
