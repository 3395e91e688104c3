"""The agent refuses (or, as asked, only reports) a destination that someone else could redirect or replace, and
does so before it contacts the cluster: a refused run spends no join token."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from machineid.agent import config as agent_config
from tests.conftest import ServerProc, run_cli

NOBODY = 65534


def new_token(server: ServerProc, bot: str) -> str:
    out = server.ctl("bots", "add", bot, "--roles=access", "--logins=root", "--format=json").stdout
    return str(json.loads(out)["token"])


def joins(server: ServerProc) -> int:
    events = json.loads(server.ctl("audit", "--format=json").stdout)
    return len([e for e in events if e["action"] == "bot.join"])


def agent(server: ServerProc, token: str, data: Path, dest: Path, *extra: str) -> list[str]:
    pin = json.loads((server.data_dir / "server.json").read_text())["ca_pin"]
    return ["bot", "start", "--data-dir", str(data), "--destination-dir", str(dest), "--token", token,
            "--ca-pin", pin, "--auth-server", server.address, "--oneshot", "--log-format", "text", *extra]


def refused(server: ServerProc, args: list[str], *expected: str) -> None:
    """The run fails naming the problem and the fix, as invalid input (exit 3, the README's code for a bad flag or
    config), and nothing reaches the cluster."""
    before = joins(server)
    proc = run_cli(*args, check=False)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    message = proc.stderr
    assert message.startswith("error: unsafe destination (--destination-dir): "), message
    assert all(x in message for x in expected), message
    assert "--destination-checks=warn" in message and "still valid" in message
    assert joins(server) == before


def joined(proc_args: list[str]) -> str:
    proc = run_cli(*proc_args)
    assert "joined: bot" in proc.stderr, proc.stderr
    return proc.stderr


def test_a_world_writable_destination_is_refused_or_with_warn_reported(server: ServerProc, tmp_path: Path) -> None:
    token = new_token(server, "dest-open")
    dest = tmp_path / "dest"
    dest.mkdir()
    dest.chmod(0o777)
    args = agent(server, token, tmp_path / "data", dest)
    refused(server, args, f"{dest} is writable by every user (mode 777)", f"chmod o-w {dest}")
    assert list(dest.iterdir()) == []
    # the sticky bit does not make the destination itself safe
    dest.chmod(0o1777)
    refused(server, args, f"{dest} is writable by every user (mode 1777)")
    # warn: the same problem logged, and the token (unspent) joins
    log = joined([*args, "--destination-checks", "warn"])
    assert "WARNING" in log and f"{dest} is writable by every user" in log
    assert (dest / "ssh_config").is_file()
    # a renewal is refused the same way before it is sent: the next one is generation 2, not 3
    renew = [a for a in args if a not in ("--token", token)]
    refused(server, renew, f"chmod o-w {dest}")
    assert "renewed: bot dest-open generation 2" in run_cli(*renew, "--destination-checks=warn").stderr


def test_a_parent_writable_by_all_is_refused_unless_sticky(server: ServerProc, tmp_path: Path) -> None:
    token = new_token(server, "dest-parent")
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    dest = shared / "not-yet" / "dest"  # refused before the agent creates anything under it
    args = agent(server, token, tmp_path / "data", dest)
    refused(server, args, f"{shared}, above the destination, is writable by every user without the sticky bit",
            f"chmod o-w {shared}")
    assert list(shared.iterdir()) == []
    shared.chmod(0o1777)  # like /tmp: others cannot rename what they do not own
    joined(args)
    assert (dest / "key").is_file()


def test_a_destination_reached_through_a_symlink_is_refused(server: ServerProc, tmp_path: Path) -> None:
    token = new_token(server, "dest-link")
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    data = tmp_path / "data"
    refused(server, agent(server, token, data, link), f"{link} is a symlink (to {real})", f"use the real path, {real}")
    refused(server, agent(server, token, data, link / "sub"), f"{link} is a symlink", f"real path, {real / 'sub'}")
    assert list(real.iterdir()) == []
    joined(agent(server, token, data, real))


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory to another user needs root")
def test_a_destination_owned_by_another_user_is_refused(server: ServerProc, tmp_path: Path) -> None:
    token = new_token(server, "dest-owner")
    dest = tmp_path / "theirs"
    dest.mkdir()
    os.chown(dest, NOBODY, NOBODY)
    args = agent(server, token, tmp_path / "data", dest)
    refused(server, args, f"{dest} is owned by", f"(uid {NOBODY})", f"chown root {dest}")
    # off: no checks at all, no warning either
    log = joined([*args, "--destination-checks", "off"])
    assert "unsafe destination" not in log


def test_the_config_file_sets_the_checks_and_a_bad_value_names_the_flag(server: ServerProc, tmp_path: Path) -> None:
    token = new_token(server, "dest-config")
    dest = tmp_path / "dest"
    dest.mkdir()
    dest.chmod(0o777)
    pin = json.loads((server.data_dir / "server.json").read_text())["ca_pin"]
    config = tmp_path / "bot.yaml"
    text = (f"version: v1\nauth_server: {server.address}\n"
            f"onboarding: {{join_method: token, token: {token}, ca_pins: ['{pin}']}}\n"
            f"storage: {{directory: {tmp_path / 'data'}}}\ndestinations: [{{directory: {dest}}}]\n")
    config.write_text(text + "destination_checks: lax\n")
    bad = run_cli("bot", "start", "--config", str(config), check=False)
    assert bad.returncode == 3 and "destination_checks" in bad.stderr and "--destination-checks" in bad.stderr
    config.write_text(text)
    refused(server, ["bot", "start", "--config", str(config), "--oneshot"], f"chmod o-w {dest}")
    config.write_text(text + "destination_checks: warn\n")
    assert "writable by every user" in joined(["bot", "start", "--config", str(config), "--oneshot",
                                               "--log-format", "text"])


def test_rendered_configs_keep_their_text_and_say_when_checks_are_relaxed() -> None:
    cfg = agent_config.AgentConfig(auth_server="h:1", storage=agent_config.Storage("/var/lib/b"),
                                   onboarding=agent_config.Onboarding(ca_pins=["sha256:" + "0" * 64]),
                                   destinations=[agent_config.Destination("/opt/machine-id")])
    assert "destination_checks" not in agent_config.render(cfg)  # strict, the default
    cfg.destination_checks = "warn"
    assert agent_config.load(agent_config.render(cfg)).destination_checks == "warn"
