"""The client side of delegated joins: the ID token the platform hands this job (joining with it: joining.py).

Where the ID token comes from, by join method (a file named by --id-token-file or MACHINEID_ID_TOKEN_FILE wins
for every method, for CIs and schedulers that write it to disk):
- github: GitHub Actions' token endpoint (ACTIONS_ID_TOKEN_REQUEST_URL with ACTIONS_ID_TOKEN_REQUEST_TOKEN, which a
  job with `permissions: id-token: write` has), asked for the audience: a fresh token per join;
- gitlab: the variable the job's `id_tokens:` entry defines (MACHINEID_ID_TOKEN unless told another name);
- kubernetes: the projected service-account token file (/var/run/secrets/tokens/machineid unless told another);
- oidc: the file, or MACHINEID_ID_TOKEN.
"""

from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

from machineid.model.delegated import DELEGATED_METHODS
from machineid.model.errors import ValidationError

FILE_ENV = "MACHINEID_ID_TOKEN_FILE"
DEFAULT_TOKEN_ENV = "MACHINEID_ID_TOKEN"
DEFAULT_KUBERNETES_PATH = "/var/run/secrets/tokens/machineid"
GITHUB_URL_ENV = "ACTIONS_ID_TOKEN_REQUEST_URL"
GITHUB_BEARER_ENV = "ACTIONS_ID_TOKEN_REQUEST_TOKEN"
REQUEST_TIMEOUT = 15.0
MAX_TOKEN = 16 * 1024


@dataclass(frozen=True)
class IDTokenSource:
    join_method: str
    audience: str = ""  # empty: the cluster's name (the tokens' default audience)
    file: str = ""  # read the ID token from this file (any method)
    env: str = ""  # gitlab, oidc: the variable holding it (default MACHINEID_ID_TOKEN)
    kubernetes_path: str = ""  # kubernetes: the projected token (default /var/run/secrets/tokens/machineid)

    @classmethod
    def from_environment(cls, join_method: str, audience: str = "", file: str = "", env: str = "",
                         kubernetes_path: str = "") -> IDTokenSource:
        return cls(join_method, audience, file or os.environ.get(FILE_ENV, ""), env, kubernetes_path)


def _read_file(path: str, what: str) -> str:
    try:
        text = Path(path).read_text().strip()
    except OSError as e:
        raise ValidationError(f"{what}: cannot read the ID token from {path}: {e.strerror}") from None
    if not text:
        raise ValidationError(f"{what}: {path} is empty; it should hold the ID token")
    return text


def _github_request(audience: str) -> str:
    url, bearer = os.environ.get(GITHUB_URL_ENV, ""), os.environ.get(GITHUB_BEARER_ENV, "")
    if not url or not bearer:
        raise ValidationError(f"github: {GITHUB_URL_ENV} and {GITHUB_BEARER_ENV} are not set: give the job "
                              "`permissions: id-token: write` (or pass --id-token-file)")
    if urlsplit(url).scheme != "https":
        raise ValidationError(f"github: {GITHUB_URL_ENV} is not an https:// URL")
    sep = "&" if "?" in url else "?"
    request = urllib.request.Request(f"{url}{sep}audience={quote(audience, safe='')}",
                                     headers={"Authorization": f"bearer {bearer}", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT,
                                    context=ssl.create_default_context()) as resp:
            body = resp.read(MAX_TOKEN * 2)
    except urllib.error.HTTPError as e:
        raise ValidationError(f"github: the runner's ID token endpoint answered HTTP {e.code} (does the job have "
                              "`permissions: id-token: write`?)") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        raise ValidationError(f"github: cannot reach the runner's ID token endpoint: {getattr(e, 'reason', e)}") \
            from None
    try:
        value = json.loads(body)["value"]
    except (ValueError, KeyError, TypeError):
        raise ValidationError("github: the runner's ID token endpoint answered without a token") from None
    return str(value)


def fetch(source: IDTokenSource, audience: str) -> str:
    """The ID token for one join (`audience`: what the token must carry, for the platforms that ask)."""
    method = source.join_method
    if method not in DELEGATED_METHODS:
        raise ValidationError(f"join method {method} takes no ID token")
    if source.file:
        return _read_file(source.file, method)
    if method == "github":
        return _github_request(audience)
    if method == "kubernetes":
        return _read_file(source.kubernetes_path or DEFAULT_KUBERNETES_PATH, method)
    name = source.env or DEFAULT_TOKEN_ENV
    value = os.environ.get(name, "").strip()
    if not value:
        hint = ("define it in the job's id_tokens: (with aud set to the token's audience)" if method == "gitlab"
                else "or pass --id-token-file")
        raise ValidationError(f"{method}: no ID token in ${name}; {hint}")
    return value
