"""Certificate issuance: the server over gRPC against the raw `cryptography` signing it is built on.

One run measures, R rounds back to back (raw, then server, in each round):

1. raw: a single-threaded loop of the signing work the server does per issuance, through the project's own
   `Authority.sign_ssh_user` + `Authority.sign_tls_client` (thin wrappers over `cryptography`): one OpenSSH user
   certificate signed by an Ed25519 CA over an ECDSA P-256 subject key, with the principals, key id and extensions a
   bot gets, plus one X.509 client certificate signed by an ECDSA P-256 CA carrying the bot's identity extension.
2. server: a real `machineid server start` process; N client threads doing token joins
   (`JoinClient.register_using_token`, one fresh bot + token each, created by the admin beforehand) and then
   renewals (`Client.renew` with the current identity, carrying the new identity forward: each renewal bumps the
   bot's generation, so every renewal opens a new mutual-TLS channel with the certificate it just got).

Every join and every renewal is one issuance (one SSH + one X.509 certificate), so the ratio
server issuances/s / raw signings/s says how much of the signing capacity the server delivers end to end.
Client keys are generated before the timed sections. The client threads, the server and (at other times) the raw
loop share the machine's cores: on a small machine the ratio includes the client's own TLS and gRPC cost.

    ~/.cache/machineid/venv/bin/python benchmarks/bench_issuance.py [--clients N] [--seconds S] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from machineid.api import certs
from machineid.api.client import Client, JoinClient, identity_from_certs
from machineid.api.identity import Identity
from machineid.cluster.authority import Authority
from machineid.model.resources import Bot, BotSpec, Metadata

MACHINEID = str(Path(sys.executable).parent / "machineid")
BOT_ROLES = ["access"]
BOT_TRAITS = {"logins": ["root", "ubuntu"]}
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


# ---------------------------------------------------------------------------------------------------------- raw


@dataclass(frozen=True)
class IssuanceShape:
    """What one issuance signs, copied from a certificate the server really issued."""

    key_id: str
    principals: list[str]
    ident: certs.CertIdentity
    ttl: timedelta


def shape_from(ident: Identity) -> IssuanceShape:
    ssh = serialization.load_ssh_public_identity(ident.ssh_cert.encode())
    assert isinstance(ssh, serialization.SSHCertificate)
    ssh_ext = sorted(ssh.extensions)
    assert ssh_ext == sorted(
        [b"permit-X11-forwarding", b"permit-agent-forwarding", b"permit-port-forwarding", b"permit-pty",
         b"permit-user-rc"]), ssh_ext
    cert = ident.cert
    return IssuanceShape(
        key_id=ssh.key_id.decode(),
        principals=[p.decode() for p in ssh.valid_principals],
        ident=certs.CertIdentity.from_cert(cert),
        ttl=cert.not_valid_after_utc - cert.not_valid_before_utc - timedelta(minutes=1),
    )


def bench_authority(cluster_name: str) -> Authority:
    """Fresh CAs of the server's key types (Ed25519 SSH CAs, ECDSA P-256 X.509 CA)."""
    tls_key, tls_cert = certs.new_tls_ca(cluster_name)
    return Authority(cluster_name, ed25519.Ed25519PrivateKey.generate(), ed25519.Ed25519PrivateKey.generate(),
                     tls_key, tls_cert)


def run_raw(authority: Authority, shape: IssuanceShape, keys: list[KeyPair], seconds: float) -> tuple[int, float]:
    """Single thread: sign one SSH user certificate + one X.509 client certificate per iteration."""
    publics = [k.public_key for k in keys]
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    now = start
    while now < deadline:
        public_key = publics[count % len(publics)]
        not_before = certs.now() - timedelta(minutes=1)
        not_after = certs.now() + shape.ttl
        authority.sign_ssh_user(public_key, shape.key_id, shape.principals, not_before, not_after)
        authority.sign_tls_client(public_key, shape.ident, not_after)
        count += 1
        now = time.perf_counter()
    return count, now - start


# ---------------------------------------------------------------------------------------------------------- server


@dataclass
class ServerProc:
    data_dir: Path
    cluster_name: str
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""
    log_path: Path = field(default_factory=Path)

    def start(self) -> None:
        self.log_path = self.data_dir.parent / "server.log"
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [MACHINEID, "server", "start", "--data-dir", str(self.data_dir), "--listen", "127.0.0.1:0",
                 "--cluster-name", self.cluster_name],
                stdout=log, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        server_json = self.data_dir / "server.json"
        while time.monotonic() < deadline:
            if server_json.exists():
                try:
                    self.address = json.loads(server_json.read_text())["address"]
                    return
                except (ValueError, KeyError):
                    pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log_path.read_text()}")
            time.sleep(0.05)
        raise RuntimeError(f"server did not start:\n{self.log_path.read_text()}")

    def admin(self) -> Client:
        return Client(self.address, Identity.load(self.data_dir / "admin.identity"))

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process so far (Linux /proc)."""
        assert self.proc is not None
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


class Cluster:
    """The admin side: bots and join tokens, created outside the timed sections."""

    def __init__(self, server: ServerProc, clients: int) -> None:
        self.server = server
        self.clients = clients
        with server.admin() as admin:
            self.ca_certs = list(admin.identity.tls_ca_certs)
        self._seq = 0
        self._lock = threading.Lock()

    def _name(self, prefix: str) -> str:
        with self._lock:
            self._seq += 1
            return f"{prefix}-{self._seq}"

    def new_tokens(self, count: int, prefix: str) -> list[str]:
        """count fresh bots, each with its own single-use join token (create_bot), from `clients` admin threads."""

        def work(n: int) -> list[str]:
            out = []
            with self.server.admin() as admin:
                for _ in range(n):
                    bot = Bot(metadata=Metadata(name=self._name(prefix)),
                              spec=BotSpec(roles=list(BOT_ROLES), traits={k: list(v) for k, v in BOT_TRAITS.items()}))
                    out.append(admin.create_bot(bot).token)
            return out

        shares = [count // self.clients + (1 if i < count % self.clients else 0) for i in range(self.clients)]
        with ThreadPoolExecutor(self.clients) as pool:
            return [t for chunk in pool.map(work, shares) for t in chunk]

    def join(self, token: str, key: KeyPair) -> Identity:
        with JoinClient(self.server.address, self.ca_certs) as jc:
            reply = jc.register_using_token(token, key.public_pem)
        return identity_from_certs(key.key_pem, reply.certs)


@dataclass
class PhaseResult:
    count: int
    seconds: float
    server_cpu: float
    errors: list[str]

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0


def run_threads(server: ServerProc, clients: int, seconds: float,
                worker: Callable[[int, float, list[int], list[str]], None]) -> PhaseResult:
    """Start `clients` threads together; each calls worker(index, deadline, counts, errors) and counts its work."""
    counts = [0] * clients
    errors: list[str] = []
    barrier = threading.Barrier(clients + 1)
    box: dict[str, float] = {}

    def run(i: int) -> None:
        barrier.wait()
        try:
            worker(i, box["deadline"], counts, errors)
        except Exception as e:  # a failed client stops; the phase reports it
            errors.append(f"client {i}: {type(e).__name__}: {e}")

    threads = [threading.Thread(target=run, args=(i,), name=f"client-{i}") for i in range(clients)]
    for t in threads:
        t.start()
    cpu0 = server.cpu_seconds()
    start = time.perf_counter()
    box["deadline"] = start + seconds
    barrier.wait()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return PhaseResult(sum(counts), elapsed, server.cpu_seconds() - cpu0, errors)


def run_joins(cluster: Cluster, tokens: list[str], keys: list[list[KeyPair]], seconds: float) -> PhaseResult:
    """Each thread keeps one unauthenticated channel and joins with fresh tokens from a shared pool."""
    pool = deque(tokens)

    def worker(i: int, deadline: float, counts: list[int], errors: list[str]) -> None:
        mine = keys[i]
        with JoinClient(cluster.server.address, cluster.ca_certs) as jc:
            n = 0
            while time.perf_counter() < deadline:
                try:
                    token = pool.popleft()
                except IndexError:
                    return
                jc.register_using_token(token, mine[n % len(mine)].public_pem)
                n += 1
                counts[i] = n

    return run_threads(cluster.server, len(keys), seconds, worker)


def run_renewals(cluster: Cluster, identities: list[Identity], keys: list[list[KeyPair]],
                 seconds: float) -> PhaseResult:
    """Each thread renews its bot's identity in a loop: a new mutual-TLS channel per renewal (new certificate)."""

    def worker(i: int, deadline: float, counts: list[int], errors: list[str]) -> None:
        mine = keys[i]
        n = 0
        while time.perf_counter() < deadline:
            key = mine[n % len(mine)]
            with Client(cluster.server.address, identities[i]) as client:
                reply = client.renew(key.public_pem)
            identities[i] = identity_from_certs(key.key_pem, reply)
            n += 1
            counts[i] = n

    return run_threads(cluster.server, len(identities), seconds, worker)


# ---------------------------------------------------------------------------------------------------------- main


@dataclass
class Round:
    raw_rate: float
    joins: PhaseResult
    renewals: PhaseResult

    @property
    def server_rate(self) -> float:
        total = self.joins.seconds + self.renewals.seconds
        return (self.joins.count + self.renewals.count) / total if total > 0 else 0.0

    @property
    def ratio(self) -> float:
        return self.server_rate / self.raw_rate if self.raw_rate else 0.0


def pct_cpu(p: PhaseResult) -> str:
    return f"server CPU {100 * p.server_cpu / p.seconds:4.0f}%" if p.seconds else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="length of each timed phase: raw, joins, renewals (default 4)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the ratio is their median (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir and server log")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.rounds < 1 or args.seconds <= 0:
        parser.error("--clients and --rounds must be >= 1 and --seconds > 0")

    t0 = time.perf_counter()
    cluster_name = "bench.example"
    print(f"machineid issuance benchmark: {args.clients} client threads, {args.seconds:g}s phases, "
          f"{args.rounds} rounds, {os.cpu_count()} CPUs", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="machineid-bench-"))
    server = ServerProc(tmp / "data", cluster_name)
    server.start()
    try:
        # Keys first (untimed): per client thread, a pool cycled by joins and renewals; the raw loop cycles all.
        keys = [make_keys(64) for _ in range(args.clients)]
        all_keys = [k for ks in keys for k in ks]
        cluster = Cluster(server, args.clients)

        # Renewing bots, one per client thread, joined once.
        renew_ids = [cluster.join(tok, keys[i][0]) for i, tok in enumerate(cluster.new_tokens(args.clients, "renew"))]
        shape = shape_from(renew_ids[0])
        authority = bench_authority(cluster_name)
        print(f"issuance shape: SSH user cert (Ed25519 CA, ECDSA P-256 key, {len(shape.principals)} principals "
              f"{shape.principals}, 5 extensions) + X.509 client cert (ECDSA P-256 CA, identity extension "
              f"{len(shape.ident.to_json())} bytes)", flush=True)
        print("raw = single-threaded loop over machineid.cluster.authority.Authority.sign_ssh_user + "
              "sign_tls_client (the server's own signing code, on `cryptography`), pre-parsed public keys",
              flush=True)

        # Warm-up (untimed): connections, imports, SQLite pages; and an estimate of the join rate.
        warm = max(1.0, args.seconds / 4)
        run_raw(authority, shape, all_keys, warm / 2)
        warm_joins = run_joins(cluster, cluster.new_tokens(4 * args.clients, "warm"), keys, warm)
        run_renewals(cluster, renew_ids, keys, warm / 2)
        join_rate = max(warm_joins.rate, 10.0)

        rounds: list[Round] = []
        for r in range(1, args.rounds + 1):
            # Untimed: a pool of fresh bots+tokens large enough for the join phase (it also ends if the pool does).
            t_setup = time.perf_counter()
            tokens = cluster.new_tokens(int(join_rate * args.seconds * 1.4) + args.clients, f"r{r}")
            setup_s = time.perf_counter() - t_setup

            count, elapsed = run_raw(authority, shape, all_keys, args.seconds)
            raw_rate = count / elapsed
            joins = run_joins(cluster, tokens, keys, args.seconds)
            renewals = run_renewals(cluster, renew_ids, keys, args.seconds)
            rnd = Round(raw_rate, joins, renewals)
            rounds.append(rnd)
            join_rate = max(joins.rate, 10.0)
            pool_note = " (token pool ran out)" if joins.seconds < args.seconds * 0.95 else ""
            print(f"round {r}: raw {raw_rate:7.1f}/s ({count} in {elapsed:.2f}s) | "
                  f"joins {joins.rate:6.1f}/s ({joins.count} in {joins.seconds:.2f}s{pool_note}, {pct_cpu(joins)}) | "
                  f"renewals {renewals.rate:6.1f}/s ({renewals.count} in {renewals.seconds:.2f}s, "
                  f"{pct_cpu(renewals)}) | server {rnd.server_rate:6.1f}/s | ratio {rnd.ratio:.2f} "
                  f"[setup {len(tokens)} bots {setup_s:.1f}s]", flush=True)
            for err in joins.errors + renewals.errors:
                print(f"  error: {err}", flush=True)

        def med(f: Callable[[Round], float]) -> float:
            return statistics.median(f(x) for x in rounds)

        ratio = med(lambda x: x.ratio)
        n = len(rounds)
        print()
        print(f"raw signing      (median of {n}): {med(lambda x: x.raw_rate):7.1f} issuances/s (SSH + X.509 each)")
        print(f"server joins     (median of {n}): {med(lambda x: x.joins.rate):7.1f} /s")
        print(f"server renewals  (median of {n}): {med(lambda x: x.renewals.rate):7.1f} /s")
        print(f"server combined  (median of {n}): {med(lambda x: x.server_rate):7.1f} issuances/s")
        print(f"total runtime {time.perf_counter() - t0:.0f}s; server log {server.log_path}")
        verdict = "PASS" if ratio >= TARGET else "FAIL"
        print(f"ratio (median of {n}): {ratio:.2f}  target >= {TARGET}  {verdict}")
        return 0 if not any(x.joins.errors or x.renewals.errors for x in rounds) else 1
    finally:
        server.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
