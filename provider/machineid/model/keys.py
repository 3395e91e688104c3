"""Bound key pairs (the bound_keypair join method): OpenSSH public keys parsed strictly, and the join signature.

Shared by the model (validation), the cluster (verification) and the agent (signing), so the three agree on what
a key is and on exactly which bytes are signed."""

from __future__ import annotations

import base64
import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | ec.EllipticCurvePublicKey
_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256")
MAX_KEY_LINE = 1024
SIGNED_CONTEXT = b"machineid bound_keypair join v1\n"


def parse_ssh_public_key(text: str) -> PublicKey:
    """One OpenSSH public key line (`TYPE BASE64 [comment]`), Ed25519 or ECDSA P-256; nothing else rides along."""
    line = text.strip()
    if not line or len(line) > MAX_KEY_LINE or "\n" in line or "\r" in line:
        raise ValueError("an OpenSSH public key is one line, like `ssh-ed25519 AAAA... comment`")
    parts = line.split(None, 2)
    if parts[0] not in _TYPES:
        raise ValueError(f"use an Ed25519 or ECDSA P-256 key ({' or '.join(_TYPES)}), as `machineid bot keypair "
                         "create` makes")
    if len(parts) < 2:
        raise ValueError("the key's base64 part is missing")
    try:
        blob = base64.b64decode(parts[1], validate=True)
        key = serialization.load_ssh_public_key(f"{parts[0]} {parts[1]}".encode())
    except Exception:  # binascii.Error, ValueError, UnsupportedAlgorithm
        raise ValueError("the key's base64 part does not decode to an OpenSSH public key") from None
    # The blob names its own type: it must be the one the line claims.
    if blob[4:4 + int.from_bytes(blob[:4], "big")] != parts[0].encode():
        raise ValueError("the key type does not match the key data")
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError("use an Ed25519 or ECDSA P-256 key")


def normalized(text: str) -> str:
    """The key as the cluster stores it: type and base64, without the comment."""
    return public_line(parse_ssh_public_key(text))


def public_line(key: PublicKey, comment: str = "") -> str:
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".strip()


def fingerprint(text: str) -> str:
    """OpenSSH's SHA256 fingerprint, for messages and the audit log."""
    blob = base64.b64decode(normalized(text).split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def new_private_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


def private_pem(key: PrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                             serialization.NoEncryption()).decode()


def load_private(text: str) -> PrivateKey:
    key = serialization.load_ssh_private_key(text.encode(), password=None)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    raise ValueError("only Ed25519 and ECDSA P-256 keys are supported")


def join_message(token: str, challenge: str, certify_public_key: str) -> bytes:
    """What a join signs: the cluster's single-use challenge, bound to the token and to the key to be certified
    (so a signature cannot be replayed for another token or moved onto another key)."""
    return SIGNED_CONTEXT + f"{token}\n{challenge}\n{pem_digest(certify_public_key)}\n".encode()


def pem_digest(pem: str) -> str:
    """A PEM public key's SHA-256 (hex): what a join signs over, and how renewal records name the key they
    certified (a retried request is recognised by it)."""
    return hashlib.sha256(pem.strip().encode()).hexdigest()


def sign(key: PrivateKey, message: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(message)
    return key.sign(message, ec.ECDSA(hashes.SHA256()))


def verify(public_key_line: str, signature: bytes, message: bytes) -> bool:
    if not signature or not public_key_line:
        return False
    try:
        key = parse_ssh_public_key(public_key_line)
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, message)
        else:
            key.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True
