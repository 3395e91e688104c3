"""The CLI as a contract scripts can rely on: distinct exit codes, one JSON shape per kind of answer, flags on
either side of the command, "did you mean", no silent abbreviations, completion, and the commands an operator
reaches for (nodes rm, edit, create --dry-run)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from machineid import __version__
from machineid.cluster.process import MACHINEID
from tests.conftest import ServerProc, run_cli


def ctl(server: ServerProc, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run_cli("ctl", "--data-dir", str(server.data_dir), *args, env=env, check=False)


def test_exit_codes_tell_failures_apart(server: ServerProc, tmp_path: Path) -> None:
    server.ctl("users", "add", "exit-auditor", "--roles=auditor")
    ident = tmp_path / "auditor.identity"
    server.ctl("auth", "sign", "--user", "exit-auditor", "--out", str(ident))
    bad = tmp_path / "bad.yaml"
    bad.write_text("kind: role\nmetadata:\n  name: '-bad'\n")
    server.ctl("bots", "add", "exit-bot", "--roles=access")
    cases = [
        (["get", "role/no-such-role"], 4, "not found"),
        (["--identity", str(ident), "users", "add", "x", "--roles=auditor"], 5, "may not"),
        (["--auth-server", "127.0.0.1:1", "--identity", str(ident), "get", "roles"], 6, "cannot reach"),
        (["create", "-f", str(bad)], 3, "metadata.name"),
        (["bots", "add", "exit-bot", "--roles=access"], 7, "already exists"),
        (["get", "roles", "--no-such-flag"], 2, "unrecognized"),
    ]
    for args, code, words in cases:
        proc = ctl(server, *args)
        assert proc.returncode == code, (args, proc.returncode, proc.stderr)
        assert words in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)


def test_flags_work_on_either_side_of_the_command_and_mistakes_get_suggestions(server: ServerProc) -> None:
    after = run_cli("ctl", "get", "roles", "--format", "json", "--data-dir", str(server.data_dir))
    before = run_cli("ctl", "--data-dir", str(server.data_dir), "get", "roles", "--format", "json")
    assert json.loads(after.stdout) == json.loads(before.stdout)
    typo = ctl(server, "gt", "roles")
    assert typo.returncode == 2 and "did you mean 'get'?" in typo.stderr
    flag = ctl(server, "get", "roles", "--frmat", "json")
    assert flag.returncode == 2 and "did you mean --format?" in flag.stderr
    abbreviated = ctl(server, "get", "roles", "--form", "json")  # argparse would have taken it for --format
    assert abbreviated.returncode == 2 and "unrecognized arguments: --form" in abbreviated.stderr


def test_help_version_and_completion() -> None:
    assert run_cli("--version").stdout.strip() == f"machineid {__version__}"
    top = run_cli("--help").stdout
    assert "examples:" in top and "exit codes:" in top and "3 invalid input" in top
    tokens_help = run_cli("ctl", "tokens", "add", "--help").stdout
    assert "(default: 1h)" in tokens_help and "example:" in tokens_help
    assert "--data-dir DIR" in tokens_help  # the connection flags are documented on every command too
    script = run_cli("completion", "bash").stdout
    assert "complete" in script and "machineid" in script


def test_completion_completes_commands_and_flags(tmp_path: Path) -> None:
    def complete(line: str) -> list[str]:
        out = tmp_path / "completions"
        env = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_SHELL": "bash", "COMP_LINE": line,
               "COMP_POINT": str(len(line)), "_ARGCOMPLETE_STDOUT_FILENAME": str(out), "_ARGCOMPLETE_IFS": "\n"}
        subprocess.run([MACHINEID], env=env, capture_output=True, timeout=30)
        return out.read_text().split()

    assert "get" in complete("machineid ctl g")
    assert "--format" in complete("machineid ctl get roles --fo")


def test_json_answers_have_one_shape(server: ServerProc, tmp_path: Path) -> None:
    roles = json.loads(server.ctl("get", "roles", "--format", "json").stdout)
    assert isinstance(roles, list) and len(roles) >= 3
    assert json.loads(server.ctl("get", "nodes", "--format", "json").stdout) == []  # none yet: still a list
    one = json.loads(server.ctl("get", "role/access", "--format", "json").stdout)
    assert isinstance(one, dict) and one["metadata"]["name"] == "access"
    assert one["metadata"]["labels"] == {} and one["spec"]["deny"]["logins"] == []  # zero values are present
    bot = json.loads(server.ctl("bots", "add", "shape-bot", "--roles=access", "--format", "json").stdout)
    token = json.loads(server.ctl("tokens", "add", "--type=bot", "--bot-name=shape-bot", "--format", "json").stdout)
    assert bot.keys() == token.keys() == {"bot", "token", "join_method", "token_expires", "ca_pins", "auth_server"}
    assert isinstance(token["ca_pins"], list) and token["join_method"] == "token"
    unlocked = ctl(server, "bots", "unlock", "shape-bot", "--format", "json")
    assert unlocked.returncode == 7  # not locked: a conflict, said so
    results = [
        json.loads(server.ctl("users", "add", "shape-user", "--roles=auditor", "--format", "json").stdout),
        json.loads(server.ctl("rm", "user/shape-user", "--format", "json").stdout),
    ]
    assert [(r["kind"], r["name"], r["action"]) for r in results] == [("user", "shape-user", "created"),
                                                                        ("user", "shape-user", "deleted")]
    cas = json.loads(server.ctl("auth", "export", "--format", "json").stdout)
    assert {c["type"] for c in cas} == {"user", "host", "tls"}
    signed = json.loads(server.ctl("auth", "sign", "--user", "admin", "--out", str(tmp_path / "a.identity"),
                                   "--format", "json").stdout)
    assert signed["path"] == str(tmp_path / "a.identity") and signed["expires"]


def test_create_dry_run_writes_nothing(server: ServerProc) -> None:
    doc = "kind: role\nmetadata:\n  name: dry-role\nspec:\n  allow:\n    logins: [ops]\n"
    out = json.loads(server.ctl("create", "-f", "-", "--dry-run", "--format", "json", input=doc).stdout)
    assert out == [{"kind": "role", "name": "dry-role", "action": "would_be_created", "revision": ""}]
    assert ctl(server, "get", "role/dry-role").returncode == 4
    server.ctl("create", "-f", "-", input=doc)
    again = subprocess.run([MACHINEID, "ctl", "--data-dir", str(server.data_dir), "create", "-f", "-", "--dry-run"],
                           input=doc, capture_output=True, text=True, timeout=60)
    assert again.returncode == 7 and "--force" in again.stderr
    forced = server.ctl("create", "-f", "-", "--dry-run", "--force", input=doc.replace("[ops]", "[ops, dev]"))
    assert "would be updated (dry run: nothing was written)" in forced.stdout
    assert json.loads(server.ctl("get", "role/dry-role", "--format", "json").stdout)["spec"]["allow"]["logins"] == \
        ["ops"]


def editor(tmp_path: Path, body: str) -> str:
    script = tmp_path / "editor.sh"
    script.write_text("#!/bin/sh\nset -e\n" + body)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_edit_applies_the_change_with_its_revision(server: ServerProc, tmp_path: Path) -> None:
    server.ctl("create", "-f", "-", input="kind: role\nmetadata:\n  name: edited\n  description: before\n")
    env = {"EDITOR": editor(tmp_path, 'sed -i "s/description: before/description: after/" "$1"\n'),
           "VISUAL": ""}
    out = run_cli("ctl", "--data-dir", str(server.data_dir), "edit", "role/edited", "--format", "json", env=env)
    assert json.loads(out.stdout)["action"] == "updated"
    doc = json.loads(server.ctl("get", "role/edited", "--format", "json").stdout)
    assert doc["metadata"]["description"] == "after"
    # Someone changes it while the editor is open: the edit is refused, not silently overwritten.
    racing = editor(tmp_path, f'"{MACHINEID}" ctl --data-dir "{server.data_dir}" create --force -f - <<EOF\n'
                              "kind: role\nmetadata:\n  name: edited\n  description: theirs\nEOF\n"
                              'sed -i "s/description: after/description: mine/" "$1"\n')
    refused = run_cli("ctl", "--data-dir", str(server.data_dir), "edit", "role/edited",
                      env={"EDITOR": racing, "VISUAL": ""}, check=False)
    assert refused.returncode == 7 and "changed" in refused.stderr
    doc = json.loads(server.ctl("get", "role/edited", "--format", "json").stdout)
    assert doc["metadata"]["description"] == "theirs"
    unchanged = run_cli("ctl", "--data-dir", str(server.data_dir), "edit", "role/edited",
                        env={"EDITOR": "true", "VISUAL": ""})
    assert "unchanged" in unchanged.stdout


def test_nodes_rm_removes_a_node(server: ServerProc, tmp_path: Path) -> None:
    server.ctl("nodes", "add", "gone-node", "--addr", "10.1.1.1:22", "--out", str(tmp_path / "host"))
    listed = json.loads(server.ctl("nodes", "ls", "--format", "json").stdout)
    assert isinstance(listed, list) and [n["metadata"]["name"] for n in listed] == ["gone-node"]  # one: a list
    out = json.loads(server.ctl("nodes", "rm", "gone-node", "--format", "json").stdout)
    assert out == {"kind": "node", "name": "gone-node", "action": "deleted"}
    assert "gone-node" not in server.ctl("nodes", "ls").stdout
    assert ctl(server, "nodes", "rm", "gone-node").returncode == 4


@pytest.mark.parametrize("flag", ["--action", "--kind"])
def test_audit_filters_by_action(server: ServerProc, flag: str) -> None:
    events = [json.loads(x) for x in server.ctl("audit", flag, "role", "--format", "jsonl").stdout.splitlines()]
    assert events and all(e["action"].startswith("role.") for e in events)


def test_bot_start_exit_codes_are_the_documented_ones(server: ServerProc, tmp_path: Path) -> None:
    pin = json.loads(server.ctl("status", "--format", "json").stdout)["ca_pins"][0]
    base = ["bot", "start", "--oneshot", "--data-dir", str(tmp_path / "d"), "--destination-dir",
            str(tmp_path / "o"), "--token", "f" * 32]
    bad_flag = run_cli(*base, "--auth-server", server.address, "--ca-pin", "sha256:00", check=False)
    assert bad_flag.returncode == 3 and "--ca-pin" in bad_flag.stderr
    down = run_cli(*base, "--auth-server", "127.0.0.1:1", "--ca-pin", pin, check=False)
    assert down.returncode == 6 and "cannot reach the cluster" in down.stderr
    refused = run_cli(*base, "--auth-server", server.address, "--ca-pin", pin, check=False)
    assert refused.returncode == 1 and "join refused" in refused.stderr and "not valid" in refused.stderr
