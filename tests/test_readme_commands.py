"""Every command line of the README, run as written (placeholders filled in) against a throwaway cluster, so the
README cannot promise a command, flag or answer that does not exist. Long-running commands (the server, the
agent, `tofu`) are checked for their flags against their own --help instead."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from machineid.cluster.process import MACHINEID
from tests.conftest import ServerProc

ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER = re.compile(r"\b[A-Z][A-Z_]{2,}\b")


def readme_lines() -> list[str]:
    lines: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command:
                lines.append(command)
    return lines


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[ServerProc]:
    """A server whose data dir is ./cluster, as the README writes it; the README's relative paths resolve here."""
    (tmp_path / "examples" / "quickstart").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "quickstart" / "cluster.yaml", tmp_path / "examples" / "quickstart")
    (tmp_path / "cluster.yaml").write_text("kind: role\nmetadata:\n  name: readme-new\n")
    srv = ServerProc(tmp_path / "cluster")
    srv.start()
    yield srv
    srv.stop()


def run(tmp: Path, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MACHINEID, *argv[1:]], cwd=tmp, capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "EDITOR": "true", "HOME": str(tmp)})


def test_every_admin_cli_line_runs_as_written(cluster: ServerProc, tmp_path: Path) -> None:
    ctl = [line for line in readme_lines() if line.startswith("machineid ctl ")]
    assert len(ctl) >= 20
    prepared = {"bots rm NAME": "bots add readme-gone --roles=access",
                "rm role/NAME": "create -f readme-role.yaml", "edit role/NAME": "create -f readme-edit.yaml"}
    (tmp_path / "readme-role.yaml").write_text("kind: role\nmetadata:\n  name: readme-role\n")
    (tmp_path / "readme-edit.yaml").write_text("kind: role\nmetadata:\n  name: readme-edit\n")
    fill = {"bots rm NAME": {"NAME": "readme-gone"}, "bots unlock NAME": {"NAME": "robot"},
            "auth sign --user NAME --out FILE": {"NAME": "admin", "FILE": "admin.identity"},
            "users add NAME": {"NAME": "readme-user"}, "users rm NAME": {"NAME": "readme-user"},
            "rm role/NAME": {"NAME": "readme-role"}, "edit role/NAME": {"NAME": "readme-edit"},
            "nodes unlock NAME": {"NAME": "node1"},
            "bots instances show INSTANCE_ID": {"INSTANCE_ID": "0123456789abcdef0123456789abcdef"}}
    # What the README documents these to answer, when not 0: unlocking a bot or node that is not locked says so.
    expected = {"bots unlock NAME": (7, "is not locked"), "nodes unlock NAME": (7, "is not locked"),
                "bots instances show INSTANCE_ID": (4, "no bot instance")}
    last_token = ""
    for line in ctl:
        key = next((k for k in fill if k in line), "")
        if prepared.get(key):
            setup = ["machineid", "ctl", "--data-dir", "./cluster", *shlex.split(prepared[key])]
            run(tmp_path, setup).check_returncode()
        filled = line.replace("/etc/ssh/", f"{tmp_path}/")
        for name, value in fill.get(key, {}).items():
            filled = filled.replace(name, value)
        filled = filled.replace("TOKEN", last_token)
        assert not PLACEHOLDER.findall(filled.replace("$EDITOR", "")), f"a README placeholder has no value: {line}"
        argv = shlex.split(filled)
        if "--follow" in argv:
            proc = subprocess.Popen([MACHINEID, *argv[1:]], cwd=tmp_path, stdout=subprocess.PIPE, text=True)
            try:
                first = proc.stdout.readline() if proc.stdout else ""
                assert first.startswith("{"), line
                assert proc.poll() is None, line  # still following
            finally:
                proc.terminate()
                proc.communicate(timeout=10)
            continue
        proc = run(tmp_path, argv)
        code, words = expected.get(key, (0, ""))
        assert proc.returncode == code and words in proc.stdout + proc.stderr, (line, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr, line
        if " tokens add " in filled:
            last_token = re.search(r"The (?:bot|node) token: (\S+)", proc.stdout).group(1)  # type: ignore[union-attr]


def test_long_running_commands_use_flags_that_exist() -> None:
    for line in readme_lines():
        if not line.startswith("machineid ") or line.startswith("machineid ctl "):
            continue
        words = shlex.split(line.replace("[", " ").replace("]", " "))
        command = []  # the (sub)command words before the first flag: `bot start`, `bot keypair create`
        for w in words[1:4]:
            if w.startswith("-"):
                break
            command.append(w)
        helptext = subprocess.run([MACHINEID, *command, "--help"], capture_output=True, text=True,
                                  timeout=60).stdout
        for flag in (w.split("=")[0] for w in words if w.startswith("--")):
            assert flag in helptext, f"{line}: {flag} is not a flag of `machineid {' '.join(command)}`"
