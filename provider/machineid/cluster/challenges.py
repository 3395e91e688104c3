"""Join challenges that cost the server nothing to hand out.

A challenge is an HMAC over its purpose (IAM joins, or one bound_keypair token), its issue time and a random
nonce, with a key every server sharing the backend derives from the cluster's X.509 CA key. Handing one out
writes nothing: an anonymous caller asking for millions fills no table and blocks nobody's join (a stored
challenge with a global cap could be exhausted by one connection in under a minute). A challenge is checked
without any lookup, and spent by the join that authenticated with it: only then is a row written (its hash,
until the challenge would have expired), so a signed request replayed within the challenge's lifetime is refused,
and every row traces back to a caller who proved an identity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from machineid.cluster.objects import Objects
from machineid.model import codec
from machineid.model.errors import AlreadyExistsError, NotFoundError, PermissionDeniedError

SPENT_KIND = "spent_challenge"  # internal: challenges a successful join used, until they expire
LEGACY_KIND = "iam_challenge"  # rows of the stored challenges of earlier versions; the janitor removes them
TTL = timedelta(minutes=5)
SKEW = timedelta(seconds=30)  # a challenge issued by a server whose clock runs a little ahead
_VERSION = 1
_NONCE = 16
_PURPOSE = 16
_MAC = 32
_BODY = struct.Struct(f">B{_PURPOSE}sQ{_NONCE}s")
MAX_TEXT = 4 * ((_BODY.size + _MAC + 2) // 3)  # the encoded length; longer input is refused unread


def derive_key(ca_key: ec.EllipticCurvePrivateKey) -> bytes:
    """The challenge key: the same on every server that shares the CA, and useless for signing anything else."""
    material = ca_key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"machineid join challenges v1").derive(material)


def _purpose_digest(purpose: str) -> bytes:
    return hashlib.sha256(purpose.encode()).digest()[:_PURPOSE]


def spent_key(challenge: str) -> str:
    return hashlib.sha256(challenge.encode()).hexdigest()


class Challenges:
    def __init__(self, objects: Objects, key: bytes) -> None:
        self.objects = objects
        self._key = key

    def _mac(self, body: bytes) -> bytes:
        return hmac.new(self._key, body, hashlib.sha256).digest()

    def issue(self, purpose: str = "") -> str:
        """A fresh challenge for one purpose (IAM joins: ""; a bound keypair's joins: its token's hash)."""
        issued = int(self.objects.clock().timestamp())
        body = _BODY.pack(_VERSION, _purpose_digest(purpose), issued, secrets.token_bytes(_NONCE))
        return base64.urlsafe_b64encode(body + self._mac(body)).decode().rstrip("=")

    def expires(self, challenge: str, purpose: str = "") -> datetime:
        """Checks that this cluster issued the challenge for this purpose and that it is still valid (no lookup);
        returns when it expires. Raises PermissionDeniedError saying what to do."""
        try:
            if len(challenge) > MAX_TEXT:
                raise ValueError
            raw = base64.urlsafe_b64decode(challenge + "=" * (-len(challenge) % 4))
            if len(raw) != _BODY.size + _MAC:
                raise ValueError
            body, mac = raw[:_BODY.size], raw[_BODY.size:]
            version, digest, issued, _ = _BODY.unpack(body)
        except (ValueError, struct.error):
            raise PermissionDeniedError("the challenge is not one this cluster issued; ask for a new one") from None
        if version != _VERSION or not hmac.compare_digest(mac, self._mac(body)):
            raise PermissionDeniedError("the challenge is not one this cluster issued; ask for a new one")
        if not hmac.compare_digest(digest, _purpose_digest(purpose)):
            raise PermissionDeniedError("the challenge was made for another join; ask for a new one")
        now = self.objects.clock()
        start = datetime.fromtimestamp(issued, UTC)
        if start > now + SKEW or start + TTL <= now:
            raise PermissionDeniedError("the challenge expired; ask for a new one (it is valid for "
                                        f"{int(TTL.total_seconds() // 60)} minutes)")
        return start + TTL

    def check_unspent(self, challenge: str) -> None:
        """A read, no write: a replay is refused before anything costly (the STS call) is done for it."""
        try:
            self.objects.backend.get(SPENT_KIND, spent_key(challenge))
        except NotFoundError:
            return
        raise PermissionDeniedError("the challenge was already used; ask for a new one (a signed request joins once)")

    def spend(self, challenge: str, expires: datetime) -> None:
        """Records the challenge as used (in the caller's transaction, once the join has authenticated): the
        second of two joins racing with one challenge fails here."""
        try:
            self.objects.backend.create(SPENT_KIND, spent_key(challenge), {"expires": codec.format_time(expires)})
        except AlreadyExistsError:
            raise PermissionDeniedError("the challenge was already used; ask for a new one (a signed request joins "
                                        "once)") from None
