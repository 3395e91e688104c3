"""One function checks an ID token: verify(token, expected, keysets) -> its claims, or PermissionDeniedError
saying which check failed (never quoting the token).

In order: a bounded size; the header's algorithm on an allow-list of asymmetric ones (never `none` or HS*, so a
public key can never be used as an HMAC secret) and a `kid`, which names the issuer's key; the signature with that
key, the key's type bound to the algorithm; `iss` exactly the issuer; `aud` the expected audience; `exp`, `iat` and
`nbf` with 10 s of leeway, `exp` and `iat` required; and the token's lifetime (exp - iat) within the cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt

from machineid.cluster.oidc.keysets import KeySets, Source
from machineid.model.errors import PermissionDeniedError
from machineid.model.validators import shown

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
_KEY_TYPES = {"RS": "RSA", "PS": "RSA", "ES": "EC", "Ed": "OKP"}
LEEWAY = 10
MAX_TOKEN = 16 * 1024


@dataclass(frozen=True)
class Expected:
    source: Source
    audience: str
    max_lifetime: timedelta
    now: datetime | None = None  # the cluster's clock (tests move it)


def _when(epoch: Any) -> str:
    try:
        return datetime.fromtimestamp(float(epoch), UTC).isoformat().replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError):
        return "?"


def verify(token: str, expected: Expected, keysets: KeySets) -> dict[str, Any]:
    if not token:
        raise PermissionDeniedError("no ID token was presented")
    if len(token) > MAX_TOKEN:
        raise PermissionDeniedError(f"the ID token is longer than {MAX_TOKEN} characters")
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise PermissionDeniedError("the ID token is not a JWT") from None
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ALGORITHMS:
        raise PermissionDeniedError(f"the ID token's algorithm {str(alg)[:20]!r} is not allowed; use one of "
                                    f"{', '.join(ALGORITHMS)}")
    if not isinstance(kid, str) or not kid:
        raise PermissionDeniedError("the ID token names no key (kid): it cannot be matched to the issuer's keys")
    jwk = keysets.key(expected.source, kid)
    named = shown(kid)  # chosen by whoever sent the token: quoted bounded, on one line
    if jwk.get("kty") != _KEY_TYPES[alg[:2]] or (jwk.get("alg") not in (None, alg)):
        raise PermissionDeniedError(f'key "{named}" of the issuer is not a key for {alg}')
    try:
        key = jwt.PyJWK(jwk, algorithm=alg)
    except jwt.PyJWTError as e:
        raise PermissionDeniedError(f'key "{named}" of the issuer cannot be used: {e}') from None
    now = expected.now or datetime.now(UTC)
    try:
        claims = _decode_at(token, key, alg, expected, now)
    except jwt.ExpiredSignatureError:
        raise PermissionDeniedError("the ID token expired; ask the platform for a fresh one") from None
    except jwt.ImmatureSignatureError:
        raise PermissionDeniedError("the ID token is not valid yet (nbf or iat in the future: check the clocks)") \
            from None
    except jwt.InvalidAudienceError:
        raise PermissionDeniedError(f"the ID token is not for this cluster: its audience (aud) must be "
                                    f"{expected.audience!r}") from None
    except jwt.InvalidIssuerError:
        raise PermissionDeniedError(f"the ID token was not issued by {expected.source.issuer}") from None
    except jwt.MissingRequiredClaimError as e:
        raise PermissionDeniedError(f"the ID token has no {e.claim} claim") from None
    except jwt.InvalidSignatureError:
        raise PermissionDeniedError(f'the ID token\'s signature does not verify with the issuer\'s key "{named}"') \
            from None
    except jwt.PyJWTError as e:
        raise PermissionDeniedError(f"the ID token is not valid: {e}") from None
    lifetime = float(claims["exp"]) - float(claims["iat"])
    if lifetime > expected.max_lifetime.total_seconds():
        raise PermissionDeniedError(f"the ID token lives {int(lifetime)} s (iat {_when(claims['iat'])} to exp "
                                    f"{_when(claims['exp'])}), longer than the token allows "
                                    f"({int(expected.max_lifetime.total_seconds())} s)")
    return claims


def _decode_at(token: str, key: jwt.PyJWK, alg: str, expected: Expected, now: datetime) -> dict[str, Any]:
    """jwt.decode with the times checked against `now`, the cluster's clock (which tests move), not the system's:
    the signature, issuer and audience by PyJWT, the times here with LEEWAY."""
    claims: dict[str, Any] = jwt.decode(
        token, key=key, algorithms=[alg], audience=expected.audience, issuer=expected.source.issuer or None,
        options={"require": ["exp", "iat", "iss", "aud"], "verify_exp": False, "verify_iat": False,
                 "verify_nbf": False})
    t = now.timestamp()
    try:
        exp, iat = float(claims["exp"]), float(claims["iat"])
        nbf = float(claims.get("nbf", iat))
    except (TypeError, ValueError):
        raise jwt.InvalidTokenError("exp, iat and nbf must be numbers") from None
    if exp <= t - LEEWAY:
        raise jwt.ExpiredSignatureError
    if iat > t + LEEWAY or nbf > t + LEEWAY:
        raise jwt.ImmatureSignatureError
    return claims
