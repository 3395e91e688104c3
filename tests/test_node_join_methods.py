"""A node joins with each method a node token may have, through `machineid node start`: iam (a local STS that
verifies SigV4 as AWS does), and bound_keypair (a key pair the agent registers with a one-time secret), whose copied
key pair locks the node until an administrator unlocks it, as a bot's does. The node's identity renews on the
generation counter at a third of its lifetime left."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from machineid.node.agent import NodeAgent
from machineid.node.config import load as load_config
from machineid.node.layout import Layout
from machineid.quickstart import free_port
from tests.conftest import ServerProc, run_cli
from tests.node_env import node_root, write_config
from tests.test_iam import ACCOUNT, STS, iam_server, sts  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="node roots are root's"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]
SECRET = "node-registration-secret-0123456789abcdef"


def pin(server: ServerProc) -> str:
    return str(json.loads((server.data_dir / "server.json").read_text())["ca_pin"])


def register(server: ServerProc, name: str) -> None:
    server.ctl("create", "-f", "-", input=f"kind: node\nmetadata:\n  name: {name}\n  labels: {{env: test}}\n"
                                          f"spec:\n  addr: 127.0.0.1:{free_port()}\n")


def node_start(root: Path, env: dict[str, str] | None = None, check: bool = True) -> object:
    return run_cli("node", "start", "--root", str(root), "--oneshot", "--log-format", "text", env=env, check=check)


def status(server: ServerProc, name: str) -> dict[str, object]:
    return dict(json.loads(server.ctl("get", f"node/{name}", "--format", "json").stdout)["status"])


@pytest.fixture()
def root() -> Iterator[Path]:
    with node_root() as path:
        yield path


def test_a_node_joins_with_iam_and_renews_its_identity(iam_server: ServerProc, sts: STS,  # noqa: F811
                                                       root: Path) -> None:
    register(iam_server, "web-iam")
    iam_server.ctl("tokens", "add", "--type=node", "--node-name=web-iam", "--join-method=iam", "--name=web-iam",
                   f"--aws-account={ACCOUNT}", f"--aws-arn=arn:aws:iam::{ACCOUNT}:user/ci-runner")
    layout = Layout(root=root)
    write_config(layout, name="web-iam", address=iam_server.address, pin=pin(iam_server), join_method="iam",
                 token="web-iam")
    intruder = node_start(root, env=sts.users["intruder"], check=False)
    assert intruder.returncode == 1 and "matches no allow rule" in intruder.stderr  # type: ignore[attr-defined]
    node_start(root, env=sts.users["ci-runner"])
    st = status(iam_server, "web-iam")
    assert st["join_token"] == "web-iam" and st["generation"] == 1 and st["state"] == "online"
    assert json.loads(layout.state.read_text())["labels"] == {"env": "test"}
    # 6 of the identity's 8 hours later (less than a third left) the agent renews it, on the generation counter
    agent = NodeAgent(layout, load_config(layout.config), clock=lambda: datetime.now(UTC) + timedelta(hours=6))
    renewed = agent.sync_once()
    agent.unlock()
    assert renewed.renewed_identity and not renewed.joined
    assert status(iam_server, "web-iam")["generation"] == 2
    events = json.loads(iam_server.ctl("audit", "--action", "node.join", "--format", "json").stdout)
    assert [(e["outcome"], e["details"].get("node")) for e in events] == [("denied", None), ("ok", "web-iam")]


def test_a_bound_keypair_node_registers_its_key_and_a_copy_of_it_locks_the_node(fresh_server: ServerProc,
                                                                                root: Path, tmp_path: Path) -> None:
    register(fresh_server, "web-key")
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET)
    fresh_server.ctl("tokens", "add", "--type=node", "--node-name=web-key", "--join-method=bound_keypair",
                     "--name=web-key", f"--registration-secret={secret_file}")
    layout = Layout(root=root)
    secret_path = layout.etc / "registration-secret"
    secret_path.parent.mkdir(parents=True)
    secret_path.write_text(SECRET)
    write_config(layout, name="web-key", address=fresh_server.address, pin=pin(fresh_server),
                 join_method="bound_keypair", token="web-key", registration_secret=str(secret_path))
    joined = node_start(root)
    assert SECRET not in joined.stderr  # type: ignore[attr-defined]
    assert (layout.data_dir / "bound_keypair.json").exists() and status(fresh_server, "web-key")["generation"] == 1
    with node_root() as thief:
        # A copy of the node's data dir, joining on its own: the join state it presents is the latest, so it takes
        # the node over (the real node's identity is superseded)...
        shutil.copytree(layout.data_dir, Layout(root=thief).data_dir)
        (Layout(root=thief).data_dir / "identity").unlink()
        write_config(Layout(root=thief), name="web-key", address=fresh_server.address, pin=pin(fresh_server),
                     join_method="bound_keypair", token="web-key")
        node_start(thief)
    superseded = node_start(root, check=False)
    assert superseded.returncode == 1 and "superseded" in superseded.stderr  # type: ignore[attr-defined]
    # ... and when the real node joins again, its join state is stale: two machines hold the key pair, the node
    # is locked, and neither gets anything until an administrator unlocks it.
    (layout.data_dir / "identity").unlink()
    locked = node_start(root, check=False)
    assert locked.returncode == 1 and 'node "web-key" is now locked: stale join state' in locked.stderr  # type: ignore[attr-defined]
    assert "machineid ctl nodes unlock web-key" in locked.stderr  # type: ignore[attr-defined]
    assert status(fresh_server, "web-key")["state"] == "locked"
    assert "locked" in next(ln for ln in fresh_server.ctl("nodes", "ls").stdout.splitlines()
                            if ln.startswith("web-key"))
    unlocked = json.loads(fresh_server.ctl("nodes", "unlock", "web-key", "--format", "json").stdout)
    assert unlocked["action"] == "unlocked" and unlocked["next"].startswith("machineid ctl tokens add --type=node")
    assert status(fresh_server, "web-key")["state"] != "locked"
