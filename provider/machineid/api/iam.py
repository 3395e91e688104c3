"""Wire facts of the IAM join shared by the agent (which signs) and the cluster (which verifies)."""

from __future__ import annotations

from dataclasses import dataclass

CHALLENGE_HEADER = "X-Machineid-Challenge"
STS_BODY = b"Action=GetCallerIdentity&Version=2011-06-15"


@dataclass(frozen=True)
class SignedRequest:
    """A signed sts:GetCallerIdentity request, as the agent would send it to STS."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
