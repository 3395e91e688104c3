"""A join token handed out (bots add, tokens add, create -f of a bot): the same fields wherever, named as the
providers name them, and the agent command to run with it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from machineid.api.client import Client
from machineid.model import codec


def agent_command(address: str, token: str, method: str, pin: str) -> str:
    return (
        "machineid bot start \\\n"
        "   --data-dir=./machineid-bot \\\n"
        "   --destination-dir=./machine-id \\\n"
        f"   --token={token} \\\n"
        f"   --join-method={method} \\\n"
        f"   --ca-pin={pin} \\\n"
        f"   --auth-server={address}"
    )


def node_command(address: str, name: str, token: str, method: str, pin: str) -> str:
    """What the node's operator runs on the node, as root (`node setup` writes its config, joins once and keeps
    sshd's files; `node start` then renews and heartbeats)."""
    shown = token if method != "token" else "/etc/machineid/join-token"
    return (
        "machineid node setup \\\n"
        f"   --name={name} \\\n"
        f"   --join-method={method} \\\n"
        f"   --token={shown} \\\n"
        f"   --ca-pin={pin} \\\n"
        f"   --auth-server={address} \\\n"
        "   --join"
    )


def fields(client: Client, name: str, token: str, method: str, expires: datetime | None,
           pins: list[str], kind: str = "bot") -> dict[str, Any]:
    return {kind: name, "token": token, "join_method": method,
            "token_expires": codec.format_time(expires) if expires else None, "ca_pins": list(pins),
            "auth_server": client.address}


def message(client: Client, data: dict[str, Any], created: bool = True) -> str:
    left = ""
    expires = data["token_expires"]
    if expires:
        minutes = max(0, round((codec.parse_time(expires) - datetime.now(UTC)).total_seconds() / 60))
        left = (f"This token will expire in {minutes} minutes.\n" if minutes <= 48 * 60
                else f"This token will expire at {expires}.\n")
    pin = data["ca_pins"][0]
    if "node" in data:
        secret = data["join_method"] == "token"
        where = ("Put the token in a root-only file on the node (0600), /etc/machineid/join-token below, and run "
                 "this there as root:" if secret else "Run this on the node as root:")
        return (f"The node token: {data['token']}\n{left}CA pin: {pin}\n\n{where}\n\n"
                f"{node_command(client.address, data['node'], data['token'], data['join_method'], pin)}\n")
    head = f'The bot "{data["bot"]}" has been created.\n\n' if created else ""
    return (f"{head}The bot token: {data['token']}\n{left}CA pin: {pin}\n\n"
            f"Run this on the machine that needs the identity:\n\n"
            f"{agent_command(client.address, data['token'], data['join_method'], pin)}\n")
