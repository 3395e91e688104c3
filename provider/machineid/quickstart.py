"""The main job: the whole Machine ID guide on one machine, in one command (`scripts/quickstart`).

1. an embedded cluster (SQLite under the quickstart dir), started in the background and reused;
2. `pulumi up` of examples/quickstart with the real engine (or, with --terraform, `tofu apply` of
   examples/terraform with the installed provider): a role and a bot, with the rendered agent config;
3. a local OpenSSH node on a loopback port, set up by `machineid node setup` (as root: the principals helper, run
   as nobody, enforces the roles' node_labels; otherwise the node checks the login only, and says so);
4. the bot agent, started from the rendered config, writing certificates to the destination directory;
5. `ssh -F DEST/ssh_config LOGIN@node1.CLUSTER` running a command.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from machineid.api.identity import write_private
from machineid.cluster.process import MACHINEID, ServerProcess
from machineid.node.layout import Layout

ROOT = Path(__file__).resolve().parents[2]
DEMO_USER = "machineid-demo"


def say(text: str) -> None:
    print(f"\n== {text}", flush=True)


def _alive(pid_file: Path) -> bool:
    try:
        os.kill(int(pid_file.read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def start_cluster(base: Path, listen: str) -> dict[str, str]:
    data, pid_file = base / "cluster", base / "server.pid"
    if _alive(pid_file) and (data / "server.json").exists():
        print(f"reusing the cluster already running (pid {pid_file.read_text().strip()})")
    else:
        server = ServerProcess(data, "quickstart.local", log_path=base / "server.log")
        try:
            server.start(listen, detach=True)  # it outlives this command
        except RuntimeError:
            sys.exit(f"the cluster did not start; see {base / 'server.log'}")
        assert server.proc is not None
        proc = server.proc
        pid_file.write_text(f"{proc.pid}\n")
        print(f"cluster started (pid {proc.pid}, log {base / 'server.log'})")
    info: dict[str, str] = json.loads((data / "server.json").read_text())
    info["data_dir"] = str(data)
    return info


def demo_login(user: str = DEMO_USER) -> str:
    """The OS account the bot logs in as: a dedicated one when root (unlocked, as sshd without PAM needs)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(user)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", user], check=True)
    subprocess.run(["usermod", "-p", "*", user], check=True)
    return user


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


NODE_ROOTS = Path("/var/lib/machineid-quickstart")
ENFORCEMENT_NEEDS_ROOT = (
    "node-side enforcement needs root: sshd runs the principals helper (which checks the roles' node_labels at "
    "login) only from root-owned files, and `machineid node setup` writes them as root. Running as {user}, the "
    "node checks the login only: an AuthorizedPrincipalsFile with machineid:{user} lets in any certificate from "
    "this cluster for {user}, whatever its roles' node_labels say. Run the quickstart as root to have the node "
    "enforce them.")


def node_root_for(base: Path) -> Path:
    """Where the quickstart's node keeps its files. As root, a root-owned 0755 directory chain sshd accepts, and
    that `nobody` (the helper's user) can enter: not under root's 0700 home nor a temporary directory anyone may
    write. Otherwise under the quickstart directory."""
    if os.geteuid() != 0:
        return base / "node"
    import hashlib

    return NODE_ROOTS / hashlib.sha256(str(base).encode()).hexdigest()[:12]


def main_sshd_config(layout: Layout, port: int, login: str, host_key: Path, user_ca: Path) -> tuple[str, str]:
    """The node's own sshd_config (what a distribution ships, on a loopback port) and, when not root, what it does
    instead of enforcing node labels (said, never silent). As root it includes the drop-in `node setup` writes."""
    common = [f"Port {port}", "ListenAddress 127.0.0.1", "AuthorizedKeysFile none", "PasswordAuthentication no",
              "KbdInteractiveAuthentication no", "UsePAM no", f"PidFile {layout.at('run/sshd.pid')}",
              "LogLevel VERBOSE"]
    if os.geteuid() == 0:
        return "\n".join([f"Include {layout.sshd_dropin_dir}/*.conf", *common, ""]), ""
    from machineid.node.layout import PRINCIPAL_PREFIX

    principals = layout.at("principals")
    principals.write_text(f"{PRINCIPAL_PREFIX}{login}\n")
    notice = ENFORCEMENT_NEEDS_ROOT.format(user=login) + "".join(f"\n{p}" for p in _unsafe_for_sshd(principals))
    return "\n".join([f"HostKey {host_key}", f"HostCertificate {host_key}-cert.pub", f"TrustedUserCAKeys {user_ca}",
                      f"AuthorizedPrincipalsFile {principals}", *common, ""]), notice


def _unsafe_for_sshd(path: Path) -> list[str]:
    """sshd's rule for a user's AuthorizedPrincipalsFile (StrictModes): it and each directory up to the user's
    home owned by the user or root and not writable by group or others; otherwise it refuses every login."""
    home, out = Path.home().resolve(), []
    for p in [path.resolve(), *path.resolve().parents]:
        st = p.stat()
        if st.st_uid not in (0, os.geteuid()) or st.st_mode & 0o022:
            out.append(f"sshd will refuse {path} and every login: {p} is not yours or root's, or group/others may "
                       "write it; set MACHINEID_QUICKSTART_DIR to a directory under your home")
            break
        if p == home:
            break
    return out


def run_sshd_node(data_dir: str | Path, node_root: Path, name: str, labels: str, *, login: str = "",
                  detach: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """Register a node with `ctl nodes add`, set it up with the `machineid node setup` command that prints (as
    root; its static labels mode, the helper run as nobody), and run a real sshd for it on a loopback port, its
    log in NODE_ROOT/sshd.log. Returns the process and the port."""
    layout = Layout(node_root)
    admin = node_root / "from-admin"  # what `nodes add` wrote on the admin's machine, copied to the node
    admin.mkdir(parents=True, exist_ok=True)
    layout.at("run").mkdir(parents=True, exist_ok=True)
    layout.sshd_config.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    ctl = [MACHINEID, "ctl", "--data-dir", str(data_dir)]
    # --force: a re-run of the quickstart registers its node again, on a new port
    added = subprocess.run([*ctl, "nodes", "add", name, "--addr", f"127.0.0.1:{port}", "--labels", labels,
                            "--out", str(admin / "host_key"), "--force", "--format", "json"],
                           check=True, capture_output=True, text=True)
    out = json.loads(added.stdout)
    config, notice = main_sshd_config(layout, port, login or pwd.getpwuid(os.geteuid()).pw_name,
                                      Path(out["host_key"]), Path(out["user_ca"]))
    layout.sshd_config.write_text(config)
    if notice:
        print(f"note: {notice}", flush=True)
    else:
        setup = [MACHINEID, *shlex.split(out["setup_command"])[1:], "--root", str(node_root), "--no-reload"]
        done = subprocess.run(setup, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"machineid node setup failed:\n{done.stdout}{done.stderr}")
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    log_path = node_root / "sshd.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-f", str(layout.sshd_config), "-D", "-e"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=detach)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not start:\n{log_path.read_text()}")


def start_node(base: Path, data_dir: str, login: str, name: str = "node1") -> tuple[int, Path]:
    """The quickstart's node, restarted on every run. Returns its port and its root."""
    root = node_root_for(base)
    pid_file = Layout(root).at("run/sshd.pid")
    if _alive(pid_file):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        time.sleep(0.2)
    if os.geteuid() == 0:
        NODE_ROOTS.mkdir(mode=0o755, exist_ok=True)
        root.mkdir(mode=0o755, exist_ok=True)
    try:
        return run_sshd_node(data_dir, root, name, "env=quickstart", login=login, detach=True)[1], root
    except RuntimeError as e:
        sys.exit(str(e))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, default=Path.home() / ".cache" / "machineid" / "quickstart")
    parser.add_argument("--listen", default="127.0.0.1:3025")
    parser.add_argument("--tools-bin", type=Path, required=True)
    parser.add_argument("--terraform", action="store_true", help="OpenTofu and examples/terraform, not Pulumi")
    args = parser.parse_args(argv)
    base: Path = args.dir.resolve()
    base.mkdir(parents=True, exist_ok=True)

    say("1/5 the cluster")
    info = start_cluster(base, args.listen)
    identity = str(Path(info["data_dir"]) / "admin.identity")

    login = demo_login()
    dest, bot_data = base / "machine-id", base / "bot-data"
    shutil.rmtree(bot_data, ignore_errors=True)  # a fresh join each run: the bot gets a new token below
    env = {"MACHINEID_AUTH_SERVER": info["address"], "MACHINEID_IDENTITY": identity}
    if args.terraform:
        say("2/5 tofu apply of examples/terraform (OpenTofu, the provider from `machineid terraform install`)")
        agent_config, start_command, where = _terraform_up(args.tools_bin, base, env, login, dest, bot_data)
    else:
        say("2/5 pulumi up of examples/quickstart (the real Pulumi engine)")
        agent_config, start_command, where = _pulumi_up(args.tools_bin, base, env, login, dest, bot_data)
    config_path = base / "bot.yaml"
    write_private(config_path, agent_config)
    print(f"the rendered agent config is in {config_path} (0600: it holds the join token)")

    say("3/5 a local OpenSSH node (ctl nodes add, machineid node setup, sshd on a loopback port)")
    port, node_root = start_node(base, info["data_dir"], login)
    print(f"node1.{info['cluster_name']} listens on 127.0.0.1:{port} (its files under {node_root})")
    enforcement = ("the principals helper (run as nobody) enforces the roles' node_labels" if os.geteuid() == 0 else
                   "the login only (not root: see the note above)")

    say("4/5 the bot agent, from the rendered config")
    subprocess.run([MACHINEID, "bot", "start", "--config", str(config_path), "--oneshot", "--log-format", "text"],
                   check=True)
    print(f"certificates written to {dest}: {', '.join(sorted(p.name for p in dest.iterdir()))}")

    say(f"5/5 ssh -F {dest}/ssh_config {login}@node1.{info['cluster_name']}")
    result = subprocess.run(["ssh", "-F", str(dest / "ssh_config"), "-o", "BatchMode=yes",
                             f"{login}@node1.{info['cluster_name']}", "echo hello from $(hostname) as $(whoami)"],
                            capture_output=True, text=True, timeout=60)
    sys.stdout.write(result.stdout)
    if result.returncode != 0:
        sys.stderr.write(result.stderr)
        return 1
    print(f"""
Done. What you have now:
  cluster          {info['address']} (data {info['data_dir']}); stop it: kill $(cat {base / 'server.pid'})
  admin CLI        {MACHINEID} ctl --data-dir {info['data_dir']} get bots
  {where}
  agent config     {config_path}
  keep renewing    {MACHINEID} bot start --config {config_path}
  systemd unit     the output systemd unit runs: {start_command}
  ssh              ssh -F {dest}/ssh_config {login}@node1.{info['cluster_name']}
  node checks      {enforcement}
  node             {node_root} (sshd_config, the drop-in and helper `machineid node setup` wrote, sshd.log); stop
                   it: kill $(cat {Layout(node_root).at('run/sshd.pid')})
""")
    return 0


def _pulumi_up(tools: Path, base: Path, env: dict[str, str], login: str, dest: Path,
               bot_data: Path) -> tuple[str, str, str]:
    from pulumi import automation as auto

    from machineid.pulumi.engine import Engine, outputs_plain

    engine = Engine(tools, base / "pulumi", env)
    stack = engine.python_stack(ROOT / "examples" / "quickstart", "quickstart", {
        "login": login, "destinationDir": str(dest), "dataDir": str(bot_data)})
    stack.refresh(color="never")  # the cluster may be new while the state is not
    # Each run starts the agent afresh, so the bot needs a new single-use join token: rotate it from code.
    previous = stack.get_all_config().get("machineid-quickstart:tokenRotation")
    stack.set_config("tokenRotation", auto.ConfigValue(str(int(previous.value) + 1 if previous else 0)))
    up = stack.up(color="never", on_output=print)
    out = outputs_plain(up.outputs)
    return (str(out["agentConfig"]), str(out["startCommand"]),
            f"Pulumi stack     examples/quickstart, stack \"quickstart\" (state under {base / 'pulumi'}, "
            f"its passphrase in {base / 'pulumi' / 'passphrase'})")


def _terraform_up(tools: Path, base: Path, env: dict[str, str], login: str, dest: Path,
                  bot_data: Path) -> tuple[str, str, str]:
    from machineid.terraform.runner import Workspace

    work = base / "terraform"
    ws = Workspace.create(tools / "tofu", work, base / "tofu-home", env)
    ws.write((ROOT / "examples" / "terraform" / "main.tf").read_text())
    # Each run starts the agent afresh, so the bot needs a new single-use join token: rotate it from code.
    counter = work / "token_rotation"
    rotation = int(counter.read_text()) + 1 if counter.exists() else 0
    counter.write_text(f"{rotation}\n")
    ws.init()
    applied = ws.apply("-var", f"login={login}", "-var", f"destination_dir={dest}", "-var", f"data_dir={bot_data}",
                       "-var", f"token_rotation={rotation}")
    print(applied.stdout)
    out = ws.outputs()
    return (str(out["agent_config"]), str(out["start_command"]),
            f"OpenTofu         examples/terraform in {work} (tofu at {tools / 'tofu'}; HOME={base / 'tofu-home'} "
            "holds the installed provider)")


if __name__ == "__main__":
    sys.exit(main())
