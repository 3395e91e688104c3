"""The cluster's key revocation lists as OpenSSH reads them: `ssh-keygen -Q` (the same parser sshd's RevokedKeys
uses) says a listed certificate is revoked and leaves the others alone."""

from __future__ import annotations

import subprocess
from pathlib import Path

from machineid.cluster import krl


def _cert(tmp: Path, ca: Path, name: str, serial: int, key_id: str) -> Path:
    key = tmp / name
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    subprocess.run(["ssh-keygen", "-q", "-s", str(ca), "-I", key_id, "-n", "machineid:root", "-z", str(serial),
                    str(key) + ".pub"], check=True, capture_output=True)
    return Path(str(key) + "-cert.pub")


def _revoked(krl_file: Path, cert: Path) -> bool:
    out = subprocess.run(["ssh-keygen", "-Q", "-f", str(krl_file), str(cert)], capture_output=True, text=True)
    assert out.returncode in (0, 1), out.stderr  # 1: revoked; anything else is a file OpenSSH cannot read
    return out.returncode == 1


def test_openssh_reads_the_list_and_revokes_exactly_what_it_names(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True)
    other_ca = tmp_path / "other_ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_ca)], check=True)
    by_serial = _cert(tmp_path, ca, "a", 2**63 + 5, "user-a")
    by_id = _cert(tmp_path, ca, "b", 77, "bot-locked")
    untouched = _cert(tmp_path, ca, "c", 78, "bot-fine")
    same_serial_other_ca = _cert(tmp_path, other_ca, "d", 2**63 + 5, "bot-locked-elsewhere")
    data = krl.encode(Path(str(ca) + ".pub").read_text(),
                      serials=[2**63 + 5, 0, 2**63 + 5], key_ids=["bot-locked", ""], version=3, generated=1_700_000_000)
    krl_file = tmp_path / "revoked_keys"
    krl_file.write_bytes(data)
    assert _revoked(krl_file, by_serial)
    assert _revoked(krl_file, by_id)
    assert not _revoked(krl_file, untouched)
    assert not _revoked(krl_file, same_serial_other_ca)  # revocations are scoped to our CA


def test_an_empty_list_revokes_nothing(tmp_path: Path) -> None:
    ca = tmp_path / "ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True)
    cert = _cert(tmp_path, ca, "a", 9, "user-a")
    krl_file = tmp_path / "revoked_keys"
    krl_file.write_bytes(krl.encode(Path(str(ca) + ".pub").read_text(), version=1, generated=0))
    assert not _revoked(krl_file, cert)
    assert krl.encode("ssh-ed25519 AAAA", version=1, generated=0).startswith(krl.MAGIC)
