"""One HTTPS GET of an issuer's JSON document (its discovery document or its key set), the strict way: HTTPS only,
redirects refused (a redirect could move the key set anywhere), a 10 s timeout, a bounded answer, and the system's
CA certificates or the token's own bundle."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from machineid.model.errors import PermissionDeniedError

TIMEOUT = 10.0
MAX_DOCUMENT = 1 << 20


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req: Any, fp: Any, code: int, msg: str, headers: Any, newurl: str) -> None:
        fp.close()
        raise PermissionDeniedError(f"{req.full_url} answered with a redirect (HTTP {code}); an issuer's documents "
                                    "must be served where it says, without redirects")


def tls_context(ca_bundle: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if ca_bundle:
        ctx = ssl.create_default_context(cadata=ca_bundle)
    return ctx


def get_json(url: str, ca_bundle: str = "", timeout: float = TIMEOUT) -> dict[str, Any]:
    """The JSON object at url; PermissionDeniedError saying what went wrong (the join that needed it fails)."""
    if urlsplit(url).scheme != "https":
        raise PermissionDeniedError(f"{url} is not an https:// URL; issuers' documents are fetched over HTTPS only")
    opener = urllib.request.build_opener(_NoRedirects, urllib.request.HTTPSHandler(context=tls_context(ca_bundle)))
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with opener.open(request, timeout=timeout) as resp:
            body = resp.read(MAX_DOCUMENT + 1)
    except urllib.error.HTTPError as e:
        e.close()  # it holds the connection
        raise PermissionDeniedError(f"{url} answered HTTP {e.code}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as e:
        reason = getattr(e, "reason", e)
        raise PermissionDeniedError(f"cannot fetch {url}: {reason}") from None
    if len(body) > MAX_DOCUMENT:
        raise PermissionDeniedError(f"{url} answered with more than {MAX_DOCUMENT} bytes")
    try:
        doc = json.loads(body)
    except ValueError:
        raise PermissionDeniedError(f"{url} did not answer with JSON") from None
    if not isinstance(doc, dict):
        raise PermissionDeniedError(f"{url} did not answer with a JSON object")
    return doc
