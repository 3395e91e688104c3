"""Secrets at rest: the CA private keys are sealed (AES-256-GCM) with a key that is never in the database.

A copy of the database alone (a backup, a PostgreSQL dump, a stolen disk image of the database server) then holds
nothing that signs. The sealing key comes from, in order: a command that prints it (`--ca-key-command`, for a KMS or
a secrets manager), the environment (`MACHINEID_CA_KEY`), or a file (`--ca-key-file`, default DATA_DIR/ca.key,
created 0600 when the cluster is). Servers sharing a PostgreSQL database must all be given the same key.

The key is 32 random bytes, written as base64. The sealed record names the key's id (a hash of it, not the key), so
a server given the wrong key says which one the database expects.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shlex
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from machineid.api.identity import write_private
from machineid.model.errors import PreconditionError, ValidationError

KEY_BYTES = 32
ENV = "MACHINEID_CA_KEY"
SCHEME = "aes-256-gcm/v1"
COMMAND_TIMEOUT = 30.0
HOW = ("--ca-key-file FILE (the ca.key of the server that created the cluster), MACHINEID_CA_KEY, or "
       "--ca-key-command CMD")


class Sealer:
    def __init__(self, key: bytes, where: str) -> None:
        if len(key) != KEY_BYTES:
            raise ValidationError(f"{where}: the sealing key must be {KEY_BYTES} bytes, written as base64 (for "
                                  "example `head -c 32 /dev/urandom | base64`)")
        self._aead = AESGCM(key)
        self.key_id = hashlib.sha256(b"machineid sealing key id\0" + key).hexdigest()[:16]
        self.where = where

    @classmethod
    def from_text(cls, text: str, where: str) -> Sealer:
        try:
            key = base64.b64decode(text.strip(), validate=True)
        except ValueError:
            raise ValidationError(f"{where}: the sealing key is not base64") from None
        return cls(key, where)

    def seal(self, value: dict[str, Any], context: str) -> dict[str, str]:
        """`context` (what the value is) is bound into the seal: a sealed value moved to another record fails."""
        nonce = secrets.token_bytes(12)
        data = self._aead.encrypt(nonce, json.dumps(value, sort_keys=True).encode(), context.encode())
        return {"scheme": SCHEME, "key_id": self.key_id, "nonce": base64.b64encode(nonce).decode(),
                "data": base64.b64encode(data).decode()}

    def unseal(self, sealed: dict[str, Any], context: str) -> dict[str, Any]:
        if sealed.get("scheme") != SCHEME:
            raise PreconditionError(f"{context} is sealed with {sealed.get('scheme')!r}, which this version does not "
                                    "read; upgrade the server")
        try:
            plain = self._aead.decrypt(base64.b64decode(sealed["nonce"]), base64.b64decode(sealed["data"]),
                                       context.encode())
        except (InvalidTag, KeyError, ValueError):
            raise PreconditionError(f"{context} in the database is sealed with key {sealed.get('key_id')}, and this "
                                    f"server was given key {self.key_id} ({self.where}); pass the cluster's key: "
                                    f"{HOW}") from None
        value: dict[str, Any] = json.loads(plain)
        return value


@dataclass(frozen=True)
class KeySource:
    """Where this server's sealing key comes from (see the module docstring)."""

    file: Path
    command: str = ""
    environ: str = ""  # the value of MACHINEID_CA_KEY, if set

    @classmethod
    def for_data_dir(cls, data_dir: Path, file: Path | None = None, command: str = "") -> KeySource:
        return cls(file=file or data_dir / "ca.key", command=command, environ=os.environ.get(ENV, ""))

    def load(self, create: bool) -> Sealer:
        """The key; with `create` (a new cluster, or keys still in clear), a new key file when no key was given."""
        return Sealer.from_text(*self.text(create))

    def text(self, create: bool) -> tuple[str, str]:
        """The key as written (base64), and where it came from. The server hands it to its worker processes
        (over a pipe: no file or environment another process could read)."""
        if self.command:
            return self._run_command(), f"--ca-key-command {self.command}"
        if self.environ:
            return self.environ, ENV
        try:
            mode = self.file.stat().st_mode
        except FileNotFoundError:
            if not create:
                raise PreconditionError(f"the CA keys in the database are sealed, and there is no key at "
                                        f"{self.file}; pass the cluster's key: {HOW}") from None
            write_private(self.file, base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
            return self.file.read_text(), str(self.file)
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PreconditionError(f"{self.file} may be read by other users (mode {stat.S_IMODE(mode):04o}); "
                                    f"it unseals the CA keys: chmod 600 {shlex.quote(str(self.file))}")
        return self.file.read_text(), str(self.file)

    def _run_command(self) -> str:
        try:
            proc = subprocess.run(shlex.split(self.command), capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise PreconditionError(f"--ca-key-command: could not run it: {e}") from None
        if proc.returncode != 0:
            raise PreconditionError(f"--ca-key-command exited with {proc.returncode}; it must print the sealing key "
                                    "(base64) and exit 0")
        return proc.stdout
