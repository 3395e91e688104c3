"""IAM joins against a local STS (moto's server, verifying SigV4 like AWS), reached through botocore exactly as
AWS would be: only the endpoint is overridden (AWS_ENDPOINT_URL_STS), in the tests' environment."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import boto3
import pytest

from machineid.api import certs
from machineid.api.client import Client, JoinClient, fetch_cluster_cas, identity_from_certs
from machineid.api.iam import CHALLENGE_HEADER, SignedRequest
from machineid.api.iam_signing import sign_get_caller_identity
from machineid.api.identity import Identity
from machineid.model import errors
from machineid.model.resources import Bot, BotSpec, Metadata, ProvisionToken, ProvisionTokenSpec, TokenRule
from machineid.pulumi.engine import Engine, outputs_plain
from machineid.quickstart import free_port
from tests.conftest import MACHINEID, ServerProc, run_cli
from tests.test_agent_ssh import ensure_login, ssh, start_sshd

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "123456789012"  # moto's account
# The cluster tests run against a server with one worker process and with two.
pytestmark = [pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"), pytest.mark.workers(1, 2)]


@dataclass
class STS:
    url: str
    users: dict[str, dict[str, str]]  # user name -> AWS environment for that user


@pytest.fixture(scope="module")
def sts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[STS]:
    port = free_port()
    # two users, their access keys, a role and one AssumeRole: unauthenticated; everything after is verified like AWS
    setup_calls = 6
    log = open(tmp_path_factory.mktemp("moto") / "moto.log", "w")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": str(setup_calls)})
    log.close()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup",
                       aws_secret_access_key="setup")
    users = {}
    for name in ("ci-runner", "intruder"):
        iam.create_user(UserName=name)
        key = iam.create_access_key(UserName=name)["AccessKey"]
        users[name] = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_STS": url, "AWS_CONFIG_FILE": "/dev/null",
            "AWS_SHARED_CREDENTIALS_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true",
        }
    # an EC2 instance's view: the guide's assumed-role identity, with temporary credentials
    iam.create_role(RoleName="teleport-bot-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                                                "Action": "sts:AssumeRole"}]}))
    sts_client = boto3.client("sts", endpoint_url=url, region_name="us-east-1", aws_access_key_id="setup",
                              aws_secret_access_key="setup")
    creds = sts_client.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/teleport-bot-role",
                                   RoleSessionName="i-0123456789abcdef0")["Credentials"]
    users["instance"] = {**users["ci-runner"], "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
                         "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"], "AWS_SESSION_TOKEN": creds["SessionToken"]}
    yield STS(url, users)
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture(scope="module")
def iam_server(sts: STS, tmp_path_factory: pytest.TempPathFactory, server_workers: int) -> Iterator[ServerProc]:
    srv = ServerProc(tmp_path_factory.mktemp("iamcluster") / "data", extra_args=("--iam-sts-endpoint", sts.url))
    srv.start()
    yield srv
    if srv.proc is not None:
        srv.stop()


@pytest.fixture()
def aws_as(monkeypatch: pytest.MonkeyPatch, sts: STS) -> object:
    def use(user: str) -> dict[str, str]:
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        for key, value in sts.users[user].items():
            monkeypatch.setenv(key, value)
        return sts.users[user]

    return use


def iam_token(admin: Client, name: str, bot: str, rule: TokenRule, expires: datetime | None = None) -> None:
    admin.upsert(ProvisionToken(metadata=Metadata(name=name, expires=expires or datetime(3000, 1, 1, tzinfo=UTC)),
                                spec=ProvisionTokenSpec(join_method="iam", bot_name=bot, allow=[rule])))


def iam_bot(admin: Client, bot: str, token: str, rule: TokenRule, roles: list[str] | None = None,
            logins: list[str] | None = None) -> None:
    iam_token(admin, token, bot, rule)
    out = admin.create_bot(Bot(metadata=Metadata(name=bot), spec=BotSpec(roles=roles or ["access"],
                                                                          traits={"logins": logins or ["ci"]})),
                           token_name=token)
    assert out.join_method == "iam"


def join(server: ServerProc, token: str, signed: SignedRequest | None = None,
         challenge: str | None = None) -> tuple[Identity, str, SignedRequest]:
    key = certs.new_key()
    with JoinClient(server.address, fetch_cluster_cas(server.address)) as jc:
        challenge = challenge or jc.create_iam_challenge()
        signed = signed or sign_get_caller_identity(challenge)
        reply = jc.register_using_iam(token, challenge, signed.method, signed.url, signed.headers, signed.body,
                                      certs.public_key_pem(key.public_key()))
    return identity_from_certs(certs.private_key_pem(key), reply.certs), challenge, signed


def last_denial(admin: Client) -> dict[str, str]:
    events = [e for e in admin.audit_events() if e.action == "bot.join" and e.outcome == "denied"]
    return json.loads(events[-1].details) if events else {}


def test_allowed_identity_joins_and_refusals(iam_server: ServerProc, aws_as: object) -> None:
    rule = TokenRule(aws_account=ACCOUNT, aws_arn=f"arn:aws:iam::{ACCOUNT}:user/ci-*")
    with iam_server.admin() as admin:
        iam_bot(admin, "aws-bot", "aws-token", rule)
        iam_token(admin, "wrong-account", "aws-bot", TokenRule(aws_account="111111111111"))
        iam_token(admin, "wrong-arn", "aws-bot", TokenRule(aws_account=ACCOUNT,
                                                           aws_arn=f"arn:aws:iam::{ACCOUNT}:user/deploy-?"))
        iam_token(admin, "short-lived", "aws-bot", rule, expires=datetime.now(UTC) + timedelta(seconds=1))
    aws_as("ci-runner")  # type: ignore[operator]

    ident, challenge, signed = join(iam_server, "aws-token")
    assert ident.info.user == "bot-aws-bot" and not ident.info.renewable  # IAM identities are not renewable
    assert join(iam_server, "aws-token")[0].info.user == "bot-aws-bot"  # the token is reusable
    with iam_server.admin() as admin:
        ok = [e for e in admin.audit_events() if e.action == "bot.join" and e.outcome == "ok"]
        assert json.loads(ok[-1].details)["aws_arn"] == f"arn:aws:iam::{ACCOUNT}:user/ci-runner"

    cases: list[tuple[str, dict[str, object], str]] = [
        ("wrong account", {"token": "wrong-account"}, "matches no allow rule"),
        ("wrong ARN", {"token": "wrong-arn"}, "matches no allow rule"),
        ("replayed request", {"signed": signed, "challenge": challenge}, "already used"),
        ("host outside the allow list", {"mutate": lambda s: replace(s, url="https://sts.example.com/")},
         "not an allowed STS endpoint"),
        ("unsigned challenge header", {"unsigned": True}, "not among the signed headers"),
        ("altered challenge header", {"altered": True}, "STS refused the signed request (HTTP 403"),
    ]
    time.sleep(1.2)
    cases.append(("expired token", {"token": "short-lived"}, "expired"))
    for what, how, expected in cases:
        token = str(how.get("token", "aws-token"))
        with JoinClient(iam_server.address, fetch_cluster_cas(iam_server.address)) as jc:
            fresh = jc.create_iam_challenge()
        sig: SignedRequest | None = how.get("signed")  # type: ignore[assignment]
        chal = how.get("challenge") or fresh
        if how.get("unsigned"):  # signed without the header, which is added afterwards
            signed_without = sign_without_challenge()
            sig = replace(signed_without, headers={**signed_without.headers, CHALLENGE_HEADER: fresh})
            assert "x-machineid-challenge" not in sig.headers["Authorization"]
        if how.get("altered"):
            with JoinClient(iam_server.address, fetch_cluster_cas(iam_server.address)) as jc:
                other = jc.create_iam_challenge()
            original = sign_get_caller_identity(other)
            sig = replace(original, headers={**original.headers, CHALLENGE_HEADER: fresh})
        if "mutate" in how:
            sig = how["mutate"](sign_get_caller_identity(fresh))  # type: ignore[operator]
        with pytest.raises(errors.PermissionDeniedError, match=re.escape(expected)):
            join(iam_server, token, signed=sig, challenge=str(chal))
        with iam_server.admin() as admin:
            assert expected.split(" (")[0] in last_denial(admin).get("error", ""), what


def sign_without_challenge() -> SignedRequest:
    """A GetCallerIdentity signed the normal way, but with no challenge header at all."""
    import botocore.session
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = botocore.session.get_session()
    url = session.create_client("sts", region_name="us-east-1").meta.endpoint_url.rstrip("/") + "/"
    body = b"Action=GetCallerIdentity&Version=2011-06-15"
    req = AWSRequest(method="POST", url=url, data=body,
                     headers={"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"})
    SigV4Auth(session.get_credentials().get_frozen_credentials(), "sts", "us-east-1").add_auth(req)
    prepared = req.prepare()
    return SignedRequest("POST", prepared.url, dict(prepared.headers.items()), body)


def test_guide_assumed_role_rule(iam_server: ServerProc, aws_as: object) -> None:
    """The guide's example: an EC2 instance's assumed role, matched with a glob on the session name."""
    with iam_server.admin() as admin:
        iam_bot(admin, "ec2-bot", "ec2-token",
                TokenRule(aws_account=ACCOUNT, aws_arn=f"arn:aws:sts::{ACCOUNT}:assumed-role/teleport-bot-role/i-*"))
    aws_as("instance")  # type: ignore[operator]
    assert join(iam_server, "ec2-token")[0].info.user == "bot-ec2-bot"
    aws_as("ci-runner")  # type: ignore[operator]
    with pytest.raises(errors.PermissionDeniedError, match="user/ci-runner"):
        join(iam_server, "ec2-token")


def test_intruder_in_the_same_account_is_refused_by_arn(iam_server: ServerProc, aws_as: object) -> None:
    with iam_server.admin() as admin:
        iam_bot(admin, "arn-bot", "arn-token",
                TokenRule(aws_account=ACCOUNT, aws_arn=f"arn:aws:iam::{ACCOUNT}:user/ci-runner"))
    aws_as("intruder")  # type: ignore[operator]
    with pytest.raises(errors.PermissionDeniedError, match="intruder"):
        join(iam_server, "arn-token")


@pytest.mark.skipif(not shutil.which("ssh"), reason="OpenSSH is not installed (scripts/install-system-deps)")
def test_agent_iam_join_and_ssh(iam_server: ServerProc, sts: STS, tmp_path: Path) -> None:
    login = ensure_login()
    iam_server.ctl("create", "-f", "-", input="kind: role\nversion: v5\nmetadata:\n  name: iam-e2e\nspec:\n  allow:\n"
                   "    logins: ['{{internal.logins}}']\n    node_labels:\n      env: test\n")
    node = start_sshd(iam_server, "iamnode")
    try:
        with iam_server.admin() as admin:
            iam_bot(admin, "agent-bot", "agent-token", TokenRule(aws_account=ACCOUNT), roles=["iam-e2e"],
                    logins=[login])
            pin = admin.ping().ca_pins[0]
        dest = tmp_path / "dest"
        proc = run_cli("bot", "start", "--join-method", "iam", "--token", "agent-token", "--ca-pin", pin,
                       "--auth-server", iam_server.address, "--data-dir", str(tmp_path / "data"),
                       "--destination-dir", str(dest), "--oneshot", "--log-format", "text",
                       env=sts.users["ci-runner"])
        assert "joined: bot agent-bot" in proc.stderr
        result = ssh(dest, login, f"iamnode.{iam_server.cluster_name}")
        assert result.returncode == 0 and result.stdout.strip() == login, result.stderr
        assert not (tmp_path / "data" / "identity").exists()  # nothing renewable is kept: it joins again
        # the loop joins again at each renewal
        log = tmp_path / "agent.log"
        with open(log, "w") as out:
            agent = subprocess.Popen([MACHINEID, "bot", "start", "--join-method", "iam", "--token", "agent-token",
                                      "--ca-pin", pin, "--auth-server", iam_server.address, "--data-dir",
                                      str(tmp_path / "data"), "--destination-dir", str(dest),
                                      "--renewal-interval", "1s", "--log-format", "text"],
                                     stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **sts.users["ci-runner"]})
        try:
            deadline = time.monotonic() + 30
            while log.read_text().count("joined: bot agent-bot") < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            assert log.read_text().count("joined: bot agent-bot") >= 2, log.read_text()
        finally:
            agent.terminate()
            agent.wait(timeout=30)
    finally:
        node.stop()


def test_iam_example_with_the_real_engine(iam_server: ServerProc, sts: STS, tmp_path: Path) -> None:
    proc = subprocess.run([str(ROOT / "scripts" / "install-tools")], capture_output=True, text=True, timeout=3000)
    assert proc.returncode == 0, proc.stderr
    engine = Engine(Path(proc.stdout.strip().splitlines()[-1]), tmp_path / "home", {
        "MACHINEID_AUTH_SERVER": iam_server.address, "MACHINEID_IDENTITY": str(iam_server.admin_identity_path)})
    st = engine.python_stack(ROOT / "examples" / "iam", "iam", {
        "awsAccount": ACCOUNT, "awsArn": f"arn:aws:iam::{ACCOUNT}:user/ci-*",
        "destinationDir": str(tmp_path / "dest"), "dataDir": str(tmp_path / "data")})
    try:
        out = outputs_plain(st.up(color="never").outputs)
        assert out["joinMethod"] == "iam"
        config = tmp_path / "bot.yaml"
        config.write_text(out["agentConfig"])
        assert "join_method: iam" in out["agentConfig"] and "token: iam-token" in out["agentConfig"]
        with iam_server.admin() as admin:  # no secret in it: no token-method token's name appears
            secrets_ = [t.metadata.name for t in admin.list("token") if t.spec.join_method == "token"]  # type: ignore[union-attr]
        assert not any(s in out["agentConfig"] for s in secrets_)
        proc2 = run_cli("bot", "start", "--config", str(config), "--oneshot", "--log-format", "text",
                        env=sts.users["ci-runner"])
        assert "joined: bot aws-robot" in proc2.stderr
        assert (tmp_path / "dest" / "ssh_config").exists()
    finally:
        st.destroy(color="never")


def test_a_slow_sts_does_not_hold_up_other_requests(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The server runs requests one at a time when its storage is local (SQLite), but an IAM join's call to STS
    waits outside that: a slow STS delays only the join that waits on it."""
    import http.server
    import threading

    class SlowSTS(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            time.sleep(3)
            self.send_response(403)
            self.end_headers()
            self.wfile.write(b"<ErrorResponse><Error><Code>SlowDown</Code></Error></ErrorResponse>")

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowSTS)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    for key, value in {"AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "secret",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL_STS": url,
                       "AWS_CONFIG_FILE": "/dev/null", "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
                       "AWS_EC2_METADATA_DISABLED": "true"}.items():
        monkeypatch.setenv(key, value)
    srv = ServerProc(tmp_path / "data", extra_args=("--iam-sts-endpoint", url))
    srv.start()
    try:
        rule = TokenRule(aws_account=ACCOUNT, aws_arn=f"arn:aws:iam::{ACCOUNT}:user/*")
        with srv.admin() as admin:
            iam_bot(admin, "slow-iam", "slow-iam-token", rule)
            token = admin.create_bot(Bot(metadata=Metadata(name="quick"),
                                         spec=BotSpec(roles=["access"], traits={"logins": ["ci"]}))).token
        outcome: list[BaseException] = []

        def slow_join() -> None:
            try:
                join(srv, "slow-iam-token")
            except BaseException as e:  # the slow STS refuses in the end
                outcome.append(e)

        waiting = threading.Thread(target=slow_join)
        started = time.monotonic()
        waiting.start()
        time.sleep(0.5)  # the join is waiting on the STS now
        key = certs.new_key()
        with JoinClient(srv.address, fetch_cluster_cas(srv.address)) as jc:
            jc.ping()
            reply = jc.register_using_token(token, certs.public_key_pem(key.public_key()))
        with srv.admin() as admin:
            bot = admin.get("bot", "quick")
            assert isinstance(bot, Bot) and bot.status.generation == 1
        quick = time.monotonic() - started
        waiting.join(30)
        slow = time.monotonic() - started
        assert reply.bot_name == "quick"
        assert quick < 2.5, f"a token join and admin calls took {quick:.1f}s while an IAM join waited on STS"
        assert slow >= 3, "the IAM join did not wait for the slow STS"
        assert outcome and isinstance(outcome[0], errors.MachineIDError), outcome
    finally:
        srv.stop()
        httpd.shutdown()
