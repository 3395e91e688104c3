"""A fleet against one server: CPU per join and renewal, a soak at a 100,000-bot renewal rate, a stampede after an
outage, and the largest renewal rate the server sustains with p99 under 50 ms.

The server runs pinned to one core and the client threads (this process) to another, so the server's CPU time
(from /proc) is its own and the client's is visible apart. Phases, in order:

1. CPU per operation (R rounds, medians): raw signing (bench_issuance.run_raw, one thread), then closed-loop joins
   and renewals (bench_issuance.run_joins / run_renewals); server CPU per join and per renewal against raw.
2. Soak: open-loop renewals at 100,000 / 1200 s = 83.3/s. Each renewal is scheduled at its planned time and its
   latency counts from then, so time spent waiting for the server (or a busy client) is counted.
3. Stampede: N agents (default 2,000) each renew once, arriving within a few seconds, as when agents whose
   renewals fell due during an outage come back; TransportError is retried with the agent's jittered exponential
   backoff (and the agent's pending key, so a lost answer is not taken for a copy).
4. Capacity: open-loop steps of rising rate until p99 >= 50 ms or an error; the last good rate x 1200 s is the
   number of bots one server renews at a 20-minute interval.

Each renewal opens a new mutual-TLS channel with the bot's newest certificate, as agents do; bots renew from a
pool large enough that none renews twice at once.

    "$(scripts/setup)/python" benchmarks/bench_fleet.py [--quick] [--soak-seconds S] [--agents N]
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import random
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import bench_issuance as bi  # benchmarks/bench_issuance.py (this directory is on sys.path when run as a script)

from machineid.agent.bot import MAX_BACKOFF
from machineid.api.client import Client, JoinClient, identity_from_certs
from machineid.api.identity import Identity
from machineid.cluster.authority import Authority
from machineid.model.errors import MachineIDError, TransportError
from machineid.model.resources import Bot, BotSpec, Metadata

FLEET = 100_000
INTERVAL = 1200.0  # seconds: a 20-minute renewal interval
P99_TARGET = 0.050
CPU_THREADS = 4  # closed-loop client threads of phase 1, as bench_issuance
OPEN_LOOP_WORKERS = 64  # client threads carrying open-loop renewals
KEYS = 256  # renewal keys, cycled; a bot never gets the same key twice in a row
OTHER_LOAD = 0.1  # share of a core used by other processes (the machine's other users) worth a note
SATURATED = 0.9  # busy share of the client's core above which the client, not the server, may be the limit


# ----------------------------------------------------------------------------------------------------- measuring


def pin(pid: int, cores: set[int]) -> None:
    """Every thread of pid onto cores (sched_setaffinity applies per thread; new threads inherit their creator's)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that just ended
            os.sched_setaffinity(int(task.name), cores)


def allowed_cores(pid: int) -> str:
    """The distinct Cpus_allowed_list values of pid's threads, to show the pinning took."""
    seen = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            for line in (task / "status").read_text().splitlines():
                if line.startswith("Cpus_allowed_list:"):
                    seen.add(line.split(":", 1)[1].strip())
    return ",".join(sorted(seen))


def core_jiffies() -> dict[int, tuple[int, int]]:
    """Per core (busy, total) jiffies from /proc/stat: shows load from other processes on the pinned cores."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit():
            v = [int(x) for x in values[:8]]  # user nice system idle iowait irq softirq steal
            out[int(name[3:])] = (sum(v) - v[3] - v[4], sum(v))
    return out


def proc_status_kib(pid: int, field_name: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def reset_peak_rss(pid: int) -> bool:
    """Resets VmHWM to the current RSS (writing 5 to clear_refs, Linux >= 4.0), so the peak is this phase's."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def others_ticks(exclude: set[int]) -> dict[int, tuple[int, int]]:
    """pid -> (start time, utime + stime ticks) of every other process: the machine's other users."""
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) not in exclude:
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # it ended
                continue
            out[int(entry.name)] = (int(fields[19]), int(fields[11]) + int(fields[12]))
    return out


def others_cpu(before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]]) -> float:
    """CPU seconds other processes used between the two snapshots (those that ended in between are missed)."""
    ticks = 0
    for pid, (start, used) in after.items():
        prev = before.get(pid)
        ticks += used - prev[1] if prev is not None and prev[0] == start else used
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    """Wall time and CPU of one phase: the server's, the client's, other processes', each pinned core's load."""

    seconds: float
    server_cpu: float
    client_cpu: float
    others_cpu: float
    core_busy: dict[int, float]

    def share(self, cpu: float) -> float:
        return cpu / self.seconds if self.seconds > 0 else 0.0

    def note(self, cores: tuple[int, int] | None) -> str:
        text = (f"CPU server {100 * self.share(self.server_cpu):.0f}% client {100 * self.share(self.client_cpu):.0f}%"
                f" others {100 * self.share(self.others_cpu):.0f}%")
        if cores is not None:
            s, c = cores
            text += (f" | core {s} busy {100 * self.core_busy.get(s, 0):.0f}%, core {c} busy "
                     f"{100 * self.core_busy.get(c, 0):.0f}%")
        return text

    def client_saturated(self, cores: tuple[int, int] | None) -> bool:
        """The client's core was (nearly) full: by the client itself or, pinned, by it and whatever shared it."""
        busy = self.share(self.client_cpu) if cores is None else self.core_busy.get(cores[1], 0.0)
        return max(busy, self.share(self.client_cpu)) >= SATURATED


class Meter:
    def __init__(self, server: bi.ServerProc) -> None:
        self.server = server

    @contextlib.contextmanager
    def measure(self) -> Iterator[list[Usage]]:
        """Yields a list that holds the phase's Usage once the block ends."""
        out: list[Usage] = []
        assert self.server.proc is not None
        exclude = {os.getpid(), self.server.proc.pid}
        o0, s0, c0, j0 = others_ticks(exclude), self.server.cpu_seconds(), bi.process_cpu(), core_jiffies()
        t0 = time.perf_counter()
        yield out
        t1, j1 = time.perf_counter(), core_jiffies()
        busy = {k: (j1[k][0] - j0[k][0]) / max(1, j1[k][1] - j0[k][1]) for k in j1 if k in j0}
        out.append(Usage(t1 - t0, self.server.cpu_seconds() - s0, bi.process_cpu() - c0,
                         others_cpu(o0, others_ticks(exclude)), busy))


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(-(-p * len(ordered) // 100)) - 1))]


# --------------------------------------------------------------------------------------------------------- fleet


@dataclass
class BotState:
    identity: Identity
    pending: bi.KeyPair | None = None  # the key of a renewal whose answer was lost, reused like the agent does
    lock: threading.Lock = field(default_factory=threading.Lock)


class Fleet:
    """Pre-joined bots; renew(i) renews bot i with a fresh key and keeps the identity it gets back."""

    def __init__(self, address: str, identities: list[Identity], keys: list[bi.KeyPair]) -> None:
        self.address = address
        self.bots = [BotState(ident) for ident in identities]
        self.keys = keys
        self._key_seq = itertools.count()
        self.overlaps = 0  # renewals that had to wait for the same bot's previous one: the pool was too small

    def __len__(self) -> int:
        return len(self.bots)

    def renew(self, i: int) -> None:
        bot = self.bots[i]
        if not bot.lock.acquire(blocking=False):
            self.overlaps += 1
            bot.lock.acquire()
        try:
            key = bot.pending or self.keys[next(self._key_seq) % len(self.keys)]
            bot.pending = key
            with Client(self.address, bot.identity) as client:
                reply = client.renew(key.public_pem)
            bot.identity = identity_from_certs(key.key_pem, reply)
            bot.pending = None
        finally:
            bot.lock.release()


@dataclass
class OpenLoop:
    rate: float
    planned: int
    latencies: list[float]  # from the planned start to the answer
    waits: list[float]  # from the planned start to the call (client threads all busy, or late)
    errors: list[str]
    usage: Usage

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 99)

    @property
    def failures(self) -> int:
        return self.planned - len(self.latencies)

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.p99 < P99_TARGET

    def line(self, cores: tuple[int, int] | None) -> str:
        return (f"{self.rate:6.1f}/s x {self.usage.seconds:4.1f}s: p50 {1000 * self.p50:6.1f} ms, p99 "
                f"{1000 * self.p99:7.1f} ms, wait p99 {1000 * percentile(self.waits, 99):6.1f} ms, errors "
                f"{self.failures}/{self.planned}, server CPU {ms(self.usage.server_cpu, len(self.latencies)):.2f} "
                f"ms/renewal | {self.usage.note(cores)}")


def open_loop(fleet: Fleet, meter: Meter, rate: float, seconds: float, start_at: int) -> OpenLoop:
    """Renewals planned at start + n/rate for n < rate*seconds, carried by a pool of client threads; each takes the
    next planned slot, sleeps until its time and renews bot (start_at + n) mod pool size. A slot not started by
    2 x seconds + 5 s counts as an error (the server fell far behind)."""
    total = max(1, round(rate * seconds))
    slots = itertools.count()
    latencies: list[float] = []
    waits: list[float] = []
    errors: list[str] = []
    t0 = time.perf_counter() + 0.1
    give_up = t0 + 2 * seconds + 5

    def worker() -> None:
        while (n := next(slots)) < total:  # itertools.count is atomic under the GIL
            planned = t0 + n / rate
            if (delay := planned - time.perf_counter()) > 0:
                time.sleep(delay)
            started = time.perf_counter()
            if started > give_up:
                errors.append("not started: the run fell too far behind")
                continue
            try:
                fleet.renew((start_at + n) % len(fleet))
            except MachineIDError as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            latencies.append(time.perf_counter() - planned)
            waits.append(started - planned)

    with meter.measure() as usage:
        pool = [threading.Thread(target=worker, name=f"open-{i}") for i in range(OPEN_LOOP_WORKERS)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    return OpenLoop(rate, total, latencies, waits, errors, usage[0])


@dataclass
class Stampede:
    agents: int
    spread: float
    drain: float  # from the first arrival to the last success
    latencies: list[float]  # per agent, from its arrival to its success
    transport_errors: int
    retried: int  # agents that needed at least one retry
    failures: list[str]
    usage: Usage
    rss_before_kib: int
    peak_kib: int
    peak_is_phase: bool


def stampede(fleet: Fleet, meter: Meter, server: bi.ServerProc, agents: int, spread: float,
             give_up: float) -> Stampede:
    """agents threads, one per bot, each arriving at a random time in [0, spread) and renewing until it succeeds:
    a TransportError waits min(backoff, MAX_BACKOFF) x [0.8, 1.2) and doubles backoff, as BotAgent.run does."""
    assert server.proc is not None
    pid = server.proc.pid
    rng = random.Random(7)
    arrivals = sorted(rng.uniform(0, spread) for _ in range(agents))
    done: list[float] = [0.0] * agents
    errors = [0] * agents
    failures: list[str] = []
    go = threading.Event()
    t0 = 0.0

    def agent(i: int) -> None:
        go.wait()
        arrive = t0 + arrivals[i]
        time.sleep(max(0.0, arrive - time.perf_counter()))
        backoff = 1.0
        while True:
            try:
                fleet.renew(i)
                done[i] = time.perf_counter() - arrive
                return
            except TransportError as e:
                errors[i] += 1
                if time.perf_counter() - t0 > give_up:
                    failures.append(f"agent {i}: gave up after {give_up:.0f}s: {e}")
                    return
                time.sleep(min(backoff, MAX_BACKOFF) * (0.8 + 0.4 * random.random()))
                backoff = min(backoff * 2, MAX_BACKOFF)
            except MachineIDError as e:
                failures.append(f"agent {i}: {type(e).__name__}: {e}")
                return

    old_stack = threading.stack_size(512 * 1024)  # 2,000 threads: keep their reserved stacks small
    try:
        pool = [threading.Thread(target=agent, args=(i,), name=f"agent-{i}") for i in range(agents)]
        for t in pool:  # all started before the first arrival, so starting them is not in the timings
            t.start()
        rss_before = proc_status_kib(pid, "VmRSS")
        peak_is_phase = reset_peak_rss(pid)
        with meter.measure() as usage:
            t0 = time.perf_counter()
            go.set()
            for t in pool:
                t.join()
            finished = time.perf_counter()
    finally:
        threading.stack_size(old_stack)
    ok = [d for d in done if d > 0]
    drain = finished - t0 - arrivals[0] if ok else float("nan")
    return Stampede(agents, spread, drain, ok, sum(errors), sum(1 for e in errors if e), failures, usage[0],
                    rss_before, proc_status_kib(pid, "VmHWM"), peak_is_phase)


def capacity_search(fleet: Fleet, meter: Meter, estimate: float, seconds: float, start_at: int,
                    cores: tuple[int, int] | None) -> tuple[OpenLoop | None, list[OpenLoop]]:
    """Steps of rising rate (fractions of the single-core estimate 1 / server CPU per renewal) until p99 >= 50 ms or
    an error (steps down instead if the first fails), then one step halfway between the best passing rate and the
    failing one above it. Returns the best passing step and all steps."""
    steps: list[OpenLoop] = []

    def run(rate: float) -> OpenLoop:
        step = open_loop(fleet, meter, rate, seconds, start_at + sum(s.planned for s in steps))
        steps.append(step)
        print(f"  step {step.line(cores)}  {'ok' if step.ok else 'FAIL'}", flush=True)
        return step

    best: OpenLoop | None = None
    failed: OpenLoop | None = None
    for fraction in [0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.2]:
        step = run(estimate * fraction)
        if not step.ok:
            failed = step
            break
        best = step
    if best is None:
        for fraction in [0.2, 0.1]:
            step = run(estimate * fraction)
            if step.ok:
                best = step
                break
            failed = step
    if best is not None and failed is not None and (step := run((best.rate + failed.rate) / 2)).ok:
        best = step  # one step of bisection between the last good rate and the first bad one
    return best, steps


# ----------------------------------------------------------------------------------------------------------- main


def ms(cpu: float, count: int) -> float:
    return bi.ms_per(cpu, count)


@dataclass
class CpuRound:
    raw_ms: float  # CPU per raw issuance (thread time)
    join_ms: float
    renew_ms: float
    joins: bi.Phase
    renewals: bi.Phase


def cpu_round(admin: bi.Admin, authority: Authority, shape: bi.IssuanceShape, keys: list[list[bi.KeyPair]],
              renewing: list[Identity], joins: int, seconds: float, tag: str) -> CpuRound:
    tokens = admin.new_tokens(joins, tag)  # untimed
    all_keys = [k for per in keys for k in per]
    c0 = time.thread_time()
    raw_count, _ = bi.run_raw(authority, shape, all_keys, seconds)
    raw_ms = ms(time.thread_time() - c0, raw_count)
    joined = bi.run_joins(admin, tokens, keys, 3 * seconds)  # ends when the tokens run out
    renewed = bi.run_renewals(admin, renewing, keys, seconds)
    if joined.errors or renewed.errors:
        raise RuntimeError("; ".join(joined.errors + renewed.errors))
    return CpuRound(raw_ms, ms(joined.server_cpu, joined.count), ms(renewed.server_cpu, renewed.count), joined,
                    renewed)


def join_fleet(admin: bi.Admin, count: int, keys: list[bi.KeyPair]) -> list[Identity]:
    """count new bots, each joined right after it is made (set-up, untimed), from CPU_THREADS threads with one admin
    and one join channel each. Making all tokens first would be slower: create_bot reads every outstanding token."""

    def work(share: int) -> list[Identity]:
        out = []
        with admin.server.admin() as client, JoinClient(admin.server.address, admin.ca_certs) as jc:
            for i in range(share, count, CPU_THREADS):
                bot = Bot(metadata=Metadata(name=f"fleet-{i}"),
                          spec=BotSpec(roles=list(bi.BOT_ROLES), traits={k: list(v) for k, v in bi.BOT_TRAITS.items()}))
                token = client.create_bot(bot).token
                key = keys[i % len(keys)]
                out.append(identity_from_certs(key.key_pem, jc.register_using_token(token, key.public_pem).certs))
        return out

    with ThreadPoolExecutor(CPU_THREADS) as pool:
        return [ident for chunk in pool.map(work, range(CPU_THREADS)) for ident in chunk]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fleet against one server: CPU per operation, soak, stampede, "
                                                 "capacity.")
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run (smaller, shorter phases)")
    parser.add_argument("--soak-seconds", type=float, help="length of the soak (default 60; --quick 10)")
    parser.add_argument("--agents", type=int, help="bots in the pool and agents in the stampede (default 2000; "
                                                   "--quick 400)")
    parser.add_argument("--spread", type=float, default=3.0, help="stampede arrival window in seconds (default 3)")
    parser.add_argument("--step-seconds", type=float, help="length of each capacity step (default 10; --quick 4)")
    parser.add_argument("--rounds", type=int, help="CPU-per-operation rounds, medians reported (default 3; "
                                                   "--quick 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir and the server log")
    args = parser.parse_args(argv)
    quick = args.quick
    soak_seconds = args.soak_seconds if args.soak_seconds is not None else (10.0 if quick else 60.0)
    agents = args.agents if args.agents is not None else (400 if quick else 2000)
    step_seconds = args.step_seconds if args.step_seconds is not None else (4.0 if quick else 10.0)
    rounds = args.rounds if args.rounds is not None else (1 if quick else 3)
    cpu_seconds, cpu_joins = (1.5, 150) if quick else (3.0, 400)
    if min(soak_seconds, step_seconds, args.spread) <= 0 or agents < 1 or rounds < 1:
        parser.error("--soak-seconds, --step-seconds and --spread must be > 0; --agents and --rounds >= 1")
    soak_rate = FLEET / INTERVAL

    t_start = time.perf_counter()
    print(f"machineid fleet benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}: {agents} bots, soak {soak_seconds:g}s at "
          f"{soak_rate:.1f}/s, {step_seconds:g}s capacity steps, {rounds} CPU rounds, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    available = sorted(os.sched_getaffinity(0))
    cores: tuple[int, int] | None = (available[0], available[1]) if len(available) >= 2 else None
    if cores is not None:
        # The server inherits the starting thread's affinity; the client moves to the other core after.
        os.sched_setaffinity(0, {cores[0]})
    tmp = Path(tempfile.mkdtemp(prefix="machineid-fleet-"))
    server = bi.ServerProc(tmp / "data", bi.CLUSTER_NAME, log_path=tmp / "server.log")
    server.start()
    assert server.proc is not None
    try:
        if cores is not None:
            pin(server.proc.pid, {cores[0]})
            pin(os.getpid(), {cores[1]})
            print(f"cores: server (pid {server.proc.pid}) on CPU {allowed_cores(server.proc.pid)}, clients on CPU "
                  f"{allowed_cores(os.getpid())} ({os.cpu_count()} CPUs; other processes may share them: each "
                  "phase shows how busy each core was in all)", flush=True)
        else:
            print(f"cores: only {len(available)} CPU available, server and clients run unpinned (server CPU is "
                  "still its own; latencies include the clients' share of the core)", flush=True)
        meter = Meter(server)
        setup, setup_cpu = time.perf_counter(), server.cpu_seconds()
        keys = [bi.make_keys(KEYS // CPU_THREADS) for _ in range(CPU_THREADS)]
        all_keys = [k for per in keys for k in per]
        admin = bi.Admin(server, CPU_THREADS)
        renewing = [admin.join(token, keys[i][0]) for i, token in enumerate(admin.new_tokens(CPU_THREADS, "cpu"))]
        fleet = Fleet(server.address, join_fleet(admin, agents, all_keys), all_keys)
        shape = bi.shape_from(renewing[0])
        authority = bi.bench_authority()
        print(f"setup: {agents} bots made and joined for the fleet in {time.perf_counter() - setup:.0f}s (server "
              f"CPU {server.cpu_seconds() - setup_cpu:.0f}s; untimed)", flush=True)

        # 1. CPU per operation. Warm-up first (untimed): code paths, SQLite pages, connections.
        cpu_round(admin, authority, shape, keys, renewing, cpu_joins // 4, 0.5, "warm")
        cpu: list[CpuRound] = []
        for r in range(1, rounds + 1):
            rnd = cpu_round(admin, authority, shape, keys, renewing, cpu_joins, cpu_seconds, f"r{r}")
            cpu.append(rnd)
            print(f"cpu round {r}: raw {rnd.raw_ms:.3f} ms/issuance | joins {rnd.joins.rate:.0f}/s, server "
                  f"{rnd.join_ms:.2f} ms/join ({rnd.joins.cpu_note()}) | renewals {rnd.renewals.rate:.0f}/s, server "
                  f"{rnd.renew_ms:.2f} ms/renewal ({rnd.renewals.cpu_note()})", flush=True)
        raw_ms = statistics.median(r.raw_ms for r in cpu)
        join_ms = statistics.median(r.join_ms for r in cpu)
        renew_ms = statistics.median(r.renew_ms for r in cpu)
        join_client_ms = statistics.median(ms(r.joins.client_cpu, r.joins.count) for r in cpu)
        renew_client_ms = statistics.median(ms(r.renewals.client_cpu, r.renewals.count) for r in cpu)

        # 2. Soak at the renewal rate of the whole fleet.
        soak = open_loop(fleet, meter, soak_rate, soak_seconds, 0)
        print(f"soak: {soak.line(cores)}", flush=True)
        for err in sorted(set(soak.errors))[:5]:
            print(f"  error: {err}", flush=True)
        next_bot = soak.planned

        # 3. Stampede: every bot of the pool renews once, within --spread seconds.
        st = stampede(fleet, meter, server, agents, args.spread, give_up=120.0)
        print(f"stampede: {agents} agents arriving within {args.spread:g}s, drained in {st.drain:.1f}s, "
              f"{st.transport_errors} transport errors ({st.retried} agents retried), {len(st.failures)} failed; "
              f"p50 {percentile(st.latencies, 50):.2f}s p99 {percentile(st.latencies, 99):.2f}s from arrival | "
              f"{st.usage.note(cores)}", flush=True)
        for err in st.failures[:5]:
            print(f"  failure: {err}", flush=True)

        # 4. Capacity: the largest renewal rate with p99 < 50 ms and no errors.
        estimate = 1000 / renew_ms
        print(f"capacity search: {step_seconds:g}s steps from 1 / server CPU per renewal = {estimate:.0f}/s",
              flush=True)
        best, steps = capacity_search(fleet, meter, estimate, step_seconds, next_bot, cores)
        total = time.perf_counter() - t_start

        # ---- the table
        def row(name: str, value: str, ref: str = "") -> None:
            print(f"  {name:<44} {value:<34} {ref}")

        def verdict(ok: bool) -> str:
            return "PASS" if ok else "FAIL"

        where = f"server on CPU {cores[0]}, clients on CPU {cores[1]}" if cores else "unpinned"
        print()
        print(f"results ({where}; CPU rounds: median of {rounds}):")
        row("raw signing floor (1 thread)", f"{raw_ms:.3f} ms CPU per issuance", "SSH user + X.509 client cert")
        row("join: server CPU", f"{join_ms:.2f} ms per join", f"{join_ms / raw_ms:.1f}x raw (client "
            f"{join_client_ms:.2f} ms)")
        row("renewal: server CPU", f"{renew_ms:.2f} ms per renewal", f"{renew_ms / raw_ms:.1f}x raw (client "
            f"{renew_client_ms:.2f} ms)")
        row(f"soak {soak_rate:.1f}/s x {soak_seconds:g}s: p50 / p99",
            f"{1000 * soak.p50:.1f} / {1000 * soak.p99:.1f} ms", f"p99 < 50 ms  {verdict(soak.p99 < P99_TARGET)}")
        row("soak: errors", f"{soak.failures} of {soak.planned}", f"0  {verdict(soak.failures == 0)}")
        row("soak: CPU", f"server {ms(soak.usage.server_cpu, len(soak.latencies)):.2f} ms per renewal",
            f"server {100 * soak.usage.share(soak.usage.server_cpu):.0f}%, client "
            f"{100 * soak.usage.share(soak.usage.client_cpu):.0f}% of a core")
        row(f"stampede: {agents} agents within {args.spread:g}s", f"drained in {st.drain:.1f}s",
            f"all succeed  {verdict(not st.failures and len(st.latencies) == agents)}")
        row("stampede: errors before retry success", f"{st.transport_errors} ({st.retried} agents retried)")
        row("stampede: time to success p50 / p99 / max", f"{percentile(st.latencies, 50):.2f} / "
            f"{percentile(st.latencies, 99):.2f} / {max(st.latencies, default=float('nan')):.2f} s")
        peak = "phase peak" if st.peak_is_phase else "lifetime peak"
        row("stampede: peak server memory (VmHWM)", f"{st.peak_kib / 1024:.0f} MiB ({peak})",
            f"RSS before {st.rss_before_kib / 1024:.0f} MiB")
        row("stampede: CPU", f"server {100 * st.usage.share(st.usage.server_cpu):.0f}%, client "
            f"{100 * st.usage.share(st.usage.client_cpu):.0f}% of a core")
        if best is not None:
            row("max renewal rate with p99 < 50 ms", f"{best.rate:.0f}/s (p99 {1000 * best.p99:.1f} ms)",
                f"{best.rate * renew_ms / 10:.0f}% of one core at phase-1 CPU per renewal")
            row("bots per server at a 20-minute interval", f"{best.rate * INTERVAL:,.0f}",
                f"{best.rate * INTERVAL / FLEET:.1f}x the 100,000-bot fleet")
        else:
            row("max renewal rate with p99 < 50 ms", "none of the steps passed")
        limited = [f"{s.rate:.0f}/s" for s in [soak, *steps] if s.usage.client_saturated(cores)]
        if st.usage.client_saturated(cores):
            limited.append("the stampede")
        if limited:
            print(f"  note: the client's core was >= {100 * SATURATED:.0f}% busy at {', '.join(limited)}: there, "
                  "latency includes client queueing and the server was not necessarily the limit")
        phases = [(f"{s.rate:.0f}/s", s.usage) for s in [soak, *steps]] + [("the stampede", st.usage)]
        if busy := [f"{name} {100 * u.share(u.others_cpu):.0f}%" for name, u in phases
                    if u.share(u.others_cpu) >= OTHER_LOAD]:
            print(f"  note: other processes used a share of a core (on either core) at {', '.join(busy)}: there "
                  "the server or the client shared its core and latencies are inflated")
        if fleet.overlaps:
            print(f"  note: {fleet.overlaps} renewals waited for the same bot's previous one (pool too small)")
        kept = f"; data dir and server log kept in {tmp}" if args.keep else ""
        print(f"(total runtime {total:.0f}s{kept})")
        return 1 if st.failures or len(st.latencies) < agents else 0
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
