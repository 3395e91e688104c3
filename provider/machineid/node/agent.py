"""The node agent (`machineid node start`): joins the cluster once, then keeps what sshd and the principals helper
read fresh, and says the node is alive.

Each sync: the identity (Layout.data_dir, 0700) is renewed at a third of its lifetime left, on the generation
counter as a bot's is (a copy renewing locks the node); the host key is made once and kept; the node heartbeats and
gets its labels, the user CA, the key revocation list when it changed and, when its certificate is due (a third
left, other names, another key), a new host certificate; then the host certificate, the user CA, the revocation list
(sshd's RevokedKeys) and last the state file are written atomically, and sshd is reloaded (SIGHUP) only when the
host certificate changed (sshd reads RevokedKeys at every login). The CA pin is checked before anything is sent.

When the cluster is out of reach the agent retries with backoff and writes nothing: the state file's refreshed_at
stays put, so the helper can tell how stale the node's labels are. A refusal (a spent token, a locked node, a
superseded identity) is final: retrying cannot fix it, so the agent stops with the cluster's message.
"""

from __future__ import annotations

import logging
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from machineid import __version__
from machineid.agent import storage
from machineid.agent.config import resolve_token
from machineid.api import certs
from machineid.api.client import Client, JoinClient, check_pin, fetch_cluster_cas, identity_from_certs
from machineid.api.identity import Identity, write_private
from machineid.api.nodes import NodeSync
from machineid.model import codec
from machineid.model.errors import MachineIDError, PreconditionError, TransportError, ValidationError
from machineid.node import config as node_config
from machineid.node import host_key, revoked_keys, sshd, state_file
from machineid.node.config import NodeConfig
from machineid.node.layout import Layout

log = logging.getLogger("machineid.node")
IDENTITY_FILE = "identity"
PENDING_KEY_FILE = "pending.key"  # the key of a renewal in flight, kept until it succeeds
LOCK_FILE = "agent.lock"
# The node's TLS identity: long enough to ride out a cluster outage of some hours, renewed at a third left.
IDENTITY_TTL = timedelta(hours=8)
MAX_BACKOFF = 60.0


class AgentError(MachineIDError):
    """A failure that retrying will not fix."""


@dataclass
class SyncResult:
    joined: bool = False
    renewed_identity: bool = False
    host_cert_renewed: bool = False
    reloaded: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    revision: str = ""
    host_cert_expires: datetime | None = None
    revocations_version: int = 0  # of the key revocation list the node holds after the sync
    revocations_written: bool = False


class NodeAgent:
    def __init__(self, layout: Layout, config: NodeConfig, *, clock: Callable[[], datetime] | None = None,
                 stop: threading.Event | None = None, heartbeat_interval: timedelta | None = None) -> None:
        self.layout = layout
        self.config = config
        self.clock = clock or (lambda: datetime.now(UTC))
        self.stop_event = stop or threading.Event()
        self.interval = heartbeat_interval or config.interval
        self.data_dir = layout.written(layout.data_dir)
        self._lock_fd: int | None = None
        self._principals: list[str] | None = None  # what the cluster certified last

    # ---------------------------------------------------------------- the data dir
    def lock(self) -> None:
        """One agent per node: two would renew the same identity and lock the node on the generation counter."""
        import fcntl

        if self._lock_fd is not None:
            return
        storage.ensure_private_dir(self.data_dir, storage.NOTHING_SENT)
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PreconditionError(f"another node agent is running with {self.data_dir}; stop it first (two agents "
                                    "on one identity would lock the node)") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def _identity(self) -> Identity | None:
        path = self.data_dir / IDENTITY_FILE
        if not path.exists():
            return None
        try:
            ident = Identity.load(path)
        except ValueError as e:
            log.warning("ignoring the unreadable identity %s: %s", path, e)
            return None
        return ident if ident.info.node_name == self.config.name else None

    def _save(self, ident: Identity) -> None:
        storage.ensure_private_dir(self.data_dir)
        ident.save(self.data_dir / IDENTITY_FILE)

    # ---------------------------------------------------------------- the cluster
    def _pinned_cas(self) -> list[str]:
        """First contact: the server's CA only if it matches a configured pin; nothing is sent before."""
        presented = fetch_cluster_cas(self.config.auth_server)
        errors = []
        for pin in self.config.ca_pins:
            try:
                return [check_pin(presented, pin)]
            except MachineIDError as e:
                errors.append(str(e))
        raise AgentError("; ".join(errors))

    def _check_pinned(self, ident: Identity) -> None:
        """A stored identity trusts the CA it came with: it must still be one the config pins (a changed pin, or an
        identity of another cluster, is not used)."""
        if not any(certs.ca_pin(ca) in self.config.ca_pins for ca in ident.tls_ca_certs):
            raise AgentError(f"the identity in {self.data_dir} is for a CA that none of ca_pins in the config matches; "
                             "remove it to join again, or fix the pin")

    def join(self) -> Identity:
        cfg = self.config
        method = cfg.join_method
        if not cfg.token and method != "iam":
            raise ValidationError(f"no identity in {self.data_dir} and no token in the config: set token (a file "
                                  "holding the join token, or the iam/bound_keypair token's name)")
        token = resolve_token(cfg.token, "token")
        cas = self._pinned_cas()  # before anything is sent (the token included)
        ttl = IDENTITY_TTL
        if method == "bound_keypair":
            from machineid.agent import keypair

            secret = resolve_token(cfg.registration_secret, "registration_secret")
            with JoinClient(cfg.auth_server, cas) as client:
                certify, joined = keypair.join(client, self.data_dir, token, secret, ttl)
            name, reply_certs, key = joined.node_name, joined.certs, certify
        else:
            key = certs.new_key()
            public = certs.public_key_pem(key.public_key())
            with JoinClient(cfg.auth_server, cas) as client:
                if method == "iam":
                    reply = client.join_with_iam(token, public, ttl)
                else:
                    reply = client.register_using_token(token, public, ttl)
            name, reply_certs = reply.node_name, reply.certs
        if name != cfg.name:
            raise AgentError(f'the token joins {"node " + repr(name) if name else "a bot"}, not node "{cfg.name}" '
                             "(name in the config); use a Node token for this node")
        ident = identity_from_certs(certs.private_key_pem(key), reply_certs)
        self._save(ident)
        (self.data_dir / PENDING_KEY_FILE).unlink(missing_ok=True)
        return ident

    def renew(self, current: Identity) -> Identity:
        """As the bot agent renews: the new key is on disk before it is sent, so a retry after a lost answer (even
        by a restarted agent) sends the same key, which the cluster takes for the same renewal, not a copy."""
        path = self.data_dir / PENDING_KEY_FILE
        try:
            key = certs.load_private_key(path.read_text())
        except (OSError, ValueError):
            key = certs.new_key()
            write_private(path, certs.private_key_pem(key))
        with Client(self.config.auth_server, current) as client:
            reply = client.renew(certs.public_key_pem(key.public_key()), IDENTITY_TTL)
        renewed = identity_from_certs(certs.private_key_pem(key), reply)
        self._save(renewed)  # before the pending key goes: there is always a key for the stored identity
        path.unlink(missing_ok=True)
        return renewed

    def _due(self, ident: Identity) -> bool:
        cert = ident.cert
        life = cert.not_valid_after_utc - cert.not_valid_before_utc
        return cert.not_valid_after_utc - self.clock() <= life * host_key.RENEW_AT_LEFT

    def _ensure_identity(self, result: SyncResult) -> Identity:
        ident = self._identity()
        if ident is not None:
            self._check_pinned(ident)
        if ident is not None and ident.expires <= self.clock():
            if self.config.join_method == "token":
                raise AgentError(f"the node's identity expired at {codec.format_time(ident.expires)} (the cluster "
                                 "was out of reach for longer than its lifetime), so it cannot be renewed; give the "
                                 "node a new join token (`machineid ctl tokens add --type=node --node-name="
                                 f"{self.config.name}`)")
            log.info("the identity expired at %s; joining again", codec.format_time(ident.expires))
            ident = None
        if ident is None:
            try:
                ident = self.join()
            except (TransportError, ValidationError):
                raise
            except MachineIDError as e:
                raise AgentError(f"join refused: {e}") from None
            result.joined = True
            log.info("joined as node %s (generation %d)", self.config.name, ident.info.generation)
        elif self._due(ident):
            try:
                ident = self.renew(ident)
            except TransportError:
                raise
            except MachineIDError as e:
                raise AgentError(f"renewal refused: {e}") from None
            result.renewed_identity = True
            log.info("renewed the node's identity (generation %d), valid until %s", ident.info.generation,
                     codec.format_time(ident.expires))
        return ident

    def _sync(self, client: Client, key_line: str) -> NodeSync:
        cert = host_key.current(self.layout)
        now = self.clock()
        applied = state_file.applied_revision(self.layout)
        held = revoked_keys.held_version(self.layout)
        want = host_key.wanted(cert, key_line, self._principals, now)
        answer = client.sync_node(__version__, self.interval, key_line if want else "", applied, held)
        if not want and cert is not None and cert.principals != answer.host_cert_principals:
            # The cluster certifies other names now (hostnames or addr changed): ask again, with the key.
            answer = client.sync_node(__version__, self.interval, key_line, applied, held)
        self._principals = answer.host_cert_principals
        return answer

    # ---------------------------------------------------------------- one sync
    def sync_once(self, reload: bool = True) -> SyncResult:
        """Join or renew as needed, heartbeat, and write what sshd and the helper read. Raises TransportError while
        the cluster is out of reach (nothing written), AgentError when it refuses. reload=False leaves sshd to the
        caller (`node setup --join` reloads once for everything it changed: two SIGHUPs in a row can catch sshd
        while it re-executes, when the signal's default action ends it)."""
        self.lock()
        result = SyncResult()
        ident = self._ensure_identity(result)
        try:
            key_line = host_key.ensure(self.layout)
        except ValueError as e:
            raise AgentError(str(e)) from None
        try:
            with Client(self.config.auth_server, ident) as client:
                answer = self._sync(client, key_line)
        except TransportError:
            raise
        except MachineIDError as e:
            raise AgentError(f"sync refused: {e}") from None
        layout = self.layout
        if answer.host_cert:
            result.host_cert_renewed = host_key.write(layout, answer.host_cert)
            log.info("new host certificate for %s, valid until %s", ", ".join(answer.host_cert_principals),
                     codec.format_time(answer.host_cert_expires) if answer.host_cert_expires else "?")
        user_ca = "".join(k.strip() + "\n" for k in answer.ssh_user_ca_keys)
        ca_path = layout.written(layout.user_ca)
        if not ca_path.exists() or ca_path.read_text() != user_ca:
            write_private(ca_path, user_ca, 0o644)
        result.revocations_version, result.revocations_written = self._write_revocations(answer)
        # Only now, with the revocation list of this answer in place: refreshed_at never claims a list is fresh
        # that the node did not write (the helper refuses logins once it is older than max_age).
        state_file.write(layout, answer.node_name, answer.cluster_name, answer.labels, answer.revision, self.clock(),
                         answer.revocation_max_age)
        if result.host_cert_renewed and reload:
            result.reloaded = sshd.reload_for_new_certificate(self.config.sshd_pid_file)
        result.labels, result.revision = answer.labels, answer.revision
        current = host_key.current(layout)
        result.host_cert_expires = current.valid_before if current else None
        log.info("synced: node %s, labels revision %s, host certificate valid until %s", answer.node_name,
                 answer.revision, codec.format_time(result.host_cert_expires) if result.host_cert_expires else "-")
        return result

    def _write_revocations(self, answer: NodeSync) -> tuple[int, bool]:
        """The cluster's key revocation list, written when it sent one (a version other than the node's); an
        error here is raised before the state file is touched."""
        if answer.revoked_keys:
            try:
                revoked_keys.write(self.layout, answer.revoked_keys)
            except ValueError as e:
                raise AgentError(str(e)) from None
            log.info("new key revocation list, version %d (%d bytes)", answer.revocations_version,
                     len(answer.revoked_keys))
            return answer.revocations_version, True
        held = revoked_keys.held_version(self.layout)
        if held != answer.revocations_version:
            if answer.revocations_version == 0:
                log.warning("the cluster sends no key revocation list (an older version): certificates it revokes "
                            "log in here until they expire")
            else:
                raise AgentError(f"the cluster's revocation list is version {answer.revocations_version}, the node "
                                 f"holds {held}, and none was sent")
        return held, False

    # ---------------------------------------------------------------- the loop
    def run(self, initial_backoff: float = 1.0) -> None:
        """Sync every heartbeat interval until stopped; back off (up to a minute, never past the interval) while
        the cluster is out of reach."""
        interval = self.interval.total_seconds()
        backoff = initial_backoff
        while not self.stop_event.is_set():
            try:
                self.sync_once()
                backoff = initial_backoff
                wait = interval
            except (TransportError, OSError) as e:
                wait = min(backoff, MAX_BACKOFF, interval) * (0.8 + 0.4 * random.random())
                backoff = min(backoff * 2, MAX_BACKOFF)
                what = "cannot reach the cluster" if isinstance(e, TransportError) else "cannot write the node's files"
                log.warning("%s (%s); retrying in %.1fs (the state file keeps its last refresh time)", what, e, wait)
            self.stop_event.wait(wait)
        log.info("stopped")


def load(layout: Layout) -> NodeConfig:
    return node_config.load(layout.written(layout.config))


def sync_once(layout: Layout, reload: bool = True) -> SyncResult:
    """One join (when the node has none) and sync, what `node start --oneshot` does: `node setup --join` calls this
    before it reloads sshd, so the host certificate exists when sshd starts using it."""
    agent = NodeAgent(layout, load(layout))
    try:
        return agent.sync_once(reload)
    finally:
        agent.unlock()
