"""The bot agent: join (or reuse the stored identity), write the destinations, renew on an interval.

State: the renewable identity lives in the storage directory (0700 dir, 0600 files), so a restarted agent renews
instead of joining again (its token is single use); the destinations get separate, non-renewable certificates.
Renewal follows the cluster's generation counter; each
renewal carries a new key. When the cluster is unreachable the agent retries with exponential backoff and leaves
the last good certificates in place until they expire. Authentication failures (a locked bot, a superseded
identity, a used token) are final: retrying cannot fix them, so the agent stops with the cluster's message.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from machineid import __version__
from machineid.agent import destination, storage
from machineid.agent.config import AgentConfig, resolve_token
from machineid.api import certs, id_tokens
from machineid.api.client import Client, JoinClient, check_pin, fetch_cluster_cas, identity_from_certs
from machineid.api.identity import Identity
from machineid.api.v1 import types_pb2 as tpb
from machineid.model import codec
from machineid.model.delegated import DELEGATED_METHODS
from machineid.model.errors import MachineIDError, PreconditionError, TransportError, ValidationError
from machineid.model.instances import DestinationHealth, Heartbeat
from machineid.model.resources import Node

if TYPE_CHECKING:
    from machineid.agent.diag import Diagnostics

log = logging.getLogger("machineid.agent")
STATE_FILE = "identity"
PENDING_KEY_FILE = "pending.key"  # the key of a renewal in flight, kept until it succeeds
LOCK_FILE = "agent.lock"
MAX_BACKOFF = 60.0


def _on_disk(dest: Path) -> DestinationHealth:
    """A destination this process has not written yet (a restarted or one-shot agent): healthy when it holds
    certificates that have not expired."""
    from cryptography import x509

    try:
        cert = x509.load_pem_x509_certificate((dest / "tlscert").read_bytes())
    except (OSError, ValueError) as e:
        return DestinationHealth(path=str(dest), healthy=False, error=f"no certificates there ({e})"[:512])
    if cert.not_valid_after_utc <= datetime.now(UTC):
        return DestinationHealth(path=str(dest), healthy=False,
                                 error=f"its certificates expired at {codec.format_time(cert.not_valid_after_utc)}")
    return DestinationHealth(path=str(dest), healthy=True)


class AgentError(MachineIDError):
    """A failure that retrying will not fix."""


@dataclass
class Outcome:
    identity: Identity
    action: str  # "joined" or "renewed"


class BotAgent:
    def __init__(self, config: AgentConfig, stop: threading.Event | None = None) -> None:
        codec.validate(config)
        self.config = config
        self.stop_event = stop or threading.Event()
        self.storage = Path(config.storage.directory)
        self.destinations = [Path(d.directory) for d in config.destinations]
        self.identity: Identity | None = None
        self._pending_key: certs.PrivateKey | None = None
        self._lock_fd: int | None = None
        self._last_nodes: list[destination.NodeEntry] = []
        self._reported: set[str] = set()  # destination problems already reported this cycle
        self.diag: Diagnostics | None = None  # the diagnostics listener's state (--diag-listen), told of each cycle
        self._started = time.monotonic()
        # Each destination's health after the last cycle, reported with the next renewal (the bot instance record).
        self._health: dict[str, DestinationHealth] = {}

    def lock(self) -> None:
        """One agent per data dir: two would renew the same identity and lock the bot on the generation counter.
        Held until the process ends (the kernel drops it if the agent dies)."""
        import fcntl

        if self._lock_fd is not None:
            return
        storage.ensure_private_dir(self.storage, storage.NOTHING_SENT)
        try:
            fd = os.open(self.storage / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError as e:
            raise storage.unusable(self.storage, e, note=storage.NOTHING_SENT) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise PreconditionError(f"another agent is running with the data dir {self.storage}; stop it first (two "
                                    "agents on one identity would lock the bot)") from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    # ---------------------------------------------------------------- state
    def _load_state(self) -> Identity | None:
        """The stored renewable identity, expired or not (the cycle decides what an expired one means)."""
        path = self.storage / STATE_FILE
        if not path.exists():
            return None
        try:
            ident = Identity.load(path)
        except ValueError as e:
            log.warning("ignoring unreadable stored identity %s: %s", path, e)
            return None
        return ident if ident.info.renewable else None

    def _save_state(self, ident: Identity) -> None:
        storage.ensure_private_dir(self.storage)
        ident.save(self.storage / STATE_FILE)

    # ---------------------------------------------------------------- cluster calls
    def _ttl(self) -> timedelta:
        return timedelta(seconds=self.config.ttl_seconds)

    def _trusted_cas(self) -> list[str]:
        """First contact: take the server's CA only if it matches a configured pin; nothing is sent before."""
        presented = fetch_cluster_cas(self.config.auth_server)
        errors = []
        for pin in self.config.onboarding.ca_pins:
            try:
                return [check_pin(presented, pin)]
            except MachineIDError as e:
                errors.append(str(e))
        raise AgentError("; ".join(errors))

    def _check_destinations(self, dests: list[Path]) -> None:
        """Before anything goes to the cluster: a destination others can redirect or replace is refused (strict),
        reported (warn) or let be (off), per destination_checks. Each problem is reported once per cycle."""
        mode = self.config.destination_checks
        if mode == "off":
            return
        problems = [p for d in dests for p in destination.insecurities(d) if p not in self._reported]
        self._reported.update(problems)
        if not problems:
            return
        if mode == "warn":
            for problem in problems:
                log.warning("unsafe destination (--destination-checks=warn, going on): %s", problem)
            return
        raise ValidationError(f"unsafe destination (--destination-dir): {'; '.join(problems)}. Fix it, or pass "
                         "--destination-checks=warn (destination_checks: warn in the config) to go on anyway; "
                         "nothing was sent to the cluster (a join token is still valid)")

    def _check_dirs(self) -> None:
        """Before a join spends the single-use token: the data dir and every destination must be writable, or the
        certificates would have nowhere to go and the retry would find the token used."""
        created = [d for d in self.destinations if not d.exists()]
        for what, directory in (("data dir (--data-dir)", self.storage),
                                *(("destination (--destination-dir)", d) for d in self.destinations)):
            try:
                directory.mkdir(parents=True, exist_ok=True)
                probe = directory / f".machineid-probe-{os.getpid()}"
                probe.write_text("")
                probe.unlink()
            except OSError as e:
                raise storage.unusable(directory, e, what, storage.NOTHING_SENT) from None
        self._check_destinations(created)  # what the cycle checked before they existed (umask decided their modes)

    def join(self) -> Identity:
        method = self.config.onboarding.join_method
        if not self.config.onboarding.token and method != "iam":
            what = "join token" if method == "token" else f"{method} token's name"
            raise ValidationError(f"no identity to renew in {self.storage} and no {what}: pass --token (the token "
                                  "or a file holding it)")
        token = resolve_token(self.config.onboarding.token)
        cas = self.identity.tls_ca_certs if self.identity else self._trusted_cas()
        self._check_dirs()  # after the pin check (an impostor gets nothing, not even our directories)
        if method == "bound_keypair":
            from machineid.agent import keypair

            secret = resolve_token(self.config.onboarding.registration_secret, "--registration-secret")
            with JoinClient(self.config.auth_server, cas) as client:
                certify, joined = keypair.join(client, self.storage, token, secret, self._ttl())
            return identity_from_certs(certs.private_key_pem(certify), joined.certs)
        key = certs.new_key()
        public = certs.public_key_pem(key.public_key())
        with JoinClient(self.config.auth_server, cas) as client:
            if method in DELEGATED_METHODS:
                # A fresh ID token per join where the platform hands one out (GitHub), else the job's own.
                ob = self.config.onboarding
                source = id_tokens.IDTokenSource.from_environment(method, ob.audience, ob.id_token_file,
                                                                  ob.id_token_env, ob.kubernetes_token_path)
                id_token = id_tokens.fetch(source, ob.audience or client.ping().cluster_name)
                reply = client.register_using_oidc(token, id_token, public, self._ttl())
            elif method == "iam":
                reply = client.join_with_iam(token, public, self._ttl())
            else:
                reply = client.register_using_token(token, public, self._ttl())
        return identity_from_certs(certs.private_key_pem(key), reply.certs)

    def _renewal_key(self) -> certs.PrivateKey:
        # The new key is kept until a renewal succeeds, on disk before it is sent: if an answer is lost, the retry
        # (even by a restarted agent) sends the same key, which the cluster recognises as the same renewal rather
        # than a copied certificate.
        key = self._pending_key or self._load_pending_key()
        if key is None:
            key = certs.new_key()
            from machineid.api.identity import write_private

            write_private(self.storage / PENDING_KEY_FILE, certs.private_key_pem(key))
        self._pending_key = key
        return key

    def _renewed(self, key: certs.PrivateKey, reply: tpb.Certs) -> Identity:
        renewed = identity_from_certs(certs.private_key_pem(key), reply)
        self._save_state(renewed)  # before the pending key goes: there is always a key for the stored identity
        (self.storage / PENDING_KEY_FILE).unlink(missing_ok=True)
        self._pending_key = None
        return renewed

    def heartbeat(self) -> Heartbeat:
        """What this agent is and how its destinations fared, for the bot instance record (no secret in it)."""
        return Heartbeat(version=__version__, hostname=socket.gethostname()[:128], os=platform.system().lower(),
                         architecture=platform.machine(), uptime_seconds=int(time.monotonic() - self._started),
                         one_shot=bool(self.config.oneshot),
                         destinations=[self._health.get(str(d)) or _on_disk(d) for d in self.destinations])

    def renew(self, current: Identity) -> Identity:
        """The renewal alone (RenewCerts)."""
        key = self._renewal_key()
        with Client(self.config.auth_server, current) as client:
            reply = client.renew(certs.public_key_pem(key.public_key()), self._ttl(), self.heartbeat())
        return self._renewed(key, reply)

    def renew_cycle(self, current: Identity) -> tuple[Identity, Identity | None, list[destination.NodeEntry] | None]:
        """The renewal, the destinations' certificates and the nodes over one connection, in one call (AgentCycle):
        the cluster answers the last two as the renewed identity, never as the one just superseded. Returns the
        renewed identity, the output identity and the nodes; the last two are None when the server predates the
        call (the cycle then asks for them as before, each on a connection of its own)."""
        key = self._renewal_key()
        out_key = certs.new_key()
        public = certs.public_key_pem(key.public_key())
        with Client(self.config.auth_server, current) as client:
            answer = client.agent_cycle(public, self._ttl(), certs.public_key_pem(out_key.public_key()), self._ttl(),
                                        list_nodes=True, heartbeat=self.heartbeat())
            if answer is None:
                return self._renewed(key, client.renew(public, self._ttl(), self.heartbeat())), None, None
        renewed = self._renewed(key, answer.certs)
        if answer.output_certs is None:
            raise AgentError("the cluster answered the agent cycle without the output certificates")
        output = identity_from_certs(certs.private_key_pem(out_key), answer.output_certs)
        if answer.nodes_error:
            return renewed, output, self._listing_failed(answer.nodes_error)
        nodes = list(answer.nodes)
        if answer.next_page_token:  # more nodes than one answer carries: the rest as the output identity
            try:
                with Client(self.config.auth_server, output) as client:
                    nodes += client.list_as(Node, page_token=answer.next_page_token)
            except MachineIDError as e:
                return renewed, output, self._listing_failed(str(e))
        return renewed, output, self._node_entries(nodes)

    def _load_pending_key(self) -> certs.PrivateKey | None:
        path = self.storage / PENDING_KEY_FILE
        try:
            return certs.load_private_key(path.read_text())
        except (OSError, ValueError):
            return None

    def _output_identity(self, ident: Identity) -> Identity:
        """What the destinations get: never the renewable identity (whoever reads a destination could renew it and
        fork the bot), but separate certificates for a separate key that expire with the renewal interval's TTL.
        A non-renewable identity (an IAM join) is already that."""
        if not ident.info.renewable:
            return ident
        key = certs.new_key()
        with Client(self.config.auth_server, ident) as client:
            reply = client.issue_output_certs(certs.public_key_pem(key.public_key()), self._ttl())
        return identity_from_certs(certs.private_key_pem(key), reply)

    def _nodes(self, ident: Identity) -> list[destination.NodeEntry]:
        """The nodes for ssh_config. A failed listing must not keep fresh certificates from being written: the
        last listing (empty after a restart) stands in, with a warning."""
        try:
            with Client(self.config.auth_server, ident) as client:
                nodes = client.list_as(Node)
        except MachineIDError as e:
            return self._listing_failed(str(e))
        return self._node_entries(nodes)

    def _listing_failed(self, error: str) -> list[destination.NodeEntry]:
        log.warning("could not list the nodes for ssh_config (%s); writing the certificates with the %d nodes "
                    "of the last listing", error, len(self._last_nodes))
        return self._last_nodes

    def _node_entries(self, nodes: list[Node]) -> list[destination.NodeEntry]:
        out = []
        for n in nodes:
            host, _, port = n.spec.addr.rpartition(":")
            out.append(destination.NodeEntry(n.metadata.name, host.strip("[]"), int(port)))
        self._last_nodes = out
        return out

    # ---------------------------------------------------------------- one cycle
    def _expired_message(self, expired: datetime) -> str:
        if self.config.onboarding.join_method == "bound_keypair":
            return (f"the bot's identity expired at {codec.format_time(expired)} (the cluster was out of reach for "
                    "longer than certificate_ttl), so the agent joined again with its key pair (a recovery)")
        return (f"the bot's identity expired at {codec.format_time(expired)} (the cluster was out of reach for "
                "longer than certificate_ttl), so it cannot be renewed; onboard the bot again with a new join token "
                "(`machineid ctl tokens add --type=bot --bot-name=NAME`, or the provider's token_rotation) passed "
                "with --token")

    def cycle(self) -> Outcome:
        self.lock()
        self._reported.clear()
        self._check_destinations(self.destinations)
        expired: datetime | None = None
        current = self.identity or self._load_state()
        if current is not None and current.expires <= datetime.now(UTC):
            if current.info.renewable:
                # The join that follows needs a new token; if it fails, the error says why it was needed.
                log.info("the identity expired at %s; joining again", codec.format_time(current.expires))
                expired = current.expires
            current = None
        if current is not None and not current.info.renewable:
            current = None  # IAM identities are not renewable: the agent proves its AWS identity again
        output: Identity | None = None
        nodes: list[destination.NodeEntry] | None = None
        if current is not None:
            try:
                (ident, output, nodes), action = self.renew_cycle(current), "renewed"
            except TransportError:
                raise
            except MachineIDError as e:
                raise AgentError(f"renewal refused: {e}") from None
        else:
            try:
                ident, action = self.join(), "joined"
                (self.storage / PENDING_KEY_FILE).unlink(missing_ok=True)  # a new identity: no renewal in flight
            except TransportError:
                raise
            except MachineIDError as e:
                if expired is not None:
                    raise AgentError(f"{self._expired_message(expired)}; joining again failed: {e}") from None
                if type(e) is ValidationError:
                    raise  # a bad flag or config (exit 3), said as such: the cluster did not refuse anything
                raise AgentError(f"join refused: {e}") from None
        if ident.info.renewable:
            self._save_state(ident)
        self.identity = ident
        if output is None:  # a join (or a server without AgentCycle): one connection for each
            output = self._output_identity(ident)
        if nodes is None:
            nodes = self._nodes(output)
        for dest in self.destinations:
            try:
                destination.write(dest, output, nodes)
            except Exception as e:
                self._health[str(dest)] = DestinationHealth(path=str(dest), healthy=False, error=str(e)[:512])
                raise
            self._health[str(dest)] = DestinationHealth(path=str(dest), healthy=True)
        info = ident.info
        log.info("%s: bot %s generation %d, certificates valid until %s, written to %s (%d nodes in ssh_config)",
                 action, info.bot_name, info.generation, codec.format_time(ident.expires),
                 ", ".join(str(d) for d in self.destinations), len(nodes))
        return Outcome(ident, action)

    def _next_renewal(self, ident: Identity, interval: float) -> float:
        """The configured interval, but never more than a third of what the cluster granted: a role's
        max_session_ttl can cut the lifetime below certificate_ttl, and renewing on the requested schedule would
        let the certificates lapse."""
        granted = (ident.expires - datetime.now(UTC)).total_seconds()
        if granted < self.config.ttl_seconds * 0.9:
            log.warning("the cluster granted certificates for %ds, less than the requested certificate_ttl %s (a "
                        "role's max_session_ttl caps it); renewing every %ds", granted, self.config.certificate_ttl,
                        min(interval, granted / 3))
        return max(1.0, min(interval, granted / 3))

    # ---------------------------------------------------------------- loops
    def oneshot(self) -> Outcome:
        return self.cycle()

    def run(self) -> None:
        """Renew every renewal_interval until stopped; back off while the cluster is unreachable."""
        interval = self.config.interval_seconds
        backoff = 1.0
        while not self.stop_event.is_set():
            started = time.monotonic()
            try:
                outcome = self.cycle()
                if self.diag is not None:
                    self.diag.cycle_ok(outcome.identity, time.monotonic() - started, self.heartbeat().destinations)
                backoff = 1.0
                wait = self._next_renewal(outcome.identity, interval)
                log.info("next renewal at %s", codec.format_time(datetime.now(UTC) + timedelta(seconds=wait)))
            except TransportError as e:
                if self.diag is not None:
                    self.diag.cycle_failed(e, time.monotonic() - started)
                expires = self.identity.expires if self.identity else None
                if expires is not None and expires <= datetime.now(UTC) and self.identity is not None \
                        and self.identity.info.renewable and self.config.onboarding.join_method == "token":
                    # Renewing needs the current certificate: once it has expired, no retry can succeed (a bound
                    # key pair can still join again: it retries).
                    raise AgentError(self._expired_message(expires)) from None
                wait = min(backoff, MAX_BACKOFF, interval) * (0.8 + 0.4 * random.random())
                backoff = min(backoff * 2, MAX_BACKOFF)
                left = f"; current certificates valid until {codec.format_time(expires)}" if expires else ""
                log.warning("cannot reach the cluster (%s); retrying in %.1fs%s", e, wait, left)
            except MachineIDError as e:
                if self.diag is not None:
                    self.diag.cycle_failed(e, time.monotonic() - started, final=True)
                raise
            self.stop_event.wait(wait)
        log.info("stopped")
