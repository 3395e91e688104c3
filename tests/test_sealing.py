"""CA private keys are sealed at rest with a key that is not in the database: a copy of the database alone (a
backup, a dump) holds nothing that signs."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from machineid.api import certs
from machineid.cluster import x509_issuance
from machineid.cluster.authority import CA_KIND
from machineid.cluster.process import MACHINEID
from machineid.cluster.sealing import KeySource
from machineid.cluster.service import Cluster
from machineid.cluster.store.sqlite import SQLiteBackend
from machineid.model.errors import PreconditionError
from tests.conftest import ServerProc
from tests.inprocess import CLUSTER, Clock


def database_bytes(data_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(data_dir.glob("cluster.db*")))


def test_a_copy_of_the_database_alone_signs_nothing(tmp_path: Path) -> None:
    srv = ServerProc(tmp_path / "data")
    srv.start()
    pin = json.loads((srv.data_dir / "server.json").read_text())["ca_pin"]
    assert srv.stop() == 0
    assert b"PRIVATE KEY" not in database_bytes(srv.data_dir)  # no CA key in clear, in the file or its WAL
    key_file = srv.data_dir / "ca.key"
    assert oct(key_file.stat().st_mode & 0o777) == "0o600"
    assert len(base64.b64decode(key_file.read_text())) == 32

    stolen = tmp_path / "stolen"
    stolen.mkdir(mode=0o700)
    shutil.copy(srv.data_dir / "cluster.db", stolen / "cluster.db")
    proc = subprocess.run([MACHINEID, "server", "start", "--data-dir", str(stolen), "--listen", "127.0.0.1:0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert "the CA keys in the database are sealed, and there is no key at" in proc.stderr + proc.stdout
    assert not (stolen / "ca.key").exists()  # no new key was made up for a sealed database

    shutil.copy(key_file, stolen / "ca.key")  # with the key, the same cluster
    again = ServerProc(stolen)
    again.start()
    try:
        assert json.loads((stolen / "server.json").read_text())["ca_pin"] == pin
    finally:
        again.stop()


def test_keys_in_clear_from_an_earlier_version_are_sealed_in_place(tmp_path: Path) -> None:
    backend = SQLiteBackend(tmp_path / "cluster.db")
    tls_key, tls_cert = x509_issuance.new_tls_ca(CLUSTER)
    user_ca, host_ca = (certs.private_key_pem(ed25519.Ed25519PrivateKey.generate()) for _ in range(2))
    backend.create(CA_KIND, CLUSTER, {"user_ca": user_ca, "host_ca": host_ca, "tls_key": certs.private_key_pem(tls_key),
                                      "tls_cert": certs.cert_pem(tls_cert)})
    backend.close()
    c = Cluster(SQLiteBackend(tmp_path / "cluster.db"), CLUSTER, KeySource(tmp_path / "ca.key"), clock=Clock())
    assert c.authority.pin == certs.ca_pin(certs.cert_pem(tls_cert))  # the same CA
    stored = c.backend.get(CA_KIND, CLUSTER).value
    assert set(stored) == {"tls_cert", "sealed"} and "PRIVATE KEY" not in json.dumps(stored)
    c.backend.close()
    reopened = Cluster(SQLiteBackend(tmp_path / "cluster.db"), CLUSTER, KeySource(tmp_path / "ca.key"), clock=Clock())
    assert reopened.authority.pin == c.authority.pin


def test_the_wrong_key_or_an_unsafe_key_file_is_refused_saying_which(tmp_path: Path) -> None:
    c = Cluster(SQLiteBackend(tmp_path / "cluster.db"), CLUSTER, KeySource(tmp_path / "ca.key"), clock=Clock())
    c.backend.close()
    other = tmp_path / "other.key"
    other.write_text(base64.b64encode(os.urandom(32)).decode())
    other.chmod(0o600)
    with pytest.raises(PreconditionError, match=r"sealed with key [0-9a-f]{16}, and this server was given key "
                                                r"[0-9a-f]{16} \(.*other.key\)"):
        Cluster(SQLiteBackend(tmp_path / "cluster.db"), CLUSTER, KeySource(other), clock=Clock())
    (tmp_path / "ca.key").chmod(0o644)
    with pytest.raises(PreconditionError, match=r"may be read by other users \(mode 0644\).*chmod 600"):
        Cluster(SQLiteBackend(tmp_path / "cluster.db"), CLUSTER, KeySource(tmp_path / "ca.key"), clock=Clock())


def test_the_key_from_a_command_or_the_environment(tmp_path: Path) -> None:
    key = base64.b64encode(os.urandom(32)).decode()
    (tmp_path / "kms-answer").write_text(key + "\n")
    first = Cluster(SQLiteBackend(tmp_path / "cluster.db"), CLUSTER,
                    KeySource(tmp_path / "unused.key", command=f"cat {tmp_path / 'kms-answer'}"), clock=Clock())
    first.backend.close()
    assert not (tmp_path / "unused.key").exists()
    second = Cluster(SQLiteBackend(tmp_path / "cluster.db"), CLUSTER, KeySource(tmp_path / "unused.key", environ=key),
                     clock=Clock())
    assert second.authority.pin == first.authority.pin
    with pytest.raises(PreconditionError, match="--ca-key-command exited with 1"):
        KeySource(tmp_path / "unused.key", command="false").load(create=False)
