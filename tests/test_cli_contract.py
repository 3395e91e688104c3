"""The CLI as a contract scripts can rely on: distinct exit codes, one JSON shape per kind of answer, flags on
either side of the command, "did you mean", no silent abbreviations, completion, and the commands an operator
reaches for (nodes rm, edit, create --dry-run)."""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
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
    assert results[1]["revision"] == results[0]["revision"]  # the revision deleted: the one created
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
    assert '  spec.allow.logins: ["ops"] -> ["ops", "dev"]' in forced.stdout.splitlines()  # the field, old -> new
    assert json.loads(server.ctl("get", "role/dry-role", "--format", "json").stdout)["spec"]["allow"]["logins"] == \
        ["ops"]
    same = json.loads(server.ctl("create", "-f", "-", "--dry-run", "--force", "--format", "json", input=doc).stdout)
    revision = json.loads(server.ctl("get", "role/dry-role", "--format", "json").stdout)["metadata"]["revision"]
    assert same == [{"kind": "role", "name": "dry-role", "action": "unchanged", "revision": revision}]
    assert "is unchanged (dry run" in server.ctl("create", "-f", "-", "--dry-run", "--force", input=doc).stdout


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
    revision = listed[0]["metadata"]["revision"]
    assert out == {"kind": "node", "name": "gone-node", "action": "deleted", "revision": revision}
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


def test_every_write_says_its_revision(server: ServerProc, tmp_path: Path) -> None:
    """`--format json` of every write carries the revision written (or, for a delete, the one deleted); text output
    of an update names it like a create does."""
    user = json.loads(server.ctl("users", "add", "rev-user", "--roles=auditor", "--format", "json").stdout)
    gone = json.loads(server.ctl("users", "rm", "rev-user", "--format", "json").stdout)
    assert gone == {"kind": "user", "name": "rev-user", "action": "deleted", "revision": user["revision"]}
    node = json.loads(server.ctl("nodes", "add", "rev-node", "--addr", "10.2.2.2:22", "--out", str(tmp_path / "h"),
                                 "--format", "json").stdout)
    stored = json.loads(server.ctl("get", "node/rev-node", "--format", "json").stdout)
    assert node["action"] == "created" and node["revision"] == stored["metadata"]["revision"]
    server.ctl("bots", "add", "rev-bot", "--roles=access")
    doc = "kind: bot\nmetadata:\n  name: rev-bot\nspec:\n  roles: [access]\n  traits: {logins: [ci]}\n"
    updated = server.ctl("create", "-f", "-", "--force", input=doc).stdout
    revision = json.loads(server.ctl("get", "bot/rev-bot", "--format", "json").stdout)["metadata"]["revision"]
    assert f'bot "rev-bot" has been updated (revision {revision})' in updated


def test_writing_what_is_stored_changes_nothing(server: ServerProc) -> None:
    """`create -f --force` of identical content keeps the revision and writes no audit record (a role and a bot);
    the CLI says "unchanged"."""
    def audited(target: str) -> int:
        events = json.loads(server.ctl("audit", "--format", "json").stdout)
        return len([e for e in events if e["target"] == target])

    role = "kind: role\nmetadata:\n  name: same-role\nspec:\n  allow:\n    logins: [ops]\n"
    first = json.loads(server.ctl("create", "-f", "-", "--format", "json", input=role).stdout)[0]
    records = audited("role/same-role")
    again = json.loads(server.ctl("create", "-f", "-", "--force", "--format", "json", input=role).stdout)[0]
    assert again == {"kind": "role", "name": "same-role", "action": "unchanged", "revision": first["revision"]}
    assert f'role "same-role" is unchanged (revision {first["revision"]})' in \
        server.ctl("create", "-f", "-", "--force", input=role).stdout
    assert audited("role/same-role") == records
    server.ctl("bots", "add", "same-bot", "--roles=access", "--logins=ci")
    bot = json.loads(server.ctl("get", "bot/same-bot", "--format", "json").stdout)
    records = audited("bot/same-bot")
    doc = "kind: bot\nmetadata:\n  name: same-bot\nspec:\n  roles: [access]\n  traits: {logins: [ci]}\n"
    out = json.loads(server.ctl("create", "-f", "-", "--force", "--format", "json", input=doc).stdout)[0]
    assert (out["action"], out["revision"]) == ("unchanged", bot["metadata"]["revision"])
    assert audited("bot/same-bot") == records


def test_dry_run_masks_secrets_in_the_diff(server: ServerProc) -> None:
    secret = "s" * 40
    doc = ("kind: token\nmetadata:\n  name: dry-key\nspec:\n  join_method: bound_keypair\n  bot_name: dry-bot\n"
           "  bound_keypair:\n    onboarding: {registration_secret: %s}\n")
    server.ctl("create", "-f", "-", input=doc % secret)
    assert "is unchanged (dry run" in server.ctl("create", "-f", "-", "--dry-run", "--force", input=doc % secret).stdout
    other = server.ctl("create", "-f", "-", "--dry-run", "--force", "--format", "json", input=doc % ("t" * 40))
    changes = json.loads(other.stdout)[0]["changes"]
    assert changes == [{"path": "spec.bound_keypair.onboarding.registration_secret", "old": "(secret)",
                        "new": "(a new secret)"}]
    assert "t" * 40 not in other.stdout and secret not in other.stdout


# ---------------------------------------------------------------- the exit-code table, row by row


def test_no_identity_is_not_authenticated_and_no_cluster_is_unreachable(server: ServerProc, tmp_path: Path) -> None:
    """README: 5 "not authenticated (no ... identity)", 6 "the cluster cannot be reached" (was 3 for both)."""
    none = {"MACHINEID_AUTH_SERVER": "", "MACHINEID_IDENTITY": "", "MACHINEID_DATA_DIR": ""}
    cases = [
        ([], 5, "no identity"),
        (["--auth-server", server.address], 5, "--identity FILE"),
        (["--auth-server", server.address, "--identity", str(tmp_path / "missing.identity")], 5, "does not exist"),
        (["--identity", str(server.admin_identity_path)], 6, "--auth-server"),
        (["--data-dir", str(tmp_path / "no-server")], 6, "server.json not found"),
    ]
    for flags, code, words in cases:
        proc = run_cli("ctl", *flags, "get", "roles", env=none, check=False)
        assert proc.returncode == code and words in proc.stderr and proc.stdout == "", (flags, proc.stderr)


def test_a_flag_given_a_value_it_does_not_take_is_invalid_input(server: ServerProc) -> None:
    """README: 3 "invalid input: ... a flag's value" (`--format xml` was 2); 2 stays for a mistyped command or flag
    and a flag missing its value."""
    cases = [
        (["get", "roles", "--format", "xml"], 3, "--format: 'xml' is not one of yaml, json, text"),
        (["audit", "--limit", "many"], 3, "--limit"),
        (["auth", "export", "--type", "ssh"], 3, "--type"),
        (["get", "roles", "--format"], 2, "expected one argument"),
        (["gt", "roles"], 2, "did you mean 'get'?"),
    ]
    for args, code, words in cases:
        proc = ctl(server, *args)
        assert proc.returncode == code and words in proc.stderr, (args, proc.returncode, proc.stderr)


def test_the_readme_table_lists_the_codes_the_cli_uses() -> None:
    from machineid.cli import exit_codes

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", readme, flags=re.M))
    codes = {v for k, v in vars(exit_codes).items() if k.isupper() and isinstance(v, int)}
    assert {int(c) for c in table} == codes
    assert "a flag's value" in table["3"] and "a mistyped command or flag" in table["2"]


def test_bot_start_with_its_data_dir_under_a_file_is_invalid_input(tmp_path: Path) -> None:
    """No traceback: the data dir and the file in the way named, exit 3, before anything is sent."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = run_cli("bot", "start", "--oneshot", "--data-dir", str(blocker / "data"), "--destination-dir",
                   str(tmp_path / "out"), "--token", "f" * 32, "--auth-server", "127.0.0.1:1", "--ca-pin",
                   "sha256:" + "0" * 64, check=False)
    assert proc.returncode == 3 and "Traceback" not in proc.stderr, proc.stderr
    assert f"the data dir (--data-dir) {blocker / 'data'} is not usable: {blocker} is a file" in proc.stderr
    for command in (["create"], ["show"]):
        kp = run_cli("bot", "keypair", *command, "--data-dir", str(blocker / "data"), check=False)
        assert kp.returncode == 3 and f"{blocker} is a file" in kp.stderr and "Traceback" not in kp.stderr


def test_bot_keypair_show_prints_the_public_key_again(tmp_path: Path) -> None:
    data = tmp_path / "bot-data"
    created = run_cli("bot", "keypair", "create", "--data-dir", str(data)).stdout
    assert run_cli("bot", "keypair", "show", "--data-dir", str(data)).stdout == created
    again = run_cli("bot", "keypair", "create", "--data-dir", str(data), check=False)
    assert again.returncode == 7 and "bot keypair show" in again.stderr  # the way to see it, not only --force
    none = run_cli("bot", "keypair", "show", "--data-dir", str(tmp_path / "empty"), check=False)
    assert none.returncode == 4 and none.stdout == "" and "machineid bot keypair create --data-dir" in none.stderr


def test_audit_refuses_an_unknown_action_and_suggests_the_closest(server: ServerProc) -> None:
    typo = ctl(server, "audit", "--action", "bot.jion")
    assert typo.returncode == 3 and "did you mean bot.join?" in typo.stderr and typo.stdout == ""
    bogus = ctl(server, "audit", "--action", "bogus")
    assert bogus.returncode == 3 and "not an audit action or family" in bogus.stderr and "bot, cert" in bogus.stderr
    assert "bot.join" in run_cli("ctl", "audit", "--help").stdout  # the actions are listed where the hint points


def test_the_audit_action_table_covers_every_action_the_cluster_writes() -> None:
    from machineid.model.audit_actions import ACTIONS

    cluster = Path(__file__).resolve().parent.parent / "provider" / "machineid" / "cluster"
    source = "\n".join(p.read_text() for p in cluster.rglob("*.py"))
    written = set(re.findall(r"audit(?:_denied)?\((?:[^,()]+(?:\([^()]*\))?, )?\"([a-z_]+\.[a-z_]+)\"", source))
    assert len(written) >= 10 and written <= set(ACTIONS), written - set(ACTIONS)


def test_users_add_of_an_existing_user_points_at_what_users_add_can_do(server: ServerProc) -> None:
    server.ctl("users", "add", "twice", "--roles=auditor")
    again = ctl(server, "users", "add", "twice", "--roles=auditor")
    assert again.returncode == 7 and "already exists" in again.stderr
    assert "create --force" not in again.stderr and "machineid ctl edit user/twice" in again.stderr


def _leaf_parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    from machineid.cli.main import build_parser

    def walk(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.ArgumentParser]]:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            return [(path, parser)]
        children = {id(c): (name, c) for a in subs for name, c in a.choices.items()}  # aliases once
        return [leaf for name, child in children.values() for leaf in walk(child, f"{path} {name}".strip())]

    return walk(build_parser(), "")


def test_every_command_has_examples_that_parse() -> None:
    """Every help page ends with examples (auth sign, edit, bot start, server start, node principals had none), and
    each example is a command line the parser accepts."""
    from machineid.cli.main import build_parser

    leaves = _leaf_parsers()
    assert {"ctl auth sign", "ctl edit", "bot start", "server start", "node principals"} <= {p for p, _ in leaves}
    for path, parser in leaves:
        assert parser.epilog and "example" in parser.epilog, f"`machineid {path} --help` has no example"
        lines = parser.epilog.replace("\\\n", " ").splitlines()
        # `machineid ...` wherever it starts (in sshd_config, in `<(...)`) up to a redirection, pipe or comment;
        # lines with run-time values (`$(...)`) aside
        examples = [m.group(0) for ln in lines if "$(" not in ln
                    for m in [re.search(r"machineid [^()|>#]*", ln)] if m]
        assert examples, path
        for line in examples:
            argv = shlex.split(line)[1:]
            try:
                build_parser().parse_args(argv)
            except SystemExit as e:
                raise AssertionError(f"`machineid {path} --help`: the example does not parse: {line}") from e


@pytest.mark.parametrize("login", ["-h", "--help", "-oops", "--labels", "--version"])
def test_node_principals_never_takes_the_login_for_a_flag(login: str) -> None:
    """sshd reads stdout as principals: a login that looks like a flag prints nothing and is refused."""
    for extra in ([], ["--"]):
        proc = run_cli("node", "principals", "--labels", "env=prod", *extra, login, "ssh-ed25519-cert-v01@openssh.com",
                       "AAAA", check=False)
        assert proc.stdout == "" and proc.returncode != 0, (login, proc.stdout)
        assert "refusing" in proc.stderr and "Traceback" not in proc.stderr
    short = run_cli("node", "principals", "--labels", "env=prod", login, check=False)  # sshd_config without %t %k
    assert short.stdout == "" and short.returncode != 0


def test_a_reader_that_goes_away_ends_the_command_quietly(server: ServerProc) -> None:
    """`ctl audit --format jsonl | head -n 1` printed a BrokenPipeError traceback and exited 1."""
    docs = "".join(f"---\nkind: user\nmetadata: {{name: pipe-reader-{i:03d}}}\nspec: {{roles: [auditor]}}\n"
                   for i in range(300))
    server.ctl("create", "-f", "-", input=docs)  # 300 audit records: more than a pipe holds
    proc = subprocess.run(f"{MACHINEID} ctl --data-dir {server.data_dir} audit --format jsonl | head -n 1; "
                          "exit ${PIPESTATUS[0]}", shell=True, capture_output=True, text=True, timeout=60,
                          executable="/bin/bash")
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    assert proc.returncode == 141 and len(proc.stdout.splitlines()) == 1
