"""bound_keypair end to end: the real server, the real CLI. The machine makes its key (`bot keypair create`), the
admin puts the public key in a token (`ctl create -f`), the agent joins by signing, renews, and joins again with
the same key once its identity is gone; ctl shows the binding."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from machineid.api.identity import Identity
from tests.conftest import ServerProc, run_cli
from tests.test_cli import rows_by

# The cluster tests run against a server with one worker process and with two.
pytestmark = pytest.mark.workers(1, 2)

TOKEN_YAML = """kind: token
version: v2
metadata:
  name: keybot-key
spec:
  roles: [Bot]
  join_method: bound_keypair
  bot_name: keybot
  bound_keypair:
    onboarding:
      initial_public_key: {key}
    recovery:
      mode: standard
      limit: 2
"""


def pin(server: ServerProc) -> str:
    return str(json.loads((server.data_dir / "server.json").read_text())["ca_pin"])


def start(server: ServerProc, data: Path, dest: Path, *extra: str) -> str:
    proc = run_cli("bot", "start", "--oneshot", "--join-method", "bound_keypair", "--token", "keybot-key",
                   "--data-dir", str(data), "--destination-dir", str(dest), "--ca-pin", pin(server),
                   "--auth-server", server.address, "--log-format", "text", *extra)
    return proc.stderr


def test_keypair_join_renew_and_rejoin(server: ServerProc, tmp_path: Path) -> None:
    data, dest = tmp_path / "data", tmp_path / "machine-id"
    public = run_cli("bot", "keypair", "create", "--data-dir", str(data)).stdout.strip()
    assert public.startswith("ssh-ed25519 AAAA")
    key_file = data / "bound_keypair.json"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = run_cli("bot", "keypair", "create", "--data-dir", str(data), check=False)
    assert again.returncode == 7 and "--force" in again.stderr and public.split()[1] in again.stderr

    server.ctl("bots", "add", "keybot", "--roles=access", "--logins=root")
    server.ctl("create", "-f", "-", input=TOKEN_YAML.format(key=public))

    log = start(server, data, dest)
    assert "joined: bot keybot generation 1" in log, log
    for name in ("key", "key-cert.pub", "tlscert", "identity", "ssh_config", "known_hosts"):
        assert (dest / name).exists(), name
    assert not Identity.load(dest / "identity").info.renewable
    assert Identity.load(data / "identity").info.renewable

    log = start(server, data, dest)  # the stored identity renews
    assert "renewed: bot keybot generation 2" in log, log

    (data / "identity").unlink()  # a restart without an identity: the key pair joins again
    log = start(server, data, dest)
    assert "joined: bot keybot generation 1" in log, log

    token = json.loads(server.ctl("get", "token/keybot-key", "--format", "json").stdout)
    assert token["status"]["bound_public_key"] == " ".join(public.split()[:2])
    assert token["status"]["join_sequence"] == 2 and token["status"]["recovery_count"] == 0
    row = rows_by(server.ctl("tokens", "ls").stdout, "Token")["keybot-key"]
    assert row["Join Method"] == "bound_keypair" and row["Bound Key"].startswith("SHA256:")
    bot = rows_by(server.ctl("bots", "ls").stdout, "Bot")["keybot"]
    assert bot["Join Method"] == "bound_keypair,token" and bot["Recoveries"] == "0/2"

    # rotate_after (an in-place edit) makes the next join bind a new key; the agent keeps the old one.
    import shutil

    old = tmp_path / "old-key"
    shutil.copytree(data, old)  # the key as it was before the rotation
    server.ctl("create", "-f", "-", "--force",
               input=TOKEN_YAML.format(key=public) + "    rotate_after: '2001-01-01T00:00:00Z'\n")
    (data / "identity").unlink()
    log = start(server, data, dest)
    assert "joined: bot keybot generation 1" in log, log
    status = json.loads(server.ctl("get", "token/keybot-key", "--format", "json").stdout)["status"]
    assert status["bound_public_key"] != " ".join(public.split()[:2]) and status["last_rotated_at"]
    kept = json.loads(key_file.read_text())
    assert kept["pending"] == "" and len(kept["previous"]) == 1
    (data / "identity").unlink()
    assert "joined: bot keybot" in start(server, data, dest)  # with the new key, and no new rotation
    assert json.loads(server.ctl("get", "token/keybot-key", "--format", "json").stdout)["status"][
        "bound_public_key"] == status["bound_public_key"]
    (old / "identity").unlink(missing_ok=True)
    stale = run_cli("bot", "start", "--oneshot", "--join-method", "bound_keypair", "--token", "keybot-key",
                    "--data-dir", str(old), "--destination-dir", str(tmp_path / "old-dest"), "--ca-pin", pin(server),
                    "--auth-server", server.address, check=False)
    # The key rotated out no longer joins: only a copy still holds it, so the bot is locked.
    assert stale.returncode == 1 and "now locked: a join was signed with key" in stale.stderr, stale.stderr


def test_registration_secret_from_a_file(server: ServerProc, tmp_path: Path) -> None:
    secret = "0123456789abcdef0123456789abcdef"
    server.ctl("bots", "add", "regbot", "--roles=access")
    server.ctl("create", "-f", "-", input=TOKEN_YAML.replace("keybot", "regbot").replace(
        "initial_public_key: {key}", f"registration_secret: {secret}"))
    stored = json.loads(server.ctl("get", "token/regbot-key", "--format", "json").stdout)
    assert stored["spec"]["bound_keypair"]["onboarding"]["registration_secret"].startswith("sha256:")
    secret_file = tmp_path / "secret"
    secret_file.write_text(secret + "\n")
    data, dest = tmp_path / "data", tmp_path / "machine-id"
    proc = run_cli("bot", "start", "--oneshot", "--join-method", "bound_keypair", "--token", "regbot-key",
                   "--registration-secret", str(secret_file), "--data-dir", str(data), "--destination-dir",
                   str(dest), "--ca-pin", pin(server), "--auth-server", server.address, "--log-format", "text")
    assert "joined: bot regbot generation 1" in proc.stderr and secret not in proc.stderr
    (data / "identity").unlink()
    # The secret is spent; the registered key (in the data dir) joins from now on, with the flag still given.
    proc = run_cli("bot", "start", "--oneshot", "--join-method", "bound_keypair", "--token", "regbot-key",
                   "--registration-secret", str(secret_file), "--data-dir", str(data), "--destination-dir",
                   str(dest), "--ca-pin", pin(server), "--auth-server", server.address, "--log-format", "text")
    assert "joined: bot regbot generation 1" in proc.stderr
    audit = server.ctl("audit", "--format", "jsonl").stdout + server.log_text()
    assert secret not in audit


def test_a_copied_data_dir_is_refused_and_locks_the_bot_and_a_secret_registers_once(server: ServerProc,
                                                                                      tmp_path: Path) -> None:
    import shutil

    data, dest = tmp_path / "data", tmp_path / "machine-id"
    public = run_cli("bot", "keypair", "create", "--data-dir", str(data)).stdout.strip()
    server.ctl("bots", "add", "copybot", "--roles=access")
    server.ctl("create", "-f", "-", input=TOKEN_YAML.replace("keybot", "copybot").format(key=public))

    def join(where: Path) -> tuple[int, str]:
        proc = run_cli("bot", "start", "--oneshot", "--join-method", "bound_keypair", "--token", "copybot-key",
                       "--data-dir", str(where), "--destination-dir", str(dest), "--ca-pin", pin(server),
                       "--auth-server", server.address, "--log-format", "text", check=False)
        return proc.returncode, proc.stderr

    assert "joined: bot copybot" in join(data)[1]
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)  # someone copies the machine's data dir
    (copy / "identity").unlink()
    (data / "identity").unlink()
    assert "joined: bot copybot" in join(data)[1]  # the original joins again: a newer join state
    code, log = join(copy)  # the copy presents the older one
    assert code == 1 and "locked" in log, log
    bot = json.loads(server.ctl("get", "bot/copybot", "--format", "json").stdout)
    assert bot["status"]["locked"] is True
    assert any(e["action"] == "bot.lock" and e["target"] == "bot/copybot"
               for e in map(json.loads, server.ctl("audit", "--format", "jsonl").stdout.splitlines()))

    secret = "fedcba9876543210fedcba9876543210"
    server.ctl("bots", "add", "oncebot", "--roles=access")
    server.ctl("create", "-f", "-", input=TOKEN_YAML.replace("keybot", "oncebot").replace(
        "initial_public_key: {key}", f"registration_secret: {secret}"))

    def register(where: Path) -> subprocess.CompletedProcess[str]:
        return run_cli("bot", "start", "--oneshot", "--join-method", "bound_keypair", "--token", "oncebot-key",
                       "--registration-secret", secret, "--data-dir", str(where), "--destination-dir", str(dest),
                       "--ca-pin", pin(server), "--auth-server", server.address, "--log-format", "text",
                       check=False)

    assert "joined: bot oncebot" in register(tmp_path / "first").stderr
    second = register(tmp_path / "second")  # another machine with the same secret, after it was spent
    assert second.returncode == 1 and "joined" not in second.stderr, second.stderr
