"""The SQLite store under several worker processes (`server start --workers N`): write transactions that wait on
an exclusive flock before `BEGIN IMMEDIATE` (what SQLiteBackend does) against SQLite's own busy wait alone.

Each of P processes runs write transactions shaped like a renewal's for S seconds: a read, some Python work inside
the transaction (--inside ms), a conditional update of a shared row, then work outside it (--outside ms). SQLite's
busy handler sleeps 1, 2, 5, 10 ms... between tries, so a writer that finds the database busy waits longer than the
holder needs; a flock waiter wakes when the holder lets go. Prints transactions per second and the latency of a
transaction (waiting included) for both, each round alternating, and the medians' ratios.

    "$(scripts/setup)/python" benchmarks/bench_store_workers.py [--processes P] [--seconds S] [--rounds R]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import tempfile
import time
from pathlib import Path

from machineid.cluster.store import sqlite


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def writer(path: str, flock: bool, seconds: float, inside: float, outside: float,
           out: mp.Queue) -> None:  # type: ignore[type-arg]
    if not flock:  # SQLite's busy wait alone (this process only)
        sqlite.fcntl.flock = lambda fd, op: None  # type: ignore[assignment]
    backend = sqlite.SQLiteBackend(path)
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        with backend.transaction():
            backend.get("bench", "row")
            spin(inside)
            backend.update("bench", "row", {"n": n})
        latencies.append(time.perf_counter() - t0)
        n += 1
        spin(outside)
    backend.close()
    out.put(latencies)


def run(flock: bool, processes: int, seconds: float, inside: float, outside: float) -> tuple[float, float, float]:
    """Transactions per second, p50 and p99 latency (s) over all processes."""
    with tempfile.TemporaryDirectory(prefix="machineid-store-") as d:
        path = str(Path(d) / "cluster.db")
        setup = sqlite.SQLiteBackend(path)
        setup.create("bench", "row", {"n": 0})
        setup.close()
        ctx = mp.get_context("spawn")  # fresh processes, as the server's workers are
        out: mp.Queue = ctx.Queue()  # type: ignore[type-arg]
        procs = [ctx.Process(target=writer, args=(path, flock, seconds, inside, outside, out))
                 for _ in range(processes)]
        for p in procs:
            p.start()
        values = sorted(v for _ in procs for v in out.get())
        for p in procs:
            p.join()
    return (len(values) / seconds, values[len(values) // 2], values[min(len(values) - 1, int(len(values) * 0.99))])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--inside", type=float, default=1.5, help="ms of work inside each transaction (default 1.5)")
    ap.add_argument("--outside", type=float, default=2.0, help="ms of work between transactions (default 2)")
    args = ap.parse_args()
    started = time.perf_counter()
    results: dict[bool, list[tuple[float, float, float]]] = {True: [], False: []}
    for r in range(args.rounds):
        for flock in (True, False):
            rate, p50, p99 = run(flock, args.processes, args.seconds, args.inside / 1000, args.outside / 1000)
            results[flock].append((rate, p50, p99))
            print(f"round {r + 1} {'flock + BEGIN IMMEDIATE' if flock else 'busy wait only':<24} {rate:6.0f} tx/s  "
                  f"p50 {1000 * p50:5.2f} ms  p99 {1000 * p99:5.2f} ms", flush=True)

    def med(flock: bool, i: int) -> float:
        return statistics.median(x[i] for x in results[flock])

    print(f"\n{args.processes} processes, medians of {args.rounds} rounds:")
    print(f"  throughput, flock / busy wait   {med(True, 0) / med(False, 0):.2f}x "
          f"({med(True, 0):.0f} vs {med(False, 0):.0f} tx/s)")
    print(f"  p50 latency, busy wait / flock  {med(False, 1) / med(True, 1):.2f}x "
          f"({1000 * med(True, 1):.2f} vs {1000 * med(False, 1):.2f} ms)")
    print(f"  p99 latency, busy wait / flock  {med(False, 2) / med(True, 2):.2f}x "
          f"({1000 * med(True, 2):.2f} vs {1000 * med(False, 2):.2f} ms)")
    print(f"(total runtime {time.perf_counter() - started:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
