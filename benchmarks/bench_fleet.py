"""A fleet against one server: CPU per join, renewal and agent cycle, a soak at a 100,000-bot rate, a stampede after
an outage (from many source addresses and from one), and the largest cycle rate the server sustains with p99 under
50 ms.

The server runs pinned to one core and the client threads (this process) to another, so the server's CPU time
(from /proc) is its own and the client's is visible apart. The unit of work is the agent's own cycle
(`BotAgent.cycle`: the renewal, the destinations' output certificates, the node list, the destination files written
to a temporary directory), in one of three modes:

- `one`: the agent's cycle as it is now, one mutual-TLS connection and one call (AgentCycle);
- `three`: the cycle before AgentCycle, three calls on three connections (RenewCerts, IssueOutputCerts, ListNodes),
  as `BotAgent` does against a server without AgentCycle;
- `bare`: one RenewCerts call on a new connection, nothing written (what this benchmark measured before).

Phases, in order:

1. CPU per operation (R rounds, medians): raw signing (bench_issuance.run_raw, one thread), closed-loop joins and
   bare renewals (bench_issuance.run_joins / run_renewals), then closed-loop agent cycles in `three` and `one` mode;
   server CPU per operation against raw.
2. Soak: open-loop cycles (--cycle mode) at 100,000 / 1200 s = 83.3/s. Each is scheduled at its planned time and
   its latency counts from then, so time spent waiting for the server (or a busy client) is counted.
3. Stampede, twice: N agents (default 2,000) each run one cycle, arriving within a few seconds, as when agents whose
   renewals fell due during an outage come back; first from --sources loopback addresses (127.0.0.2, ...; the
   client's source address is bound by an LD_PRELOAD shim, benchmarks/source_bind.c, since gRPC has no option for
   it), then all from one address. TransportError is retried with the agent's jittered exponential backoff.
4. Capacity: open-loop steps of rising rate until p99 >= 50 ms or an error; the last good rate x 1200 s is the
   number of bots one server serves at a 20-minute interval.

    "$(scripts/setup)/python" benchmarks/bench_fleet.py [--quick] [--cycle one|three|bare] [--soak-seconds S]
        [--agents N] [--sources N]
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import itertools
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import bench_issuance as bi  # benchmarks/bench_issuance.py (this directory is on sys.path when run as a script)

from machineid.agent import destination
from machineid.agent.bot import MAX_BACKOFF, BotAgent, Outcome
from machineid.agent.config import AgentConfig, Destination, Onboarding, Storage
from machineid.api import certs
from machineid.api.client import Client, JoinClient, identity_from_certs
from machineid.api.identity import Identity
from machineid.cluster.authority import Authority
from machineid.model.errors import MachineIDError, TransportError
from machineid.model.resources import Bot, BotSpec, Metadata, Node, NodeSpec

FLEET = 100_000
INTERVAL = 1200.0  # seconds: a 20-minute renewal interval
P99_TARGET = 0.050
CPU_THREADS = 4  # closed-loop client threads of phase 1, as bench_issuance
OPEN_LOOP_WORKERS = 64  # client threads carrying open-loop renewals
COMPARE_THREADS = 8  # closed-loop client threads of phase 5: enough to keep two workers busy
KEYS = 256  # renewal keys, cycled; a bot never gets the same key twice in a row
NODES = 20  # nodes every bot's roles reach: what each cycle lists into ssh_config
MODES = ("one", "three", "bare")
SOURCES_ENV = "MACHINEID_BENCH_SOURCES"  # read by the source_bind.c shim at each connect()
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
        exclude = {os.getpid(), *self.server.pids()}
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


class BenchAgent(BotAgent):
    """The agent; with `legacy` set, its cycle as before AgentCycle (as against an older server): renew, then the
    output certificates and the nodes, each on a connection of its own."""

    legacy = False
    cluster_seconds = 0.0  # time in the calls to the cluster (connections and RPCs) of the last cycle

    def cycle(self) -> Outcome:
        self.cluster_seconds = 0.0
        return super().cycle()

    def renew_cycle(self, current: Identity) -> tuple[Identity, Identity | None, list[destination.NodeEntry] | None]:
        t0 = time.perf_counter()
        try:
            if self.legacy:
                return self.renew(current), None, None
            return super().renew_cycle(current)
        finally:
            self.cluster_seconds += time.perf_counter() - t0

    def _output_identity(self, ident: Identity) -> Identity:
        t0 = time.perf_counter()
        try:
            return super()._output_identity(ident)
        finally:
            self.cluster_seconds += time.perf_counter() - t0

    def _nodes(self, ident: Identity) -> list[destination.NodeEntry]:
        t0 = time.perf_counter()
        try:
            return super()._nodes(ident)
        finally:
            self.cluster_seconds += time.perf_counter() - t0


def make_agent(address: str, pin: str, root: Path, ident: Identity) -> BenchAgent:
    """An agent holding a joined identity, as after its first cycle: the identity stored in its data dir, one
    destination directory, both under root."""
    cfg = AgentConfig(auth_server=address, onboarding=Onboarding(ca_pins=[pin]),
                      storage=Storage(directory=str(root / "data")),
                      destinations=[Destination(directory=str(root / "dest"))])
    agent = BenchAgent(cfg)
    agent._save_state(ident)
    agent.identity = ident
    (root / "dest").mkdir(mode=0o700)
    return agent


@dataclass
class BotState:
    agent: BenchAgent
    pending: bi.KeyPair | None = None  # bare mode: the key of a renewal whose answer was lost, reused as agents do
    lock: threading.Lock = field(default_factory=threading.Lock)


class Fleet:
    """Agents of pre-joined bots; renew(i) runs bot i's unit of work in the fleet's mode (see MODES)."""

    def __init__(self, address: str, agents: list[BenchAgent], keys: list[bi.KeyPair], mode: str = "one") -> None:
        self.address = address
        self.bots = [BotState(agent) for agent in agents]
        self.keys = keys
        self.mode = mode
        self._key_seq = itertools.count()
        self.overlaps = 0  # renewals that had to wait for the same bot's previous one: the pool was too small

    def __len__(self) -> int:
        return len(self.bots)

    def renew(self, i: int) -> float:
        """Bot i's unit of work; returns the time it spent in calls to the cluster (all of it in bare mode)."""
        bot = self.bots[i]
        if not bot.lock.acquire(blocking=False):
            self.overlaps += 1
            bot.lock.acquire()
        try:
            agent = bot.agent
            if self.mode == "bare":
                assert agent.identity is not None
                key = bot.pending or self.keys[next(self._key_seq) % len(self.keys)]
                bot.pending = key
                t0 = time.perf_counter()
                with Client(self.address, agent.identity) as client:
                    reply = client.renew(key.public_pem)
                agent.identity = identity_from_certs(key.key_pem, reply)
                bot.pending = None
                return time.perf_counter() - t0
            agent.legacy = self.mode == "three"
            agent.cycle()
            return agent.cluster_seconds
        finally:
            bot.lock.release()


def run_cycles(fleet: Fleet, server: bi.ServerProc, mode: str, seconds: float, start_at: int) -> bi.Phase:
    """CPU_THREADS closed-loop client threads, each running cycles of its own bots in turn (start_at + thread, then
    + CPU_THREADS, ...) for `seconds`, in `mode`."""
    fleet.mode = mode

    def worker(i: int, deadline: float, counts: list[int]) -> None:
        def step(n: int) -> bool:
            fleet.renew((start_at + i + n * CPU_THREADS) % len(fleet))
            return True

        bi.count_until(i, deadline, counts, step)

    return bi.run_threads(server, CPU_THREADS, seconds, worker)


@dataclass
class OpenLoop:
    rate: float
    planned: int
    latencies: list[float]  # from the planned start to the end of the cycle
    cluster: list[float]  # the cycle's time in calls to the cluster (connections and RPCs, server queueing included)
    waits: list[float]  # from the planned start to the call (client threads all busy, or late)
    errors: list[str]
    usage: Usage

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 50)

    @property
    def p99(self) -> float:
        """The criterion: p99 of the cycles' time in calls to the cluster. The agent's own work (keys, files
        written and fsynced) is not the server's and would be the same on any server."""
        return percentile(self.cluster, 99)

    @property
    def failures(self) -> int:
        return self.planned - len(self.latencies)

    @property
    def ok(self) -> bool:
        return self.failures == 0 and self.p99 < P99_TARGET

    def line(self, cores: tuple[int, int] | None) -> str:
        return (f"{self.rate:6.1f}/s x {self.usage.seconds:4.1f}s: cluster calls p50 "
                f"{1000 * percentile(self.cluster, 50):6.1f} ms p99 {1000 * self.p99:7.1f} ms, whole cycle p50 "
                f"{1000 * self.p50:6.1f} ms p99 {1000 * percentile(self.latencies, 99):7.1f} ms, "
                f"wait p99 {1000 * percentile(self.waits, 99):6.1f} ms, errors "
                f"{self.failures}/{self.planned}, server CPU {ms(self.usage.server_cpu, len(self.latencies)):.2f} "
                f"ms/cycle | {self.usage.note(cores)}")


def open_loop(fleet: Fleet, meter: Meter, rate: float, seconds: float, start_at: int) -> OpenLoop:
    """Renewals planned at start + n/rate for n < rate*seconds, carried by a pool of client threads; each takes the
    next planned slot, sleeps until its time and renews bot (start_at + n) mod pool size. A slot not started by
    2 x seconds + 5 s counts as an error (the server fell far behind)."""
    total = max(1, round(rate * seconds))
    slots = itertools.count()
    latencies: list[float] = []
    cluster: list[float] = []
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
                in_cluster = fleet.renew((start_at + n) % len(fleet))
            except MachineIDError as e:
                errors.append(f"{type(e).__name__}: {e}")
                continue
            latencies.append(time.perf_counter() - planned)
            cluster.append(in_cluster)
            waits.append(started - planned)

    with meter.measure() as usage:
        pool = [threading.Thread(target=worker, name=f"open-{i}") for i in range(OPEN_LOOP_WORKERS)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    return OpenLoop(rate, total, latencies, cluster, waits, errors, usage[0])


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


@dataclass
class WorkersRun:
    """Phase 5 for one worker count: closed-loop cycles (throughput and server CPU per cycle, all the server's
    processes) and the capacity search, with the server and the clients on every core."""

    workers: int
    closed: bi.Phase
    closed_usage: Usage
    best: OpenLoop | None
    steps: list[OpenLoop]


def with_workers(server: bi.ServerProc, workers: int, available: list[int]) -> None:
    """Restarts the server on its data dir and address with `workers` worker processes, every process of it and
    this one allowed on every core."""
    address = server.address
    server.stop()
    server.workers = workers
    server.start(listen=address)
    for pid in server.pids():
        pin(pid, set(available))
    pin(os.getpid(), set(available))


def workers_phase(server: bi.ServerProc, fleet: Fleet, meter: Meter, counts: list[int], available: list[int],
                  seconds: float, step_seconds: float, start_at: int) -> list[WorkersRun]:
    runs: list[WorkersRun] = []
    for n in counts:
        with_workers(server, n, available)
        run_cycles(fleet, server, fleet.mode, 1.0, start_at)  # warm-up (untimed): connections, SQLite pages
        start_at += 4 * CPU_THREADS

        def worker(i: int, deadline: float, counts_: list[int], at: int = start_at) -> None:
            def step(k: int) -> bool:
                fleet.renew((at + i + k * COMPARE_THREADS) % len(fleet))
                return True

            bi.count_until(i, deadline, counts_, step)

        with meter.measure() as usage:
            closed = bi.run_threads(server, COMPARE_THREADS, seconds, worker)
        if closed.errors:
            raise RuntimeError("; ".join(closed.errors))
        start_at += closed.count + COMPARE_THREADS
        print(f"workers {n}: closed loop ({COMPARE_THREADS} threads) {closed.rate:.0f} cycles/s, server "
              f"{ms(closed.server_cpu, closed.count):.2f} ms/cycle | {usage[0].note(None)}", flush=True)
        best, steps = capacity_search(fleet, meter, closed.rate / 0.8, step_seconds, start_at, None)
        start_at += sum(st.planned for st in steps)
        runs.append(WorkersRun(n, closed, usage[0], best, steps))
    return runs


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
    cycles: dict[str, bi.Phase]  # agent cycles by mode ("three", "one")

    def cycle_ms(self, mode: str) -> float:
        if mode == "bare":
            return self.renew_ms
        return ms(self.cycles[mode].server_cpu, self.cycles[mode].count)

    def cycle_client_ms(self, mode: str) -> float:
        phase = self.renewals if mode == "bare" else self.cycles[mode]
        return ms(phase.client_cpu, phase.count)


def cpu_round(admin: bi.Admin, authority: Authority, shape: bi.IssuanceShape, keys: list[list[bi.KeyPair]],
              renewing: list[Identity], fleet: Fleet, joins: int, seconds: float, tag: str) -> CpuRound:
    tokens = admin.new_tokens(joins, tag)  # untimed
    all_keys = [k for per in keys for k in per]
    c0 = time.thread_time()
    raw_count, _ = bi.run_raw(authority, shape, all_keys, seconds)
    raw_ms = ms(time.thread_time() - c0, raw_count)
    joined = bi.run_joins(admin, tokens, keys, 3 * seconds)  # ends when the tokens run out
    renewed = bi.run_renewals(admin, renewing, keys, seconds)
    cycles = {mode: run_cycles(fleet, admin.server, mode, seconds, 0) for mode in ("three", "one")}
    errors = joined.errors + renewed.errors + [e for c in cycles.values() for e in c.errors]
    if errors:
        raise RuntimeError("; ".join(errors))
    return CpuRound(raw_ms, ms(joined.server_cpu, joined.count), ms(renewed.server_cpu, renewed.count), joined,
                    renewed, cycles)


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


def source_shim() -> str:
    """Makes this process bind its loopback connections to many source addresses on demand (benchmarks/
    source_bind.c, preloaded): builds the shim and runs the benchmark again with it, once. Returns "" when it is
    loaded, else why not (then the many-address stampede is skipped)."""
    if os.environ.get("MACHINEID_BENCH_SHIM") == "1":
        os.environ.pop("LD_PRELOAD", None)  # loaded in this process; the server and other children go without
        return ""
    source = Path(__file__).with_name("source_bind.c")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    lib = Path(tempfile.gettempdir()) / f"machineid-source-bind-{digest}.so"
    if not lib.exists():
        built = subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(source), "-ldl"],
                               capture_output=True, text=True)
        if built.returncode != 0:
            return f"cannot build {source.name}: {built.stderr.strip()[:200]}"
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv],
              {**os.environ, "LD_PRELOAD": str(lib), "MACHINEID_BENCH_SHIM": "1"})
    return "unreachable"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A fleet against one server: CPU per operation, soak, stampede, "
                                                 "capacity.")
    parser.add_argument("--quick", action="store_true", help="a ~1 minute smoke run (smaller, shorter phases)")
    parser.add_argument("--cycle", choices=MODES, default="one",
                        help="the unit of work of the soak, stampedes and capacity steps (default one: the agent's "
                             "one-connection cycle; three: its cycle before AgentCycle; bare: one RenewCerts)")
    parser.add_argument("--soak-seconds", type=float, help="length of the soak (default 60; --quick 10)")
    parser.add_argument("--agents", type=int, help="bots in the pool and agents in the stampede (default 2000; "
                                                   "--quick 400)")
    parser.add_argument("--spread", type=float, default=3.0, help="stampede arrival window in seconds (default 3)")
    parser.add_argument("--sources", type=int, default=64,
                        help="source addresses of the first stampede (default 64; 0 skips it)")
    parser.add_argument("--step-seconds", type=float, help="length of each capacity step (default 10; --quick 4)")
    parser.add_argument("--rounds", type=int, help="CPU-per-operation rounds, medians reported (default 3; "
                                                   "--quick 1)")
    parser.add_argument("--skip", action="append", default=[], choices=["soak", "capacity"],
                        help="leave out a phase (repeatable)")
    parser.add_argument("--workers", default="1,2", metavar="N,M,...",
                        help="phase 5: worker counts (server --workers) to compare, side by side, on every core "
                             "(default 1,2; empty skips it)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data dir and the server log")
    args = parser.parse_args(argv)
    quick = args.quick
    try:
        worker_counts = [int(n) for n in args.workers.split(",") if n.strip()]
    except ValueError:
        parser.error(f"--workers {args.workers}: write worker counts such as 1,2")
    soak_seconds = args.soak_seconds if args.soak_seconds is not None else (10.0 if quick else 60.0)
    agents = args.agents if args.agents is not None else (400 if quick else 2000)
    step_seconds = args.step_seconds if args.step_seconds is not None else (4.0 if quick else 10.0)
    rounds = args.rounds if args.rounds is not None else (1 if quick else 3)
    cpu_seconds, cpu_joins = (1.5, 150) if quick else (3.0, 400)
    if min(soak_seconds, step_seconds, args.spread) <= 0 or agents < 1 or rounds < 1 or args.sources < 0:
        parser.error("--soak-seconds, --step-seconds and --spread must be > 0; --agents and --rounds >= 1")
    no_shim = source_shim() if args.sources else "--sources 0"
    soak_rate = FLEET / INTERVAL
    mode = args.cycle

    t_start = time.perf_counter()
    print(f"machineid fleet benchmark, {time.strftime('%Y-%m-%d %H:%M %Z')}: {agents} bots, cycle mode {mode}, soak "
          f"{soak_seconds:g}s at {soak_rate:.1f}/s, {step_seconds:g}s capacity steps, {rounds} CPU rounds, Python "
          f"{sys.version.split()[0]}, {os.cpu_count()} CPUs", flush=True)
    if no_shim:
        print(f"many-address stampede skipped: {no_shim}", flush=True)
    available = sorted(os.sched_getaffinity(0))
    cores: tuple[int, int] | None = (available[0], available[1]) if len(available) >= 2 else None
    if cores is not None:
        # The server inherits the starting thread's affinity; the client moves to the other core after.
        os.sched_setaffinity(0, {cores[0]})
    tmp = Path(tempfile.mkdtemp(prefix="machineid-fleet-"))
    cleanup = [tmp]
    # Joins are limited per address (50 a second): the set-up joins thousands from this one, and the join phase
    # measures CPU per join, not the limit.
    server = bi.ServerProc(tmp / "data", bi.CLUSTER_NAME, extra_args=("--join-rate-per-source", "100000"),
                           log_path=tmp / "server.log", workers=1)
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
        with server.admin() as client:
            for n in range(NODES):
                client.upsert(Node(metadata=Metadata(name=f"node-{n:02d}"), spec=NodeSpec(addr=f"10.0.0.{n + 1}:22")))
        pin_text = certs.ca_pin(admin.ca_certs[0])
        # The agents' data and destination dirs on tmpfs where there is one: each cycle writes and fsyncs a dozen
        # files, whose kernel time on a disk would make the client's core, not the server, the limit.
        shm = Path("/dev/shm")
        agents_dir = Path(tempfile.mkdtemp(prefix="machineid-fleet-agents-", dir=shm if shm.is_dir() else tmp))
        cleanup.append(agents_dir)
        agent_list = [make_agent(server.address, pin_text, agents_dir / str(i), ident)
                      for i, ident in enumerate(join_fleet(admin, agents, all_keys))]
        fleet = Fleet(server.address, agent_list, all_keys)
        shape = bi.shape_from(renewing[0])
        authority = bi.bench_authority()
        print(f"setup: {agents} bots made and joined for the fleet, {NODES} nodes, in "
              f"{time.perf_counter() - setup:.0f}s (server CPU {server.cpu_seconds() - setup_cpu:.0f}s; untimed)",
              flush=True)

        # 1. CPU per operation. Warm-up first (untimed): code paths, SQLite pages, connections.
        cpu_round(admin, authority, shape, keys, renewing, fleet, cpu_joins // 4, 0.5, "warm")
        cpu: list[CpuRound] = []
        for r in range(1, rounds + 1):
            rnd = cpu_round(admin, authority, shape, keys, renewing, fleet, cpu_joins, cpu_seconds, f"r{r}")
            cpu.append(rnd)
            print(f"cpu round {r}: raw {rnd.raw_ms:.3f} ms/issuance | joins {rnd.joins.rate:.0f}/s, server "
                  f"{rnd.join_ms:.2f} ms/join ({rnd.joins.cpu_note()}) | bare renewals {rnd.renewals.rate:.0f}/s, "
                  f"server {rnd.renew_ms:.2f} ms ({rnd.renewals.cpu_note()})", flush=True)
            for m in ("three", "one"):
                c = rnd.cycles[m]
                print(f"  cycles ({m}) {c.rate:.0f}/s, server {rnd.cycle_ms(m):.2f} ms/cycle, client "
                      f"{rnd.cycle_client_ms(m):.2f} ms ({c.cpu_note()})", flush=True)
        raw_ms = statistics.median(r.raw_ms for r in cpu)
        join_ms = statistics.median(r.join_ms for r in cpu)
        join_client_ms = statistics.median(ms(r.joins.client_cpu, r.joins.count) for r in cpu)
        cycle_ms = {m: statistics.median(r.cycle_ms(m) for r in cpu) for m in MODES}
        cycle_client_ms = {m: statistics.median(r.cycle_client_ms(m) for r in cpu) for m in MODES}
        cycle_rate = {m: statistics.median(r.renewals.rate if m == "bare" else r.cycles[m].rate for r in cpu)
                      for m in MODES}
        ratio_3_1 = statistics.median(r.cycle_ms("three") / r.cycle_ms("one") for r in cpu)
        fleet.mode = mode

        # 2. Soak at the cycle rate of the whole fleet.
        soak: OpenLoop | None = None
        next_bot = 0
        if "soak" not in args.skip:
            soak = open_loop(fleet, meter, soak_rate, soak_seconds, 0)
            print(f"soak: {soak.line(cores)}", flush=True)
            for err in sorted(set(soak.errors))[:5]:
                print(f"  error: {err}", flush=True)
            next_bot = soak.planned

        # 3. Stampedes: every bot of the pool runs one cycle, within --spread seconds; from many addresses, then one.
        stampedes: list[tuple[str, Stampede]] = []
        for sources in ([args.sources] if args.sources and not no_shim else []) + [1]:
            label = f"{sources} addresses" if sources > 1 else "one address"
            if sources > 1:
                os.environ[SOURCES_ENV] = str(sources)
            try:
                st = stampede(fleet, meter, server, agents, args.spread, give_up=120.0)
            finally:
                os.environ.pop(SOURCES_ENV, None)
            stampedes.append((label, st))
            print(f"stampede from {label}: {agents} agents arriving within {args.spread:g}s, drained in "
                  f"{st.drain:.1f}s, {st.transport_errors} transport errors ({st.retried} agents retried), "
                  f"{len(st.failures)} failed; p50 {percentile(st.latencies, 50):.2f}s p99 "
                  f"{percentile(st.latencies, 99):.2f}s from arrival | {st.usage.note(cores)}", flush=True)
            for err in st.failures[:5]:
                print(f"  failure: {err}", flush=True)

        # 4. Capacity: the largest cycle rate with p99 < 50 ms and no errors.
        best: OpenLoop | None = None
        steps: list[OpenLoop] = []
        if "capacity" not in args.skip:
            estimate = 1000 / cycle_ms[mode]
            print(f"capacity search: {step_seconds:g}s steps from 1 / server CPU per cycle = {estimate:.0f}/s",
                  flush=True)
            best, steps = capacity_search(fleet, meter, estimate, step_seconds, next_bot, cores)
            next_bot += sum(st.planned for st in steps)

        # 5. Worker processes side by side, each count on every core.
        compared: list[WorkersRun] = []
        if worker_counts:
            print(f"workers: {', '.join(map(str, worker_counts))} worker process(es), server and clients on CPUs "
                  f"{','.join(map(str, available))}", flush=True)
            compared = workers_phase(server, fleet, meter, worker_counts, available, cpu_seconds * 2, step_seconds,
                                     next_bot)
        total = time.perf_counter() - t_start

        # ---- the table
        def row(name: str, value: str, ref: str = "") -> None:
            print(f"  {name:<46} {value:<36} {ref}")

        def verdict(ok: bool) -> str:
            return "PASS" if ok else "FAIL"

        where = f"server on CPU {cores[0]}, clients on CPU {cores[1]}" if cores else "unpinned"
        print()
        print(f"results ({where}; CPU rounds: median of {rounds}; soak, stampedes and capacity in mode {mode}):")
        row("raw signing floor (1 thread)", f"{raw_ms:.3f} ms CPU per issuance", "SSH user + X.509 client cert")
        row("join: server CPU", f"{join_ms:.2f} ms per join", f"{join_ms / raw_ms:.1f}x raw (client "
            f"{join_client_ms:.2f} ms)")
        for m, what in (("bare", "bare renewal (RenewCerts only)"), ("three", "agent cycle, 3 connections (before)"),
                        ("one", "agent cycle, 1 connection (AgentCycle)")):
            row(f"{what}: server CPU", f"{cycle_ms[m]:.2f} ms ({cycle_rate[m]:.0f}/s closed loop)",
                f"{cycle_ms[m] / raw_ms:.1f}x raw (client {cycle_client_ms[m]:.2f} ms)")
        row("server CPU per cycle, 3 connections / 1", f"{ratio_3_1:.2f}x", "median of the per-round ratios")
        if soak is not None:
            row(f"soak {soak_rate:.1f}/s x {soak_seconds:g}s: cluster calls p50 / p99",
                f"{1000 * percentile(soak.cluster, 50):.1f} / {1000 * soak.p99:.1f} ms",
                f"p99 < 50 ms  {verdict(soak.p99 < P99_TARGET)}")
            row("soak: whole cycle p50 / p99 (from planned start)",
                f"{1000 * soak.p50:.1f} / {1000 * percentile(soak.latencies, 99):.1f} ms")
            row("soak: errors", f"{soak.failures} of {soak.planned}", f"0  {verdict(soak.failures == 0)}")
            row("soak: CPU", f"server {ms(soak.usage.server_cpu, len(soak.latencies)):.2f} ms per cycle",
                f"server {100 * soak.usage.share(soak.usage.server_cpu):.0f}%, client "
                f"{100 * soak.usage.share(soak.usage.client_cpu):.0f}% of a core")
        for label, st in stampedes:
            row(f"stampede ({label}): {agents} within {args.spread:g}s", f"drained in {st.drain:.1f}s",
                f"all succeed  {verdict(not st.failures and len(st.latencies) == agents)}")
            row("  errors before retry success", f"{st.transport_errors} ({st.retried} agents retried)")
            row("  time to success p50 / p99 / max", f"{percentile(st.latencies, 50):.2f} / "
                f"{percentile(st.latencies, 99):.2f} / {max(st.latencies, default=float('nan')):.2f} s")
            peak = "phase peak" if st.peak_is_phase else "lifetime peak"
            row("  peak server memory (VmHWM)", f"{st.peak_kib / 1024:.0f} MiB ({peak})",
                f"RSS before {st.rss_before_kib / 1024:.0f} MiB")
            row("  CPU", f"server {100 * st.usage.share(st.usage.server_cpu):.0f}%, client "
                f"{100 * st.usage.share(st.usage.client_cpu):.0f}% of a core")
        if best is not None:
            row("max cycle rate, cluster calls p99 < 50 ms", f"{best.rate:.0f}/s (p99 {1000 * best.p99:.1f} ms)",
                f"{best.rate * cycle_ms[mode] / 10:.0f}% of one core at phase-1 CPU per cycle")
            row("bots per server at a 20-minute interval", f"{best.rate * INTERVAL:,.0f}",
                f"{best.rate * INTERVAL / FLEET:.1f}x the 100,000-bot fleet")
        elif "capacity" not in args.skip:
            row("max cycle rate with p99 < 50 ms", "none of the steps passed")
        if compared:
            print()
            print(f"worker processes side by side (mode {mode}; the server's processes and the clients on CPUs "
                  f"{','.join(map(str, available))}; server CPU counts every process of it):")
            row("", "  ".join(f"{r.workers} worker(s)".ljust(22) for r in compared))
            row(f"closed loop, {COMPARE_THREADS} threads: cycles/s",
                "  ".join(f"{r.closed.rate:.0f}/s".ljust(22) for r in compared))
            row("  server CPU per cycle", "  ".join(f"{ms(r.closed.server_cpu, r.closed.count):.2f} ms".ljust(22)
                                                    for r in compared))
            row("  server / client CPU, cores busy", "  ".join(
                (f"{100 * r.closed_usage.share(r.closed_usage.server_cpu):.0f}% / "
                 f"{100 * r.closed_usage.share(r.closed_usage.client_cpu):.0f}%, "
                 f"{100 * sum(r.closed_usage.core_busy.get(c, 0) for c in available):.0f}%").ljust(22)
                for r in compared))
            row("max cycle rate, cluster calls p99 < 50 ms", "  ".join(
                (f"{r.best.rate:.0f}/s (p99 {1000 * r.best.p99:.0f} ms)" if r.best else "none").ljust(22)
                for r in compared))
            row("bots per server at a 20-minute interval", "  ".join(
                (f"{r.best.rate * INTERVAL:,.0f}" if r.best else "0").ljust(22) for r in compared))
            if len(compared) >= 2 and compared[0].closed.rate > 0:
                row(f"closed-loop throughput, {compared[-1].workers} workers / {compared[0].workers}",
                    f"{compared[-1].closed.rate / compared[0].closed.rate:.2f}x")
        loops = [soak] if soak is not None else []
        limited = [f"{s.rate:.0f}/s" for s in [*loops, *steps] if s.usage.client_saturated(cores)]
        limited += [f"the stampede from {label}" for label, st in stampedes if st.usage.client_saturated(cores)]
        if limited:
            print(f"  note: the client's core was >= {100 * SATURATED:.0f}% busy at {', '.join(limited)}: there, "
                  "latency includes client queueing and the server was not necessarily the limit")
        phases = [(f"{s.rate:.0f}/s", s.usage) for s in [*loops, *steps]]
        phases += [(f"the stampede from {label}", st.usage) for label, st in stampedes]
        if busy := [f"{name} {100 * u.share(u.others_cpu):.0f}%" for name, u in phases
                    if u.share(u.others_cpu) >= OTHER_LOAD]:
            print(f"  note: other processes used a share of a core (on either core) at {', '.join(busy)}: there "
                  "the server or the client shared its core and latencies are inflated")
        if fleet.overlaps:
            print(f"  note: {fleet.overlaps} cycles waited for the same bot's previous one (pool too small)")
        kept = f"; data dir and server log kept in {tmp}" if args.keep else ""
        print(f"(total runtime {total:.0f}s{kept})")
        return 1 if any(st.failures or len(st.latencies) < agents for _, st in stampedes) else 0
    finally:
        server.stop()
        for path in cleanup if not args.keep else cleanup[1:]:
            shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
