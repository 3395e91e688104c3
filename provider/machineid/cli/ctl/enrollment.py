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


def fields(client: Client, name: str, token: str, method: str, expires: datetime | None,
           pins: list[str]) -> dict[str, Any]:
    return {"bot": name, "token": token, "join_method": method,
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
    head = f'The bot "{data["bot"]}" has been created.\n\n' if created else ""
    return (f"{head}The bot token: {data['token']}\n{left}CA pin: {pin}\n\n"
            f"Run this on the machine that needs the identity:\n\n"
            f"{agent_command(client.address, data['token'], data['join_method'], pin)}\n")
