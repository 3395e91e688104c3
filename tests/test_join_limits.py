"""One anonymous source cannot switch off joins for everyone: anonymous calls (not only connections) are limited
per client address, and the challenges they ask for cost the server no rows. Run against a real server, with a
second client address (127.0.0.2) reached through a small relay."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from machineid.api import certs
from machineid.api.client import JoinClient, fetch_cluster_cas
from machineid.model import errors
from tests.conftest import ServerProc

# The cluster tests run against a server with one worker process and with two.
pytestmark = pytest.mark.workers(1, 2)


class Relay:
    """Accepts on 127.0.0.1 and connects to the server from another loopback address, so the server sees a second
    client address."""

    def __init__(self, target: str, source: str) -> None:
        host, port = target.rsplit(":", 1)
        self.target, self.source = (host, int(port)), source
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        accepting = threading.Thread(target=self._accept, daemon=True)
        accepting.start()
        self.threads.append(accepting)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target, source_address=(self.source, 0))
            self.conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                t = threading.Thread(target=self._pipe, args=(a, b), daemon=True)
                t.start()
                self.threads.append(t)

    @staticmethod
    def _pipe(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
            b.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.sock.close()
        for s in self.conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
        for t in self.threads:
            t.join(5)
        for s in self.conns:
            s.close()


@pytest.fixture()
def limited(tmp_path: Path) -> Iterator[ServerProc]:
    srv = ServerProc(tmp_path / "data", extra_args=("--join-rate-per-source", "5"))
    srv.start()
    yield srv
    srv.stop()


def test_a_flood_of_anonymous_calls_from_one_address_leaves_joins_from_others_working(limited: ServerProc) -> None:
    cas = fetch_cluster_cas(limited.address)
    refused = 0
    with JoinClient(limited.address, cas) as flooder:  # one connection, many calls
        for _ in range(400):
            try:
                flooder.create_iam_challenge()
            except errors.RateLimitedError as e:
                refused += 1
                assert "too many join and ping calls from this address" in str(e)
    assert refused >= 150  # past the burst of 200, at 5 a second
    token = limited.ctl("bots", "add", "elsewhere", "--roles=access", "--format", "json").stdout
    relay = Relay(limited.address, "127.0.0.2")
    try:
        with JoinClient(relay.address, fetch_cluster_cas(relay.address)) as other:
            key = certs.new_key()
            reply = other.register_using_token(json.loads(token)["token"], certs.public_key_pem(key.public_key()))
            assert reply.bot_name == "elsewhere"
            other.create_iam_challenge()
    finally:
        relay.close()
    with JoinClient(limited.address, cas) as flooder, pytest.raises(errors.RateLimitedError):
        for _ in range(50):  # the flooding address is still held to its rate (5 a second)
            flooder.create_iam_challenge()
