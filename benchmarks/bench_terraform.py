"""OpenTofu overhead per resource: our Python provider against a minimal Go provider (terraform-plugin-framework).

One run measures, with the same OpenTofu CLI (1.12.6, built by scripts/install-tools), a configuration of N resources
(default 100) for two kinds:

- ours: N `machineid_role` resources (distinct names, a description and `allow { logins = [two logins] }`), served by
  `terraform-provider-machineid` against a real `machineid server start` process that this script starts;
- go: N `gobench_role` resources with the same arguments and the same schema shape (id; name forcing replacement;
  optional+computed description and labels; SINGLE blocks allow/deny with logins, node_labels and a LIST block
  rules; a SINGLE block options with max_session_ttl defaulting to "30h"), served by a minimal provider written with
  github.com/hashicorp/terraform-plugin-framework@v1.19.0 whose CRUD only copies the plan into the state
  (benchmarks/tfprovider), built here with `go build` into ~/.cache/machineid/bench (rebuilt only when its source
  changes).

Both providers sit in the private implied local mirror of the run's HOME (~/.terraform.d/plugins, unpacked layout),
as `machineid terraform install` puts ours for users, so a plain `tofu init` installs either with no CLI
configuration and no dev_overrides. Each round uses a fresh directory per kind and runs, back to back:

1. `tofu init` (untimed);
2. `tofu apply -auto-approve` (timed: creates the N resources; `tofu state list` then checks there are N);
3. `tofu plan -detailed-exitcode` (timed: must exit 0, so a provider that reports a perpetual diff fails the run);
4. `tofu destroy -auto-approve` (untimed).

The order of the kinds alternates between rounds. An untimed warm-up (5 resources each) first fills the OS file
cache; it runs with TF_LOG=trace, and its logs tell how many provider processes each command starts (a number that
does not depend on N) and, per launch as the CLI sees it, the time from exec to the handshake and from the Shutdown
RPC (`GRPCProvider.v6: Close`) until the process has exited: go-plugin waits for that exit.

Then the per-launch plugin start-up of both: the installed plugin executable is started as the CLI starts it
(TF_PLUGIN_MAGIC_COOKIE, PLUGIN_PROTOCOL_VERSIONS=6, PLUGIN_MIN_PORT/PLUGIN_MAX_PORT, and PLUGIN_CLIENT_CERT set to
a fresh self-signed P-521 certificate like the one go-plugin's AutoMTLS makes for every launch) and timed from the
exec until its handshake line is on stdout; then it gets SIGTERM. Median of --launches (default 10) launches each,
alternating, after one untimed launch each.

Milliseconds per resource are wall time / N (so they include each command's fixed cost: CLI start, provider starts,
schema fetch, state write). Every round also runs the same commands with one resource per kind, for the marginal
cost per resource, (wall(N) - wall(1)) / (N - 1), which leaves the fixed cost out. At the end it prints the medians
over rounds, the ratios ours/go for apply and plan (target <= 1.5), the start-up medians, the launches per command,
the share of the wall-time difference that the per-launch costs explain (launches x (handshake + exit wait) from the
trace logs, ours minus go) with the per-resource rest, then (for information) the marginal and fixed costs and their
ratios, and a one-line summary.

  "$(scripts/setup)/python" benchmarks/bench_terraform.py [--resources N] [--rounds R] [--launches L] [--check] [--keep]

`--check` exits 3 when a median ratio is over the target; `--keep` keeps the temporary directory (workspaces, the
private HOME with the plugin mirror, warm-up logs, server data dir and log). Everything is on loopback and every
command has a timeout.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import gobuild  # benchmarks/gobuild.py (this directory is on sys.path when run as a script)

from machineid.cluster.process import ServerProcess
from machineid.terraform import install
from machineid.terraform.plugin import MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE
from machineid.terraform.runner import Workspace

ROOT = Path(__file__).resolve().parent.parent
TOOLS_BIN = Path(os.environ.get("MACHINEID_TOOLS_DIR", Path.home() / ".cache/machineid/tools")) / "bin"
CACHE = Path.home() / ".cache/machineid/bench"
GO_SRC = ROOT / "benchmarks" / "tfprovider"
GO_HOST, GO_NAMESPACE, GO_TYPE, GO_VERSION = "registry.opentofu.org", "gobench", "gobench", "0.1.0"
TARGET = 1.5
WARMUP_RESOURCES = 5
COMMAND_TIMEOUT = 900.0  # seconds, for any one tofu command
HANDSHAKE_TIMEOUT = 30.0  # seconds, for one plugin launch
KINDS = ("ours", "go")
TYPES = {"ours": "machineid_role", "go": "gobench_role"}
OPS = ("apply", "plan")
# In the CLI's TF_LOG=trace log: go-plugin execs a plugin ("starting plugin"), reads its handshake ("using plugin"),
# and at the end the CLI closes the provider ("GRPCProvider.v6: Close": the Shutdown RPC) and waits for the process to
# exit ("plugin process exited"). The CLI runs one provider process at a time here (one provider per configuration).
LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT[\d:.]+Z) \[\w+\] ?\s*(.*)$")
EVENTS = {"start": "provider: starting plugin:", "handshake": "provider: using plugin:",
          "close": "GRPCProvider.v6: Close", "exited": "provider: plugin process exited:"}
COMMANDS = ("init", "apply", "plan", "destroy")


# ---------------------------------------------------------------- the Go baseline provider


def build_go_provider() -> Path:
    """go build benchmarks/tfprovider into CACHE/bin; returns the plugin binary."""
    return gobuild.build(GO_SRC, f"terraform-provider-{GO_TYPE}")


def install_go_provider(binary: Path, plugins_dir: Path) -> Path:
    """Put the Go plugin into the implied local mirror, unpacked layout, as a copy (init hashes the package)."""
    pkg = plugins_dir / GO_HOST / GO_NAMESPACE / GO_TYPE / GO_VERSION / install.target()
    pkg.mkdir(parents=True, exist_ok=True)
    exe = pkg / f"terraform-provider-{GO_TYPE}_v{GO_VERSION}"
    shutil.copyfile(binary, exe)
    exe.chmod(0o755)
    return exe


# ---------------------------------------------------------------- configurations and runs


def configuration(kind: str, n: int, tag: str) -> str:
    """n resources of one kind, each its own block; tag keeps the names distinct between rounds."""
    if kind == "ours":
        header = 'machineid = { source = "machineid/machineid" }'
    else:
        header = f'gobench = {{ source = "{GO_NAMESPACE}/{GO_TYPE}", version = "{GO_VERSION}" }}'
    parts = [f"terraform {{\n  required_providers {{\n    {header}\n  }}\n}}\n"]
    for i in range(n):
        parts.append(f'resource "{TYPES[kind]}" "role_{i}" {{\n'
                     f'  name        = "bench-{tag}-{i}"\n'
                     f'  description = "benchmark role {i} of {tag}"\n'
                     f'  allow {{\n    logins = ["root", "deploy-{i}"]\n  }}\n'
                     "}\n")
    return "\n".join(parts)


@dataclass
class Round:
    apply: float  # wall seconds
    plan: float


class Bench:
    def __init__(self, workdir: Path, cli: Path, home: Path, env: dict[str, str]) -> None:
        self.workdir = workdir
        self.cli = cli
        self.home = home
        self.env = env

    def version(self) -> str:
        out = Workspace(self.cli, self.workdir, self.home, dict(self.env), timeout=60).run("version").stdout
        return next((line for line in out.splitlines() if line.startswith("OpenTofu")), out.strip())

    def workspace(self, kind: str, tag: str) -> Workspace:
        directory = self.workdir / "work" / f"{kind}-{tag}"
        directory.mkdir(parents=True)
        return Workspace(self.cli, directory, self.home, dict(self.env), timeout=COMMAND_TIMEOUT)

    @staticmethod
    def timed(ws: Workspace, *args: str, kind: str, env: dict[str, str] | None = None,
              ) -> tuple[float, subprocess.CompletedProcess[str]]:
        t0 = time.monotonic()
        proc = ws.run(*args, check=False, env=env)
        wall = time.monotonic() - t0
        if proc.returncode != 0:
            raise SystemExit(f"[{kind}] tofu {' '.join(args)} exited {proc.returncode} after {wall:.1f}s:\n"
                             f"{proc.stdout}\n{proc.stderr}")
        return wall, proc

    def run(self, kind: str, n: int, tag: str, log_dir: Path | None = None) -> Round:
        """init, timed apply and plan, destroy. With log_dir, every command logs at trace level into it."""
        ws = self.workspace(kind, tag)
        ws.write(configuration(kind, n, tag))

        def log(cmd: str) -> dict[str, str] | None:
            if log_dir is None:
                return None
            return {"TF_LOG": "trace", "TF_LOG_PATH": str(log_dir / f"{kind}-{cmd}.log")}

        ws.run("init", "-no-color", env=log("init"))
        try:
            apply, _ = self.timed(ws, "apply", "-auto-approve", "-no-color", kind=kind, env=log("apply"))
            listed = [line for line in ws.run("state", "list").stdout.splitlines()
                      if line.startswith(TYPES[kind] + ".")]
            if len(listed) != n:
                raise SystemExit(f"[{kind}] apply left {len(listed)} {TYPES[kind]} in the state, expected {n}")
            t0 = time.monotonic()
            proc = ws.run("plan", "-detailed-exitcode", "-no-color", check=False, env=log("plan"))
            plan = time.monotonic() - t0
            if proc.returncode != 0:
                what = "a diff (exit 2) on an unchanged configuration" if proc.returncode == 2 else "an error"
                raise SystemExit(f"[{kind}] tofu plan -detailed-exitcode reported {what} after the apply:\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        finally:
            ws.run("destroy", "-auto-approve", "-no-color", env=log("destroy"))
        return Round(apply, plan)


@dataclass
class Launches:
    """What the warm-up's trace logs say about one provider's processes."""

    per_command: dict[str, int]  # command -> provider processes it started
    handshake: list[float]  # seconds from exec to the handshake, as the CLI sees it
    exit_wait: list[float]  # seconds from the Shutdown RPC until the process had exited


def read_launches(log_dir: Path, kind: str) -> Launches:
    per_command: dict[str, int] = {}
    handshake: list[float] = []
    exit_wait: list[float] = []
    for cmd in COMMANDS:
        path = log_dir / f"{kind}-{cmd}.log"
        last: dict[str, float] = {}
        count = 0
        for line in path.read_text(errors="replace").splitlines() if path.exists() else []:
            m = LOG_LINE.match(line)
            event = next((e for e, text in EVENTS.items() if m and m.group(2).startswith(text)), None)
            if m is None or event is None:
                continue
            at = datetime.datetime.fromisoformat(m.group(1)).timestamp()
            last[event] = at
            if event == "start":
                count += 1
            elif event == "handshake" and "start" in last:
                handshake.append(at - last.pop("start"))
            elif event == "exited" and "close" in last:
                exit_wait.append(at - last.pop("close"))
        per_command[cmd] = count
    return Launches(per_command, handshake, exit_wait)


# ---------------------------------------------------------------- plugin start-up


def client_certificate() -> str:
    """A certificate like the one go-plugin's AutoMTLS makes for every plugin it starts (ECDSA P-521), as PEM."""
    from machineid.terraform.plugin import localhost_certificate

    return localhost_certificate("P-521", organization="HashiCorp")[1].decode()


def launch(exe: Path, env: dict[str, str]) -> float:
    """Seconds from exec of the plugin until its handshake line is on stdout; the plugin then gets SIGTERM."""
    full = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "PLUGIN_", "MACHINEID_"))}
    full.update(env)
    full.update({MAGIC_COOKIE_KEY: MAGIC_COOKIE_VALUE, "PLUGIN_PROTOCOL_VERSIONS": "6",
                 "PLUGIN_MIN_PORT": "10000", "PLUGIN_MAX_PORT": "25000", "PLUGIN_CLIENT_CERT": client_certificate()})
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(exe)], env=full, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = _readline(proc, exe, HANDSHAKE_TIMEOUT)
        elapsed = time.perf_counter() - t0
        fields = line.strip().split("|")
        if len(fields) < 5 or fields[0] != "1" or fields[1] != "6":
            raise SystemExit(f"{exe}: unexpected handshake line {line!r}")
        return elapsed
    finally:
        if proc.poll() is None:
            # Ours removes its socket directory on SIGTERM; a Go plugin just exits (leftovers stay in TMPDIR).
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _readline(proc: subprocess.Popen[str], exe: Path, timeout: float) -> str:
    """The plugin's first stdout line, waiting at most timeout seconds for it."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise SystemExit(f"{exe}: no handshake within {timeout:.0f}s")
    line = proc.stdout.readline()  # the plugin writes the whole line at once and flushes
    if not line:
        raise SystemExit(f"{exe}: exited ({proc.wait()}) without a handshake")
    return line


def startup(plugins: dict[str, Path], env: dict[str, str], launches: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {kind: [] for kind in plugins}
    for exe in plugins.values():
        launch(exe, env)  # untimed: file cache
    for i in range(launches):
        for kind in (KINDS if i % 2 == 0 else KINDS[::-1]):
            out[kind].append(launch(plugins[kind], env))
    return out


# ---------------------------------------------------------------- reporting


def ms_per(t: float, n: int) -> float:
    return 1000 * t / n


def verdict(ratio: float) -> str:
    return "ok" if ratio <= TARGET else "FAIL"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--resources", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--launches", type=int, default=10, help="plugin launches per kind for the start-up median")
    ap.add_argument("--check", action="store_true", help="exit 3 when a median ratio is over the target")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = ap.parse_args()
    n = args.resources
    if n < 1 or args.rounds < 1 or args.launches < 1:
        raise SystemExit("--resources, --rounds and --launches must be at least 1")
    started = time.monotonic()
    cli = TOOLS_BIN / "tofu"
    if not cli.exists():
        raise SystemExit(f"{cli} is missing: run scripts/install-tools")
    go_binary = build_go_provider()
    workdir = Path(tempfile.mkdtemp(prefix="bench-terraform-"))
    tmp = workdir / "tmp"  # TMPDIR of the CLI and the plugins: their socket directories stay in here
    tmp.mkdir()
    home = workdir / "home"
    plugins_dir = home / ".terraform.d" / "plugins"
    ours_exe = install.install(plugins_dir).paths[install.HOSTS.index("registry.opentofu.org")]
    plugins = {"ours": ours_exe, "go": install_go_provider(go_binary, plugins_dir)}
    server = ServerProcess(workdir / "server" / "data", "bench.example", log_path=workdir / "server" / "server.log")
    results: dict[str, list[Round]] = {kind: [] for kind in KINDS}
    singles: dict[str, list[Round]] = {kind: [] for kind in KINDS}  # the same commands with 1 resource
    try:
        server.start()
        env = {"MACHINEID_AUTH_SERVER": server.address, "MACHINEID_IDENTITY": str(server.admin_identity_path),
               "TMPDIR": str(tmp)}
        bench = Bench(workdir, cli, home, env)
        version = bench.version()
        print(f"{version} ({cli}); {os.cpu_count()} cores; {n} resources, {args.rounds} rounds; "
              f"server {server.address}", flush=True)
        t0 = time.monotonic()
        log_dir = workdir / "warmup-logs"
        log_dir.mkdir()
        for kind in KINDS:
            bench.run(kind, WARMUP_RESOURCES, "warmup", log_dir)
        launches = {kind: read_launches(log_dir, kind) for kind in KINDS}
        print(f"warm-up ({WARMUP_RESOURCES} resources each, untimed, TF_LOG=trace): {time.monotonic() - t0:.1f}s",
              flush=True)
        for r in range(args.rounds):
            for kind in (KINDS if r % 2 == 0 else KINDS[::-1]):
                res = bench.run(kind, n, f"r{r + 1}")
                results[kind].append(res)
                print(f"round {r + 1} {kind:>4}: apply {res.apply:6.2f}s = {ms_per(res.apply, n):6.1f} ms/res | "
                      f"plan {res.plan:6.2f}s = {ms_per(res.plan, n):6.1f} ms/res", flush=True)
                if n > 1:
                    singles[kind].append(bench.run(kind, 1, f"r{r + 1}s"))
        starts = startup(plugins, env, args.launches)
    finally:
        if server.proc is not None:
            server.stop()
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    med = {kind: {op: statistics.median(getattr(x, op) for x in rounds) for op in OPS}
           for kind, rounds in results.items()}
    start_med = {kind: statistics.median(v) for kind, v in starts.items()}
    print(f"\nmedians over {args.rounds} rounds, {n} resources (wall seconds, ms per resource):")
    for kind in KINDS:
        print(f"  {kind:>4}: apply {med[kind]['apply']:6.2f}s {ms_per(med[kind]['apply'], n):6.1f} ms/res   "
              f"plan {med[kind]['plan']:6.2f}s {ms_per(med[kind]['plan'], n):6.1f} ms/res")
    ratios = {op: med["ours"][op] / med["go"][op] for op in OPS}
    for op in OPS:
        print(f"  ratio ours/go {op:<6} {ratios[op]:5.2f}  target <= {TARGET}  {verdict(ratios[op])}")
    print(f"plugin start-up, exec to handshake line, median of {args.launches} launches: "
          f"ours {1000 * start_med['ours']:.0f} ms (min {1000 * min(starts['ours']):.0f}), "
          f"go {1000 * start_med['go']:.0f} ms (min {1000 * min(starts['go']):.0f})")
    # As the CLI sees each launch (warm-up trace logs): exec to handshake, plus Shutdown until the process exited.
    per_launch: dict[str, float] = {}
    for kind in KINDS:
        got = launches[kind]
        hs = statistics.median(got.handshake) if got.handshake else 0.0
        ex = statistics.median(got.exit_wait) if got.exit_wait else 0.0
        per_launch[kind] = hs + ex
        print(f"  {kind:>4}: provider processes per command: "
              + ", ".join(f"{cmd} {count}" for cmd, count in got.per_command.items())
              + f"; in the CLI's log, median handshake {1000 * hs:.0f} ms and exit after Shutdown {1000 * ex:.0f} ms"
              f" ({len(got.handshake)} launches, TF_LOG=trace)")
    for op in OPS:
        diff = med["ours"][op] - med["go"][op]
        k_ours, k_go = launches["ours"].per_command[op], launches["go"].per_command[op]
        fixed = k_ours * per_launch["ours"] - k_go * per_launch["go"]
        share = f"{100 * fixed / diff:.0f}% of" if diff > 0 else "more than"
        print(f"  {op}: {k_ours} launches x {1000 * per_launch['ours']:.0f} ms (ours) - {k_go} x "
              f"{1000 * per_launch['go']:.0f} ms (go) = {fixed:+.2f}s, {share} the {diff:+.2f}s difference; "
              f"the rest is {1000 * (diff - fixed) / n:+.2f} ms per resource")
    if n > 1:
        # Marginal cost: what each resource beyond the first adds, without the per-command fixed cost (CLI start,
        # provider launches, schema). Informational: the target is judged on wall / N above.
        one = {kind: {op: statistics.median(getattr(x, op) for x in rounds) for op in OPS}
               for kind, rounds in singles.items()}
        marginal = {kind: {op: 1000 * (med[kind][op] - one[kind][op]) / (n - 1) for op in OPS} for kind in KINDS}
        print("marginal ms per resource, (wall(N) - wall(1)) / (N - 1); fixed cost = wall(1):")
        for kind in KINDS:
            print(f"  {kind:>4}: apply {marginal[kind]['apply']:6.2f} (fixed {one[kind]['apply']:.2f}s)   plan "
                  f"{marginal[kind]['plan']:6.2f} (fixed {one[kind]['plan']:.2f}s)")
        print("  marginal ratio ours/go " + "   ".join(
            f"{op} {marginal['ours'][op] / marginal['go'][op]:5.2f}" if marginal["go"][op] > 0 else f"{op} n/a"
            for op in OPS) + "   fixed-cost ratio " + "   ".join(
            f"{op} {one['ours'][op] / one['go'][op]:5.2f}" for op in OPS))
    elapsed = time.monotonic() - started
    print(f"total runtime {elapsed:.0f}s")
    parts = [f"{op} ours {med['ours'][op]:.2f}s ({ms_per(med['ours'][op], n):.1f} ms/res) vs go "
             f"{med['go'][op]:.2f}s ({ms_per(med['go'][op], n):.1f}) x{ratios[op]:.2f} {verdict(ratios[op])}"
             for op in OPS]
    print(f"summary: tofu N={n} rounds={args.rounds} " + "; ".join(parts)
          + f"; start-up ours {1000 * start_med['ours']:.0f} ms vs go {1000 * start_med['go']:.0f} ms, "
          f"{launches['ours'].per_command['plan']} launches per plan; target <= {TARGET}")
    if args.check and max(ratios.values()) > TARGET:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
