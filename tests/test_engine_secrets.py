"""The Pulumi engine's secrets at rest (what the quickstart and the end-to-end tests run on): a private home and a
passphrase of its own, so no other local user can read the state or decrypt the join tokens in it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pulumi
import pytest

from machineid.pulumi.engine import LEGACY_PASSPHRASE, Engine, outputs_plain

ROOT = Path(__file__).resolve().parent.parent
SECRET = "join-token-that-must-not-be-in-clear"
# The Automation API leaves its inline program's event loop unclosed (a Pulumi SDK matter, not ours).
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def mode(path: Path) -> int:
    return path.stat().st_mode & 0o7777


def _program() -> None:
    pulumi.export("token", pulumi.Output.secret(SECRET))


def up(engine: Engine, work: Path) -> dict[str, object]:
    work.mkdir(exist_ok=True)
    stack = engine.inline_stack("secrets", "test", _program, work)
    return outputs_plain(stack.up(color="never").outputs)


def export(engine: Engine, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return engine.cli("stack", "export", "--stack", "test", *args, cwd=work, check=False)


def test_home_is_private_and_its_passphrase_random_and_kept(tools_bin: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    (home / "state").mkdir(parents=True, mode=0o755)  # as the engine used to leave them
    home.chmod(0o755)
    (home / "state").chmod(0o755)
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "the user's passphrase for other stacks")
    engine = Engine(tools_bin, home)
    assert mode(home) == 0o700 and mode(home / "state") == 0o700
    phrase_file = home / "passphrase"
    assert mode(phrase_file) == 0o600
    phrase = phrase_file.read_text().strip()
    assert phrase != LEGACY_PASSPHRASE and len(phrase) >= 40
    assert engine.environ()["PULUMI_CONFIG_PASSPHRASE"] == phrase
    # the same home keeps its passphrase (its stacks need it); another home gets its own
    assert Engine(tools_bin, home).environ()["PULUMI_CONFIG_PASSPHRASE"] == phrase
    assert phrase_file.read_text().strip() == phrase
    assert Engine(tools_bin, tmp_path / "other").environ()["PULUMI_CONFIG_PASSPHRASE"] != phrase


def test_state_after_up_is_private_and_encrypted_with_the_homes_passphrase(tools_bin: Path, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    engine = Engine(tools_bin, home)
    assert up(engine, work) == {"token": SECRET}
    state = home / "state"
    files = [p for p in state.rglob("*") if p.is_file()]
    assert files and not [p for p in files if SECRET in p.read_text(errors="replace")]
    assert mode(home) == 0o700 and mode(state) == 0o700  # whatever modes the engine gives the files under it
    assert SECRET in export(engine, work, "--show-secrets").stdout
    # what anyone could do with the passphrase that used to be in the source
    engine.passphrase = LEGACY_PASSPHRASE
    legacy = export(engine, work, "--show-secrets")
    assert legacy.returncode != 0 and SECRET not in legacy.stdout
    # a later run on the same home (the quickstart's second run) opens the stack again
    assert up(Engine(tools_bin, home), work) == {"token": SECRET}


def test_a_home_with_stacks_from_before_the_passphrase_file_still_opens(tools_bin: Path, tmp_path: Path) -> None:
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    (home / "passphrase").write_text(LEGACY_PASSPHRASE)  # what the engine used before it had the file
    up(Engine(tools_bin, home), work)
    (home / "passphrase").unlink()
    engine = Engine(tools_bin, home)
    assert engine.passphrase == LEGACY_PASSPHRASE and mode(home / "passphrase") == 0o600
    assert up(engine, work) == {"token": SECRET}
