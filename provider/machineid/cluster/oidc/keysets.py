"""Issuers' public keys, fetched and cached per issuer (and CA bundle).

Discovery first (ISSUER/.well-known/openid-configuration, whose `issuer` must be exactly the configured one), then
its `jwks_uri`. A key set is used for FRESH; after that the next join fetches it again, but if the issuer cannot
be reached the cached keys still verify for up to STALE (an issuer outage does not stop joins), after which they
are dropped (a key the issuer removed stops verifying). The cluster fetches at most once per REFETCH_PAUSE per
issuer, whatever asks: a token signed with a kid the cached set lacks (a flood of made-up kids cannot make the
cluster hammer the issuer), or keys due for a refresh while the issuer is down (joins go on with the cached keys
instead of each waiting for the issuer). A token's pasted key set (static_jwks) is used as is, with no network
call.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from machineid.cluster.oidc import fetch
from machineid.model.errors import PermissionDeniedError
from machineid.model.validators import shown

log = logging.getLogger("machineid.cluster.oidc")
FRESH = 3600.0
STALE = 24 * 3600.0
REFETCH_PAUSE = 60.0
FORGET = 48 * 3600.0  # entries unused this long are dropped
MAX_KEYS = 64


@dataclass(frozen=True)
class Source:
    """Where a token's keys come from."""

    issuer: str
    ca_bundle: str = ""
    static_jwks: str = ""


@dataclass
class _Entry:
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched: float | None = None  # when the keys were fetched
    attempted: float | None = None  # the last fetch attempt
    error: str = ""  # why the last attempt failed ("" when it did not)
    used: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def parse_key_set(doc: Any, where: str) -> dict[str, dict[str, Any]]:
    """kid -> JWK of a key set's public keys (a key without a kid, or a private one, is skipped)."""
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise PermissionDeniedError(f"{where} is not a key set (no keys list)")
    out: dict[str, dict[str, Any]] = {}
    for key in keys[:MAX_KEYS]:
        if isinstance(key, dict) and isinstance(key.get("kid"), str) and key.get("kty") and "d" not in key:
            out[key["kid"]] = key
    return out


class KeySets:
    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 get_json: Callable[[str, str], dict[str, Any]] = fetch.get_json) -> None:
        self._clock = clock
        self._get_json = get_json
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._lock = threading.Lock()

    def key(self, source: Source, kid: str) -> dict[str, Any]:
        """The public key (a JWK) this kid names, from the source's key set."""
        if source.static_jwks:
            keys = parse_key_set(json.loads(source.static_jwks), "the token's static_jwks")
            if kid not in keys:
                raise PermissionDeniedError(f'the ID token is signed with key "{shown(kid)}", which the token\'s '
                                            "static_jwks does not hold (the issuer rotated its keys? paste its "
                                            "current key set)")
            return keys[kid]
        entry = self._entry(source)
        with entry.lock:
            now = self._clock()
            entry.used = now
            age = now - entry.fetched if entry.fetched is not None else STALE
            cached = entry.keys.get(kid) if age < STALE else None
            if cached is not None and age < FRESH:
                return cached
            if entry.attempted is not None and now - entry.attempted < REFETCH_PAUSE:
                if cached is not None:
                    return cached  # due for a refresh, which failed moments ago: the cached key still verifies
                if entry.error:
                    raise PermissionDeniedError(f"cannot get the keys of issuer {source.issuer}: {entry.error}")
                raise self._unpublished(source, kid)
            entry.attempted = now
            try:
                entry.keys, entry.fetched, entry.error = self._fetch(source), now, ""
            except PermissionDeniedError as e:
                entry.error = str(e)
                if cached is not None:
                    log.warning("keeping the cached keys of %s (fetched %d s ago): %s", source.issuer, age, e)
                    return cached
                raise PermissionDeniedError(f"cannot get the keys of issuer {source.issuer}: {e}") from None
            if kid not in entry.keys:
                raise self._unpublished(source, kid)
            return entry.keys[kid]

    @staticmethod
    def _unpublished(source: Source, kid: str) -> PermissionDeniedError:
        return PermissionDeniedError(f'the ID token is signed with key "{shown(kid)}", which issuer {source.issuer} '
                                     "does not publish")

    def _entry(self, source: Source) -> _Entry:
        bundle = hashlib.sha256(source.ca_bundle.encode()).hexdigest()
        with self._lock:
            now = self._clock()
            for k in [k for k, e in self._entries.items() if e.used and now - e.used > FORGET]:
                del self._entries[k]
            return self._entries.setdefault((source.issuer, bundle), _Entry())

    def _fetch(self, source: Source) -> dict[str, dict[str, Any]]:
        discovery_url = source.issuer.rstrip("/") + "/.well-known/openid-configuration"
        discovery = self._get_json(discovery_url, source.ca_bundle)
        if discovery.get("issuer") != source.issuer:
            raise PermissionDeniedError(f"{discovery_url} names issuer {str(discovery.get('issuer'))[:200]!r}, not "
                                        f"{source.issuer!r}")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith("https://"):
            raise PermissionDeniedError(f"{discovery_url} names no https:// jwks_uri")
        return parse_key_set(self._get_json(jwks_uri, source.ca_bundle), jwks_uri)
