"""A local OpenID Connect issuer for tests, the way CI platforms are one: HTTPS on loopback with a CA of its own,
discovery and a key set, and ID tokens minted in GitHub's, GitLab's and Kubernetes' shapes. Like GitHub's runner
it also answers token requests (ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN: a GET with a bearer token and the
audience, answered with {"value": JWT}).

Run as a program (python -m tests.oidc_issuer DIR) it writes DIR/issuer.json (url, CA, request URL and bearer)
and serves until killed, for scripts that need one (the CI recipes' tests).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import secrets
import ssl
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _tls_files(directory: Path) -> tuple[str, Path, Path]:
    """A CA and a certificate for 127.0.0.1 and localhost signed by it: (CA PEM, cert file, key file)."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("test OIDC issuer CA")).issuer_name(_name("test OIDC issuer CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                       crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name("127.0.0.1")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    directory.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = directory / "issuer.crt", directory / "issuer.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file


class Issuer:
    """Signing keys by kid (RSA "rsa-1" and EC "ec-1" at first); `published` is what the key set serves."""

    def __init__(self, directory: Path) -> None:
        self.ca_pem, cert_file, key_file = _tls_files(directory)
        self.keys: dict[str, Any] = {"rsa-1": rsa.generate_private_key(public_exponent=65537, key_size=2048),
                                     "ec-1": ec.generate_private_key(ec.SECP256R1())}
        self.published = set(self.keys)
        self.requests: Counter[str] = Counter()  # path -> how many times it was fetched
        self.redirect_jwks = ""  # when set, the key set answers with a redirect there
        self.down = False  # when set, every document answers 503
        self.discovery: dict[str, Any] = {}  # fields that override the discovery document's (another issuer, ...)
        self.request_bearer = secrets.token_urlsafe(24)
        self.request_claims: dict[str, Any] = {}  # claims of the tokens handed out at /token (GitHub's endpoint)
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                issuer.requests[parts.path] += 1
                if issuer.down:
                    return self._send(503, {"error": "down"})
                if parts.path == "/.well-known/openid-configuration":
                    return self._send(200, {"issuer": issuer.url, "jwks_uri": issuer.url + "/jwks",
                                            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
                                            **issuer.discovery})
                if parts.path == "/jwks":
                    if issuer.redirect_jwks:
                        self.send_response(302)
                        self.send_header("Location", issuer.redirect_jwks)
                        self.end_headers()
                        return None
                    return self._send(200, issuer.jwks())
                if parts.path == "/token":
                    if self.headers.get("Authorization", "") != f"bearer {issuer.request_bearer}":
                        return self._send(401, {"message": "bad credentials"})
                    audience = parse_qs(parts.query).get("audience", [""])[0]
                    return self._send(200, {"value": issuer.mint(issuer.request_claims, audience)})
                return self._send(404, {"error": "not found"})

            def _send(self, code: int, doc: dict[str, Any]) -> None:
                body = json.dumps(doc).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert_file, key_file)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.request_url = self.url + "/token?api-version=2.0"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ---------------------------------------------------------------- keys
    def add_key(self, kid: str, publish: bool = True) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        if publish:
            self.published.add(kid)

    def jwks(self, kids: set[str] | None = None) -> dict[str, Any]:
        out = []
        for kid in sorted(kids if kids is not None else self.published):
            public = self.keys[kid].public_key()
            algo = jwt.algorithms.RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else jwt.algorithms.ECAlgorithm
            jwk = json.loads(algo.to_jwk(public))
            jwk.update(kid=kid, use="sig")
            out.append(jwk)
        return {"keys": out}

    # ---------------------------------------------------------------- tokens
    def mint(self, claims: dict[str, Any], audience: str, *, kid: str | None = "rsa-1", alg: str = "",
             lifetime: int = 300, iat: float | None = None, issuer: str | None = None,
             headers: dict[str, Any] | None = None, jti: str | None = "") -> str:
        """A signed ID token; kid=None leaves the kid out of the header (signed with "rsa-1"), jti=None the jti
        out of the claims; `claims` may override iat, nbf and exp."""
        now = time.time() if iat is None else iat
        body = {"iss": self.url if issuer is None else issuer, "aud": audience, "iat": int(now), "nbf": int(now),
                "exp": int(now) + lifetime, **claims}
        if jti == "":
            body["jti"] = str(uuid.uuid4())
        elif jti is not None:
            body["jti"] = jti
        key = self.keys.get(kid or "rsa-1") or self.keys["rsa-1"]
        algorithm = alg or ("RS256" if isinstance(key, rsa.RSAPrivateKey) else "ES256")
        extra = {**({"kid": kid} if kid is not None else {}), **(headers or {})}
        return jwt.encode(body, key, algorithm=algorithm, headers=extra)

    def forge(self, header: dict[str, Any], claims: dict[str, Any], audience: str, *, iat: float,
              hmac_key: bytes | None = None) -> str:
        """A token no honest issuer signs: `alg: none` with an empty signature, or HMAC-signed with hmac_key (the
        algorithm-confusion attack keys it with the issuer's public key)."""
        body = {"iss": self.url, "aud": audience, "iat": int(iat), "nbf": int(iat), "exp": int(iat) + 300,
                "jti": str(uuid.uuid4()), **claims}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(body).encode())}"
        signature = b"" if hmac_key is None else hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
        return f"{signing_input}.{_b64(signature)}"

    def public_pem(self, kid: str = "rsa-1") -> bytes:
        return bytes(self.keys[kid].public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))

    @staticmethod
    def github_claims(repository: str = "acme/app", ref: str = "refs/heads/main", workflow: str = "deploy",
                      environment: str = "", actor: str = "octocat", event_name: str = "push",
                      run_id: str = "4242") -> dict[str, Any]:
        owner = repository.split("/")[0]
        sub = f"repo:{repository}:environment:{environment}" if environment else f"repo:{repository}:ref:{ref}"
        claims = {"sub": sub, "repository": repository, "repository_owner": owner, "workflow": workflow,
                  "actor": actor, "ref": ref, "ref_type": "tag" if ref.startswith("refs/tags/") else "branch",
                  "event_name": event_name, "run_id": run_id, "run_attempt": "1", "sha": "0" * 40,
                  "job_workflow_ref": f"{repository}/.github/workflows/{workflow}.yml@{ref}",
                  "runner_environment": "github-hosted"}
        if environment:
            claims["environment"] = environment
        return claims

    @staticmethod
    def gitlab_claims(project_path: str = "acme/app", ref: str = "main", pipeline_source: str = "push",
                      environment: str = "", ref_protected: str = "true") -> dict[str, Any]:
        claims = {"sub": f"project_path:{project_path}:ref_type:branch:ref:{ref}", "project_path": project_path,
                  "namespace_path": project_path.rsplit("/", 1)[0], "ref": ref, "ref_type": "branch",
                  "ref_protected": ref_protected, "pipeline_source": pipeline_source, "pipeline_id": "77",
                  "job_id": "991", "user_login": "dev"}
        if environment:
            claims.update(environment=environment, environment_protected="true", deployment_tier="production")
        return claims

    @staticmethod
    def kubernetes_claims(namespace: str = "ci", account: str = "deployer", pod: str | None = "runner-0"
                          ) -> dict[str, Any]:
        k8s: dict[str, Any] = {"namespace": namespace, "serviceaccount": {"name": account, "uid": str(uuid.uuid4())}}
        if pod is not None:
            k8s["pod"] = {"name": pod, "uid": str(uuid.uuid4())}
        return {"sub": f"system:serviceaccount:{namespace}:{account}", "kubernetes.io": k8s}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def main() -> None:
    directory = Path(sys.argv[1])
    issuer = Issuer(directory)
    issuer.request_claims = json.loads(sys.argv[2]) if len(sys.argv) > 2 else Issuer.github_claims()
    (directory / "issuer.json").write_text(json.dumps({
        "url": issuer.url, "ca_pem": issuer.ca_pem, "request_url": issuer.request_url,
        "request_token": issuer.request_bearer, "jwks": issuer.jwks()}))
    threading.Event().wait()


if __name__ == "__main__":
    main()
