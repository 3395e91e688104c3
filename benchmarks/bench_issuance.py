"""Certificate issuance: the server over gRPC against the raw `cryptography` signing it is built on.

One run measures R rounds; each round measures raw signing and then the server, back to back:

1. raw: a single-threaded loop over the server's own signing code, `Authority.sign_ssh_user` +
   `Authority.sign_tls_client` (thin wrappers over `cryptography`): one OpenSSH user certificate signed by an
   Ed25519 CA over an ECDSA P-256 subject key, with the principals, key id and extensions a bot gets (5 permit-*
   and node-access), plus one X.509 client certificate signed by an ECDSA P-256 CA with the extensions of
   `x509_issuance.issue_client_cert` (the bot's identity extension included). The shape is copied from a certificate the
   server really issued.
2. server: a real `machineid server start` process; N client threads doing token joins
   (`JoinClient.register_using_token`, each with a fresh bot + single-use token the admin created beforehand, one
   persistent join channel per thread), then renewals (`Client.renew` with the current identity, carrying the new
   identity forward: each renewal bumps the bot's generation, so every renewal opens a new mutual-TLS channel with
   the certificate it got last).

A join and a renewal are one issuance each (one SSH + one X.509 certificate), so
ratio = server issuances/s / raw signings/s is the share of the signing capacity the server delivers end to end.
Client keys, bots and tokens are made before the timed sections. The server, the client threads and (never at the
same time) the raw loop share the machine's cores, so the server figures include the client's own TLS and gRPC cost.

    "$(scripts/setup)/python" benchmarks/bench_issuance.py [--clients N] [--seconds S] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from machineid.api import certs
from machineid.api.client import Client, JoinClient, identity_from_certs
from machineid.api.identity import Identity
from machineid.cluster import x509_issuance
from machineid.cluster.authority import SSH_USER_EXTENSIONS, Authority
from machineid.cluster.process import ServerProcess
from machineid.model.resources import Bot, BotSpec, Metadata

CLUSTER_NAME = "bench.example"
BOT_ROLES = ["access"]
BOT_TRAITS = {"logins": ["root", "ubuntu"]}  # the access role turns these into the SSH principals
KEYS_PER_CLIENT = 64
TARGET = 0.5


@dataclass(frozen=True)
class KeyPair:
    key_pem: str
    public_pem: str
    public_key: ec.EllipticCurvePublicKey


def make_keys(count: int) -> list[KeyPair]:
    out = []
    for _ in range(count):
        key = certs.new_key()
        out.append(KeyPair(certs.private_key_pem(key), certs.public_key_pem(key.public_key()), key.public_key()))
    return out


def process_cpu() -> float:
    """User + system CPU seconds of this (the client) process so far."""
    t = os.times()
    return t.user + t.system


# ------------------------------------------------------------------------------------------------------------ raw


@dataclass(frozen=True)
class IssuanceShape:
    """What one issuance signs, copied from a certificate the server really issued."""

    key_id: str
    principals: list[str]
    extensions: dict[str, bytes]  # besides the permit-* ones: node-access@machineid, from the bot's roles
    ident: certs.CertIdentity
    ttl: timedelta


def shape_from(identity: Identity) -> IssuanceShape:
    ssh = serialization.load_ssh_public_identity(identity.ssh_cert.encode())
    assert isinstance(ssh, serialization.SSHCertificate)
    assert set(SSH_USER_EXTENSIONS) <= set(ssh.extensions), ssh.extensions
    cert = identity.cert
    return IssuanceShape(
        key_id=ssh.key_id.decode(),
        principals=[p.decode() for p in ssh.valid_principals],
        extensions={k.decode(): v for k, v in ssh.extensions.items() if k not in SSH_USER_EXTENSIONS},
        ident=certs.CertIdentity.from_cert(cert),
        ttl=cert.not_valid_after_utc - cert.not_valid_before_utc - timedelta(minutes=1),
    )


def bench_authority() -> Authority:
    """Fresh CAs of the server's key types: Ed25519 SSH CAs, ECDSA P-256 X.509 CA."""
    tls_key, tls_cert = x509_issuance.new_tls_ca(CLUSTER_NAME)
    return Authority(CLUSTER_NAME, ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate(),
                     tls_key, tls_cert)


def run_raw(authority: Authority, shape: IssuanceShape, keys: list[KeyPair], seconds: float) -> tuple[int, float]:
    """One thread: sign one SSH user certificate + one X.509 client certificate per iteration (= one issuance)."""
    publics = [k.public_key for k in keys]
    count = 0
    start = now = time.perf_counter()
    deadline = start + seconds
    while now < deadline:
        public_key = publics[count % len(publics)]
        not_before = x509_issuance.now() - timedelta(minutes=1)
        not_after = x509_issuance.now() + shape.ttl
        authority.sign_ssh_user(public_key, shape.key_id, shape.principals, not_before, not_after, shape.extensions)
        authority.sign_tls_client(public_key, shape.ident, not_after)
        count += 1
        now = time.perf_counter()
    return count, now - start


# --------------------------------------------------------------------------------------------------------- server


class ServerProc(ServerProcess):
    """`machineid server start` on a random loopback port (one worker process unless told: the figures here are
    one core's), with its CPU time."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.workers = self.workers or 1

    def pids(self) -> list[int]:
        """The server's process and its worker processes (as it announced them in server.json)."""
        assert self.proc is not None
        try:
            workers = json.loads((self.data_dir / "server.json").read_text()).get("worker_pids", [])
        except (OSError, ValueError):
            workers = []
        return [self.proc.pid, *(int(p) for p in workers)]

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the server's processes so far (Linux /proc; NaN elsewhere)."""
        total = 0.0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                return float("nan")
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total


class Admin:
    """The admin side: bots and their join tokens, made outside the timed sections."""

    def __init__(self, server: ServerProc, threads: int) -> None:
        self.server = server
        self.threads = threads
        with server.admin() as admin:
            self.ca_certs = list(admin.identity.tls_ca_certs)
        self._seq = 0
        self._lock = threading.Lock()

    def _name(self, prefix: str) -> str:
        with self._lock:
            self._seq += 1
            return f"{prefix}-{self._seq}"

    def new_tokens(self, count: int, prefix: str) -> list[str]:
        """count new bots, each with the single-use join token create_bot returns (from several admin threads)."""

        def work(n: int) -> list[str]:
            out = []
            with self.server.admin() as admin:
                for _ in range(n):
                    bot = Bot(metadata=Metadata(name=self._name(prefix)),
                              spec=BotSpec(roles=list(BOT_ROLES), traits={k: list(v) for k, v in BOT_TRAITS.items()}))
                    out.append(admin.create_bot(bot).token)
            return out

        shares = [count // self.threads + (1 if i < count % self.threads else 0) for i in range(self.threads)]
        with ThreadPoolExecutor(self.threads) as pool:
            return [token for chunk in pool.map(work, shares) for token in chunk]

    def join(self, token: str, key: KeyPair) -> Identity:
        with JoinClient(self.server.address, self.ca_certs) as jc:
            reply = jc.register_using_token(token, key.public_pem)
        return identity_from_certs(key.key_pem, reply.certs)


@dataclass
class Phase:
    count: int
    seconds: float
    server_cpu: float
    client_cpu: float
    errors: list[str]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def cpu_note(self) -> str:
        if not self.seconds:
            return ""
        return (f"CPU server {100 * self.server_cpu / self.seconds:.0f}% "
                f"client {100 * self.client_cpu / self.seconds:.0f}%")


Worker = Callable[[int, float, list[int]], None]


def run_threads(server: ServerProc, threads: int, seconds: float, worker: Worker) -> Phase:
    """Start `threads` client threads together; each runs worker(index, deadline, counts) and counts its work."""
    counts = [0] * threads
    errors: list[str] = []
    barrier = threading.Barrier(threads + 1)
    deadline: list[float] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            worker(i, deadline[0], counts)
        except Exception as e:  # a failed client stops; the phase reports it
            errors.append(f"client {i}: {type(e).__name__}: {e}")

    pool = [threading.Thread(target=run, args=(i,), name=f"client-{i}") for i in range(threads)]
    for t in pool:
        t.start()
    server0, client0 = server.cpu_seconds(), process_cpu()
    start = time.perf_counter()
    deadline.append(start + seconds)
    barrier.wait()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - start
    return Phase(sum(counts), elapsed, server.cpu_seconds() - server0, process_cpu() - client0, errors)


def count_until(i: int, deadline: float, counts: list[int], step: Callable[[int], bool]) -> None:
    """Calls step(n) for n = 0, 1, ... until the deadline or until it returns False; counts[i] = calls done."""
    n = 0
    while time.perf_counter() < deadline and step(n):
        n += 1
        counts[i] = n


def run_joins(admin: Admin, tokens: list[str], keys: list[list[KeyPair]], seconds: float) -> Phase:
    """Joins until the deadline or until the shared token pool is empty; one join channel per thread."""
    pool = deque(tokens)

    def worker(i: int, deadline: float, counts: list[int]) -> None:
        mine = keys[i]
        with JoinClient(admin.server.address, admin.ca_certs) as jc:
            def join(n: int) -> bool:
                try:
                    token = pool.popleft()
                except IndexError:
                    return False
                jc.register_using_token(token, mine[n % len(mine)].public_pem)
                return True

            count_until(i, deadline, counts, join)

    return run_threads(admin.server, len(keys), seconds, worker)


def run_renewals(admin: Admin, identities: list[Identity], keys: list[list[KeyPair]], seconds: float) -> Phase:
    """Each thread renews its own bot in a loop, always with the identity the previous renewal returned."""

    def worker(i: int, deadline: float, counts: list[int]) -> None:
        mine = keys[i]

        def renew(n: int) -> bool:
            key = mine[(n + 1) % len(mine)]
            with Client(admin.server.address, identities[i]) as client:
                reply = client.renew(key.public_pem)
            identities[i] = identity_from_certs(key.key_pem, reply)
            return True

        count_until(i, deadline, counts, renew)

    return run_threads(admin.server, len(identities), seconds, worker)


def run_floor(admin: Admin, threads: int, seconds: float) -> tuple[Phase, Phase]:
    """The transport alone: empty Ping calls over one persistent join channel per thread (what a join rides on),
    then over a new mutual-TLS channel per call (what a renewal rides on)."""
    ident = Identity.load(admin.server.admin_identity_path)

    def persistent(i: int, deadline: float, counts: list[int]) -> None:
        with JoinClient(admin.server.address, admin.ca_certs) as jc:
            def ping(n: int) -> bool:
                jc.ping()
                return True

            count_until(i, deadline, counts, ping)

    def new_mtls(i: int, deadline: float, counts: list[int]) -> None:
        def ping(n: int) -> bool:
            with Client(admin.server.address, ident) as client:
                client.ping()
            return True

        count_until(i, deadline, counts, ping)

    return (run_threads(admin.server, threads, seconds, persistent),
            run_threads(admin.server, threads, seconds, new_mtls))


def ceiling(floor: Phase, raw_ms: float, cores: int) -> float:
    """Issuances/s if the server did nothing but the transport and the signing, using every core fully."""
    per_call_ms = ms_per(floor.server_cpu + floor.client_cpu, floor.count) + raw_ms
    return 1000 * cores / per_call_ms


# ----------------------------------------------------------------------------------------------------------- main


@dataclass
class Round:
    raw_count: int
    raw_seconds: float
    joins: Phase
    renewals: Phase

    @property
    def raw_rate(self) -> float:
        return self.raw_count / self.raw_seconds

    @property
    def server_rate(self) -> float:
        """Issuances (joins + renewals) over the time of both phases."""
        seconds = self.joins.seconds + self.renewals.seconds
        return (self.joins.count + self.renewals.count) / seconds if seconds > 0 else 0.0

    @property
    def ratio(self) -> float:
        return self.server_rate / self.raw_rate if self.raw_rate else 0.0


def ms_per(cpu: float, count: int) -> float:
    return 1000 * cpu / count if count else float("nan")


def report(rounds: list[Round], footer: str) -> float:
    def med(f: Callable[[Round], float]) -> float:
        return statistics.median(f(r) for r in rounds)

    n = len(rounds)
    raw_ms = med(lambda r: 1000 / r.raw_rate)
    print()
    print(f"medians of {n} rounds:")
    print(f"  raw signing       {med(lambda r: r.raw_rate):8.1f} issuances/s  ({raw_ms:.2f} ms CPU each, 1 thread)")
    print(f"  server joins      {med(lambda r: r.joins.rate):8.1f} /s  (server CPU "
          f"{med(lambda r: ms_per(r.joins.server_cpu, r.joins.count)):.2f} ms, client CPU "
          f"{med(lambda r: ms_per(r.joins.client_cpu, r.joins.count)):.2f} ms per join)")
    print(f"  server renewals   {med(lambda r: r.renewals.rate):8.1f} /s  (server CPU "
          f"{med(lambda r: ms_per(r.renewals.server_cpu, r.renewals.count)):.2f} ms, client CPU "
          f"{med(lambda r: ms_per(r.renewals.client_cpu, r.renewals.count)):.2f} ms per renewal)")
    print(f"  server combined   {med(lambda r: r.server_rate):8.1f} issuances/s")
    ratio = med(lambda r: r.ratio)
    print(footer)
    print(f"ratio (median of {n}): {ratio:.2f}  target >= {TARGET}  {'PASS' if ratio >= TARGET else 'FAIL'}")
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Certificate issuance: server over gRPC vs raw signing.")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="length of each timed phase: raw, joins, renewals (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the ratio is their median (default 3)")
    parser.add_argument("--check", action="store_true", help=f"exit 3 when the ratio is below {TARGET}")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir and the server log")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1 or args.seconds <= 0:
        parser.error("--clients and --rounds must be >= 1 and --seconds > 0")

    t0 = time.perf_counter()
    print(f"machineid issuance benchmark: {args.clients} client threads, {args.seconds:g}s phases, {args.rounds} "
          f"rounds, {os.cpu_count()} CPUs shared by server and clients (raw loop runs alone)", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="machineid-bench-"))
    server = ServerProc(tmp / "data", CLUSTER_NAME, log_path=tmp / "server.log")
    server.start()
    try:
        keys = [make_keys(KEYS_PER_CLIENT) for _ in range(args.clients)]  # cycled by joins, renewals and raw
        all_keys = [k for per_client in keys for k in per_client]
        admin = Admin(server, args.clients)
        renewing = [admin.join(token, keys[i][0]) for i, token in enumerate(admin.new_tokens(args.clients, "renew"))]
        shape = shape_from(renewing[0])
        authority = bench_authority()
        print(f"issuance = SSH user cert (Ed25519 CA, ECDSA P-256 key, principals {shape.principals}, "
              f"{len(SSH_USER_EXTENSIONS) + len(shape.extensions)} extensions) + X.509 client cert (ECDSA P-256 CA, "
              f"{len(shape.ident.to_json())}-byte identity extension)")
        print("raw = one thread calling machineid.cluster.authority.Authority.sign_ssh_user + sign_tls_client "
              "(the server's signing code on `cryptography`), public keys parsed beforehand")
        print("joins: fresh bot + token each, one join channel per client thread; renewals: one bot per client "
              "thread, a new mTLS channel per renewal (its certificate changes every time)", flush=True)

        # Warm-up, untimed: connections, SQLite pages, code paths; it also estimates the join rate.
        warm = max(1.0, args.seconds / 4)
        run_raw(authority, shape, all_keys, warm / 2)
        join_rate = run_joins(admin, admin.new_tokens(8 * args.clients, "warm"), keys, warm).rate
        run_renewals(admin, renewing, keys, warm / 2)

        rounds: list[Round] = []
        failed = False
        for r in range(1, args.rounds + 1):
            setup = time.perf_counter()
            tokens = admin.new_tokens(int(max(join_rate, 20.0) * args.seconds * 1.6) + args.clients, f"r{r}")
            setup = time.perf_counter() - setup

            raw_count, raw_seconds = run_raw(authority, shape, all_keys, args.seconds)
            joins = run_joins(admin, tokens, keys, args.seconds)
            renewals = run_renewals(admin, renewing, keys, args.seconds)
            rnd = Round(raw_count, raw_seconds, joins, renewals)
            rounds.append(rnd)
            join_rate = joins.rate
            ran_out = " (token pool ran out)" if joins.seconds < 0.95 * args.seconds else ""
            print(f"round {r}: raw {rnd.raw_rate:6.0f}/s | joins {joins.rate:5.0f}/s{ran_out} ({joins.cpu_note()}) "
                  f"| renewals {renewals.rate:5.0f}/s ({renewals.cpu_note()}) | server {rnd.server_rate:5.0f}/s "
                  f"| ratio {rnd.ratio:.2f}   [made {len(tokens)} bots in {setup:.1f}s, untimed]", flush=True)
            for err in joins.errors + renewals.errors:
                failed = True
                print(f"  error: {err}", flush=True)
            if joins.count == 0 or renewals.count == 0:
                failed = True
                break

        # The ceiling this transport allows on this machine: measured once, after the rounds.
        ping, ping_new = run_floor(admin, args.clients, max(1.0, args.seconds / 2))
        raw_rate = statistics.median(r.raw_rate for r in rounds)
        cores = os.cpu_count() or 1
        join_max, renew_max = ceiling(ping, 1000 / raw_rate, cores), ceiling(ping_new, 1000 / raw_rate, cores)
        print(f"transport floor: empty Ping {ping.rate:.0f}/s on persistent channels (server "
              f"{ms_per(ping.server_cpu, ping.count):.2f} ms, client {ms_per(ping.client_cpu, ping.count):.2f} ms "
              f"CPU per call); {ping_new.rate:.0f}/s with a new mTLS channel per call (server "
              f"{ms_per(ping_new.server_cpu, ping_new.count):.2f} ms, client "
              f"{ms_per(ping_new.client_cpu, ping_new.count):.2f} ms)")
        print(f"ceiling: a server doing only transport + signing on all {cores} cores would reach joins "
              f"{join_max:.0f}/s, renewals {renew_max:.0f}/s, ratio {(join_max + renew_max) / 2 / raw_rate:.2f}")
        kept = f"; data dir and server log kept in {tmp}" if args.keep else ""
        ratio = report(rounds, f"(total runtime {time.perf_counter() - t0:.0f}s{kept})")
        if failed:
            return 1
        return 3 if args.check and ratio < TARGET else 0
    finally:
        if server.proc is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
