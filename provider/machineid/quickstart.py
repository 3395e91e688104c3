"""The main job: the whole Machine ID guide on one machine, in one command (`scripts/quickstart`).

1. an embedded cluster (SQLite under the quickstart dir), started in the background and reused;
2. `pulumi up` of examples/quickstart with the real engine (or, with --terraform, `tofu apply` of
   examples/terraform with the installed provider): a role and a bot, with the rendered agent config;
3. a local OpenSSH node on a loopback port, trusting the cluster's user CA, with a host certificate;
4. the bot agent, started from the rendered config, writing certificates to the destination directory;
5. `ssh -F DEST/ssh_config LOGIN@node1.CLUSTER` running a command.
"""

from __future__ import annotations

import argparse
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from machineid.api.identity import write_private
from machineid.cluster.process import MACHINEID, ServerProcess

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


def run_sshd_node(data_dir: str | Path, node_dir: Path, name: str, labels: str, *, prefix: str = "",
                  detach: bool = False) -> tuple[subprocess.Popen[bytes], int]:
    """Register a node with `ctl nodes add` and run a real sshd for it on a loopback port: host key and certificate
    from the cluster, TrustedUserCAKeys from `auth export --type=user`. Returns the process and the port."""
    node_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host_key, config = node_dir / f"{prefix}host_key", node_dir / f"{prefix}sshd_config"
    ctl = [MACHINEID, "ctl", "--data-dir", str(data_dir)]
    # --force: a re-run of the quickstart registers its node again, on a new port
    subprocess.run([*ctl, "nodes", "add", name, "--addr", f"127.0.0.1:{port}", "--labels", labels,
                    "--out", str(host_key), "--force"], check=True, capture_output=True)
    user_ca = subprocess.run([*ctl, "auth", "export", "--type=user"], check=True, capture_output=True, text=True)
    (node_dir / "user_ca.pub").write_text(user_ca.stdout)
    from machineid.cli.labels import parse_labels
    from machineid.cli.node_cmd import sshd_config_lines

    # The node enforces its labels itself (machineid node principals); sshd wants that command root-owned, so a
    # quickstart run by another user gets the login check only.
    lines = sshd_config_lines(host_key, parse_labels(labels), str(node_dir / "user_ca.pub"), MACHINEID, "root")
    if os.geteuid() != 0:
        lines = [ln for ln in lines if not ln.startswith("AuthorizedPrincipalsCommand")]
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", *lines, "AuthorizedKeysFile none", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no", f"PidFile {node_dir / (prefix + 'sshd.pid')}",
        "LogLevel VERBOSE", "",
    ]))
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)
    log_path = node_dir / f"{prefix}sshd.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([shutil.which("sshd") or "/usr/sbin/sshd", "-f", str(config), "-D", "-e"],
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=detach)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proc.poll() is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not start:\n{log_path.read_text()}")


def start_node(base: Path, data_dir: str, name: str = "node1") -> int:
    """The quickstart's node, restarted on every run."""
    node_dir = base / "node"
    pid_file = node_dir / "sshd.pid"
    if _alive(pid_file):
        os.kill(int(pid_file.read_text()), signal.SIGTERM)
        time.sleep(0.2)
    try:
        return run_sshd_node(data_dir, node_dir, name, "env=quickstart", detach=True)[1]
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

    say("3/5 a local OpenSSH node (ctl nodes add, sshd on a loopback port)")
    port = start_node(base, info["data_dir"])
    print(f"node1.{info['cluster_name']} listens on 127.0.0.1:{port}")

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
