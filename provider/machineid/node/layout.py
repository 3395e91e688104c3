"""Where everything lives on a node, in one place: `node setup` writes these paths, `node start` keeps them fresh
and the principals helper reads them, so the three cannot disagree.

`root` is the filesystem root the node runs under ("/" on a real node; tests and self-contained installs use a
root-owned directory that sshd accepts). `dest_dir`, for image builders, is where files are written while their
contents still name the paths under `root` (DESTDIR). Standard library only: the helper's installer and the agent
import it on hosts where nothing else is set up yet.

The state file (`state`, JSON, root-owned 0644) is the contract between the agent (writer) and the helper
(reader): {"format": 1, "node": NAME, "cluster": CLUSTER, "labels": {KEY: VALUE}, "revision": NODE_REVISION,
"refreshed_at": UNIX_SECONDS, "max_age": SECONDS}. The helper refuses every login when the file is missing or
unreadable, and when max_age > 0 and refreshed_at is older than max_age (the agent could not refresh labels and
revocations from the cluster for that long).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

STATE_FORMAT = 1
# Certificate principals are "machineid:" + login: a node whose sshd trusts the user CA but runs no principals
# command (a plain `TrustedUserCAKeys`) then accepts no certificate of ours, since no account is called that.
PRINCIPAL_PREFIX = "machineid:"


@dataclass(frozen=True)
class Layout:
    root: Path = Path("/")
    dest_dir: Path | None = None

    def at(self, rel: str) -> Path:
        """The runtime path of `rel` (relative to the root), as sshd and the agent will see it."""
        return self.root / rel

    def written(self, path: Path) -> Path:
        """Where a runtime path is written: itself, or under dest_dir for an image being built."""
        if self.dest_dir is None:
            return path
        return self.dest_dir / path.relative_to("/")

    @property
    def helper_dir(self) -> Path:
        return self.at("usr/local/libexec/machineid")

    @property
    def principals_helper(self) -> Path:
        """sshd's AuthorizedPrincipalsCommand: root-owned, and so is every directory above it."""
        return self.helper_dir / "principals"

    @property
    def etc(self) -> Path:
        return self.at("etc/machineid")

    @property
    def config(self) -> Path:
        """The node agent's settings (`node setup` writes them, `node start` reads them): YAML, 0600."""
        return self.etc / "node.yaml"

    @property
    def state(self) -> Path:
        return self.etc / "state.json"

    @property
    def user_ca(self) -> Path:
        return self.etc / "user_ca.pub"

    @property
    def revoked_keys(self) -> Path:
        """sshd's RevokedKeys: an OpenSSH KRL (an empty file revokes nothing; a missing one makes sshd refuse
        every key)."""
        return self.etc / "revoked_keys"

    @property
    def host_key(self) -> Path:
        return self.at("etc/ssh/machineid_host_key")

    @property
    def host_cert(self) -> Path:
        return self.host_key.with_name(self.host_key.name + "-cert.pub")

    @property
    def sshd_config(self) -> Path:
        return self.at("etc/ssh/sshd_config")

    @property
    def sshd_dropin_dir(self) -> Path:
        return self.at("etc/ssh/sshd_config.d")

    @property
    def sshd_dropin(self) -> Path:
        return self.sshd_dropin_dir / "50-machineid.conf"

    @property
    def data_dir(self) -> Path:
        """The node's identity (its TLS key and certificates, join state): 0700."""
        return self.at("var/lib/machineid/node")

    @property
    def systemd_unit(self) -> Path:
        return self.at("etc/systemd/system/machineid-node.service")
