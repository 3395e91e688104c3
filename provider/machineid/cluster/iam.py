"""IAM join verification: is this signed sts:GetCallerIdentity request one the cluster may forward, and who
does STS say signed it?

The checks, in order (Teleport's): the host is on a fixed allow list of AWS STS endpoints (plus endpoints the
operator adds with --iam-sts-endpoint; never derived from the request); method, path and body are exactly those of
GetCallerIdentity; the challenge header carries the challenge the cluster issued, and is among the signed headers.
Only then is the request forwarded to STS, whose answer (HTTP 200, then Account and Arn, JSON or XML) decides.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from urllib.parse import urlsplit

from machineid.api.iam import CHALLENGE_HEADER, STS_BODY, SignedRequest
from machineid.model.errors import PermissionDeniedError
from machineid.model.resources import TokenRule

STS_TIMEOUT = 15.0

# AWS regions with an STS endpoint (sts.REGION.amazonaws.com); the global endpoint is sts.amazonaws.com.
_REGIONS = (
    "us-east-1", "us-east-2", "us-west-1", "us-west-2", "af-south-1", "ap-east-1", "ap-east-2", "ap-south-1",
    "ap-south-2", "ap-southeast-1", "ap-southeast-2", "ap-southeast-3", "ap-southeast-4", "ap-southeast-5",
    "ap-southeast-7", "ap-northeast-1", "ap-northeast-2", "ap-northeast-3", "ca-central-1", "ca-west-1",
    "eu-central-1", "eu-central-2", "eu-west-1", "eu-west-2", "eu-west-3", "eu-south-1", "eu-south-2",
    "eu-north-1", "il-central-1", "me-south-1", "me-central-1", "mx-central-1", "sa-east-1",
)
AWS_STS_HOSTS = frozenset(
    ["sts.amazonaws.com"]
    + [f"sts.{r}.amazonaws.com" for r in _REGIONS]
    + [f"sts-fips.{r}.amazonaws.com" for r in _REGIONS if r.startswith(("us-", "ca-"))]
    + ["sts.us-gov-east-1.amazonaws.com", "sts.us-gov-west-1.amazonaws.com",
       "sts.cn-north-1.amazonaws.com.cn", "sts.cn-northwest-1.amazonaws.com.cn"]
)


@dataclass(frozen=True)
class CallerIdentity:
    account: str
    arn: str
    user_id: str


def _origin(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port), or None for anything that is not a plain URL (userinfo, a fragment, a bad port)."""
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return None
    if parts.username is not None or parts.password is not None or parts.fragment or "@" in parts.netloc:
        return None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


class Verifier:
    def __init__(self, extra_endpoints: list[str] | None = None) -> None:
        self.extra = {o for o in (_origin(u) for u in extra_endpoints or []) if o is not None}

    def allowed_endpoint(self, url: str) -> bool:
        origin = _origin(url)
        if origin is None:
            return False
        if origin in self.extra:
            return True
        scheme, host, port = origin
        return scheme == "https" and port == 443 and host in AWS_STS_HOSTS

    def check_request(self, req: SignedRequest, challenge: str) -> None:
        """Everything that can be checked before talking to STS; raises PermissionDeniedError naming the check."""
        if not self.allowed_endpoint(req.url):
            raise PermissionDeniedError(f"the signed request goes to {urlsplit(req.url).netloc or req.url!r}, which "
                                        "is not an allowed STS endpoint")
        if req.method.upper() != "POST":
            raise PermissionDeniedError(f"the signed request must be POST, not {req.method}")
        parts = urlsplit(req.url)
        if parts.path not in ("", "/") or parts.query:
            raise PermissionDeniedError("the signed request must be POST / with no query")
        if req.body != STS_BODY:
            raise PermissionDeniedError("the signed request's body must be exactly " + STS_BODY.decode())
        headers = {k.lower(): v for k, v in req.headers.items()}
        if headers.get(CHALLENGE_HEADER.lower()) != challenge:
            raise PermissionDeniedError(f"the {CHALLENGE_HEADER} header does not carry the challenge the cluster "
                                        "issued")
        auth = headers.get("authorization", "")
        signed = re.search(r"SignedHeaders=([^,\s]+)", auth)
        if not auth.startswith("AWS4-HMAC-SHA256 ") or not signed:
            raise PermissionDeniedError("the request is not signed with AWS Signature Version 4")
        if CHALLENGE_HEADER.lower() not in signed.group(1).split(";"):
            raise PermissionDeniedError(f"the {CHALLENGE_HEADER} header is not among the signed headers")

    def call_sts(self, req: SignedRequest) -> CallerIdentity:
        """Forward the request as signed; STS checks the signature and says who signed it."""
        http_req = urllib.request.Request(req.url, data=req.body, method="POST", headers=dict(req.headers))
        try:
            with urllib.request.urlopen(http_req, timeout=STS_TIMEOUT) as resp:
                status, body = resp.status, resp.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:500].decode(errors="replace")
            code = re.search(r"<Code>([^<]+)</Code>|\"Code\":\s*\"([^\"]+)\"", detail)
            reason = next((g for g in code.groups() if g), "") if code else ""
            raise PermissionDeniedError(f"STS refused the signed request (HTTP {e.code} {reason})".rstrip()) from None
        except (urllib.error.URLError, TimeoutError, OSError) as e:
            raise PermissionDeniedError(f"could not reach STS to verify the request: {e}") from None
        if status != 200:
            raise PermissionDeniedError(f"STS answered HTTP {status}")
        return parse_caller_identity(body)


def parse_caller_identity(body: bytes) -> CallerIdentity:
    """Real STS answers JSON when asked; moto (and older STS) answers XML. Read either."""
    text = body.decode(errors="replace").strip()
    try:
        if text.startswith("{"):
            result = json.loads(text)["GetCallerIdentityResponse"]["GetCallerIdentityResult"]
            return CallerIdentity(str(result["Account"]), str(result["Arn"]), str(result.get("UserId", "")))
        root = ET.fromstring(text)
        values = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        return CallerIdentity(values["Account"], values["Arn"], values.get("UserId", ""))
    except (KeyError, ValueError, ET.ParseError) as e:
        raise PermissionDeniedError(f"could not read STS's answer: {e}") from None


def _glob(pattern: str) -> re.Pattern[str]:
    """'*' and '?' only (Teleport's ARN globs); everything else is literal."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern))


def matches(rule: TokenRule, who: CallerIdentity) -> bool:
    if rule.aws_account and rule.aws_account != who.account:
        return False
    return not rule.aws_arn or _glob(rule.aws_arn).fullmatch(who.arn) is not None
