"""The SNI router in front of the cluster's two internal listeners: routing by server name, byte-exact splicing in
both directions (also when one side is slow to read), closing, and dropping clients that never say hello.

The upstreams here are plain Unix-socket servers, because the router only moves bytes; the real gRPC listeners
behind it are exercised by every test that talks to a server (tests/test_cluster_api.py and others)."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from machineid.cluster.router import SNIRouter, parse_sni


def client_hello(server_name: str | None) -> bytes:
    """A real TLS ClientHello, as Python's ssl writes it, asking for server_name (or for none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


@dataclass
class Upstream:
    """A Unix-socket listener that runs `behaviour(conn, hello)` for each connection it accepts."""

    path: str
    behaviour: Callable[[socket.socket, bytes], None]
    hellos: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            header = recv_exactly(conn, 5)
            hello = header + recv_exactly(conn, int.from_bytes(header[3:5], "big"))
            self.hellos.append(hello)
            self.behaviour(conn, hello)


def recv_exactly(conn: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = conn.recv(min(65536, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def recv_all(conn: socket.socket) -> bytes:
    buf = bytearray()
    while chunk := conn.recv(65536):
        buf += chunk
    return bytes(buf)


def echo(conn: socket.socket, hello: bytes) -> None:
    while chunk := conn.recv(65536):
        conn.sendall(chunk)


def tag(name: bytes) -> Callable[[socket.socket, bytes], None]:
    def behaviour(conn: socket.socket, hello: bytes) -> None:
        conn.sendall(name)
    return behaviour


@pytest.fixture
def sockdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="mid-router-") as d:  # short: Unix socket paths are limited
        yield Path(d)


def start_router(routes: dict[str, str], default: str, **kw: Any) -> SNIRouter:
    router = SNIRouter("127.0.0.1", 0, routes, default, **kw)
    router.start()
    return router


def connect(router: SNIRouter) -> socket.socket:
    return socket.create_connection(router.address[:2], timeout=10)


def test_routes_each_connection_by_server_name(sockdir: Path) -> None:
    auth = Upstream(str(sockdir / "auth.sock"), tag(b"auth"))
    join = Upstream(str(sockdir / "join.sock"), tag(b"join"))
    router = start_router({"auth.cluster.test": auth.path, "join.cluster.test": join.path}, default=join.path)
    try:
        for name, want in [("auth.cluster.test", b"auth"), ("AUTH.Cluster.Test", b"auth"),
                           ("join.cluster.test", b"join"), ("other.example", b"join"), (None, b"join")]:
            hello = client_hello(name)
            assert parse_sni(hello) == (name.lower() if name else None)
            with connect(router) as c:
                c.sendall(hello)
                assert recv_all(c) == want, name
        assert hello in join.hellos  # the upstream gets the ClientHello byte for byte
    finally:
        router.stop()


def test_splices_large_transfers_both_ways_byte_exact(sockdir: Path) -> None:
    up = Upstream(str(sockdir / "echo.sock"), echo)
    router = start_router({}, default=up.path)
    payload = os.urandom(8 << 20)  # more than the router buffers per direction: backpressure must hold
    try:
        with connect(router) as c:
            c.sendall(client_hello("join.cluster.test"))
            sender = threading.Thread(target=c.sendall, args=(payload,))
            sender.start()
            time.sleep(0.3)  # let the router's buffers fill while nobody reads the echo
            got = recv_exactly(c, len(payload))
            sender.join()
        assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    finally:
        router.stop()


def test_upstream_close_delivers_everything_then_eof(sockdir: Path) -> None:
    blob = os.urandom(3 << 20)

    def send_and_close(conn: socket.socket, hello: bytes) -> None:
        conn.sendall(blob)

    up = Upstream(str(sockdir / "blob.sock"), send_and_close)
    router = start_router({}, default=up.path)
    try:
        with connect(router) as c:
            c.sendall(client_hello("join.cluster.test"))
            time.sleep(0.3)  # the upstream has closed by now; the router still owes most of the blob
            assert recv_all(c) == blob
    finally:
        router.stop()


def test_client_that_never_says_hello_is_dropped(sockdir: Path) -> None:
    up = Upstream(str(sockdir / "x.sock"), echo)
    router = start_router({}, default=up.path, hello_timeout=0.5)
    try:
        with connect(router) as c:
            c.sendall(b"\x16\x03")  # a partial record header, then silence
            start = time.monotonic()
            assert c.recv(10) == b""  # closed by the router
            assert time.monotonic() - start < 5
        assert up.hellos == []
        with connect(router) as c:  # and the router still serves others
            c.sendall(client_hello("join.cluster.test") + b"ping")
            time.sleep(0.1)
            c.shutdown(socket.SHUT_WR)
            assert recv_all(c) == b"ping"
    finally:
        router.stop()


def test_unreachable_listener_closes_the_client(sockdir: Path) -> None:
    router = start_router({}, default=str(sockdir / "missing.sock"))
    try:
        with connect(router) as c:
            c.sendall(client_hello("join.cluster.test"))
            assert recv_all(c) == b""
    finally:
        router.stop()


def test_parse_sni_rejects_what_is_not_a_client_hello() -> None:
    assert parse_sni(b"") is None
    assert parse_sni(b"GET / HTTP/1.1\r\n\r\n") is None
    assert parse_sni(client_hello("auth.cluster.test")[:40]) is None  # truncated


def test_bytes_crossing_the_upstreams_close_do_not_cut_what_it_sent(sockdir: Path) -> None:
    """The upstream sends a large answer and closes; the client, still reading, sends a few bytes (a TLS alert, an
    HTTP/2 frame) that can no longer be delivered. The client still gets the whole answer, then EOF."""
    answer = os.urandom(5 << 20)
    sent = threading.Event()

    def answer_and_close(conn: socket.socket, hello: bytes) -> None:
        conn.sendall(answer)
        sent.set()

    up = Upstream(str(sockdir / "a.sock"), answer_and_close)
    router = start_router({}, default=up.path)
    try:
        with socket.socket() as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)  # most of the answer waits in the router
            c.settimeout(10)
            c.connect(router.address[:2])
            c.sendall(client_hello("join.cluster.test"))
            assert sent.wait(10)
            time.sleep(0.3)  # the upstream has closed by now
            c.sendall(b"late bytes from the client")
            time.sleep(0.3)
            assert hashlib.sha256(recv_all(c)).digest() == hashlib.sha256(answer).digest()
    finally:
        router.stop()


def record(content_type: int, payload: bytes) -> bytes:
    return bytes([content_type, 3, 3]) + len(payload).to_bytes(2, "big") + payload


def test_a_full_address_evicts_its_oldest_unfinished_handshake_instead_of_refusing(sockdir: Path) -> None:
    """Stalled connections topped up to the per-address cap used to turn away every new connection from that
    address, its admin calls and renewals included: the newcomer now evicts the oldest one still handshaking."""
    up = Upstream(str(sockdir / "cap.sock"), echo)
    router = start_router({}, default=up.path, max_per_source=3, hello_grace=0.0)
    held = [connect(router) for _ in range(3)]  # they never say hello
    try:
        with connect(router) as fresh:
            fresh.sendall(client_hello("join.cluster.test") + record(0x17, b"data"))
            assert recv_exactly(fresh, 9)[5:] == b"data"  # served, past its handshake
            more = [connect(router) for _ in range(3)]  # stallers again: they evict each other, not `fresh`
            fresh.sendall(record(0x17, b"more"))
            assert recv_exactly(fresh, 9)[5:] == b"more"
            held += more
        held[0].settimeout(5)
        assert held[0].recv(10) == b""  # the oldest staller went first
    finally:
        for c in held:
            c.close()
        router.stop()
    router = start_router({}, default=up.path, max_connections=2)
    held = [connect(router) for _ in range(2)]
    try:
        with connect(router) as extra:
            assert extra.recv(10) == b""  # the total cap still refuses
    finally:
        for c in held:
            c.close()
        router.stop()


def test_anonymous_connections_past_their_handshake_are_capped_per_address(sockdir: Path) -> None:
    up = Upstream(str(sockdir / "anon.sock"), echo)
    router = start_router({}, default=up.path, max_per_source=2, anonymous=(up.path,))
    open_ = []
    try:
        for _ in range(2):
            c = connect(router)
            c.sendall(client_hello("join.cluster.test") + record(0x17, b"data"))
            assert recv_exactly(c, 9)[5:] == b"data"
            open_.append(c)
        with connect(router) as third:
            third.sendall(client_hello("join.cluster.test") + record(0x17, b"data"))
            assert b"data" not in recv_all(third)  # closed at its handshake's end: two are open from here
        open_.pop().close()
        time.sleep(0.3)
        with connect(router) as again:
            again.sendall(client_hello("join.cluster.test") + record(0x17, b"data"))
            assert recv_exactly(again, 9)[5:] == b"data"
    finally:
        for c in open_:
            c.close()
        router.stop()


def test_a_client_that_stalls_after_its_hello_is_dropped_at_the_handshake_deadline(sockdir: Path) -> None:
    up = Upstream(str(sockdir / "hs.sock"), echo)
    router = start_router({}, default=up.path, handshake_timeout=0.5)
    try:
        with connect(router) as staller:
            staller.sendall(client_hello("join.cluster.test") + record(0x14, b"\x01") + record(0x16, b"half"))
            start = time.monotonic()
            assert recv_all(staller).endswith(b"half")  # echoed, then closed: the handshake never completed
            assert time.monotonic() - start < 5
        with connect(router) as done:  # a client whose first application data record came in time stays
            done.sendall(client_hello("join.cluster.test") + record(0x16, b"fin"))
            done.sendall(record(0x17, b"app"))
            time.sleep(1.2)
            done.sendall(record(0x17, b"later"))
            got = recv_exactly(done, 8 + 8 + 10)  # the upstream echoes everything after the hello
            assert got.endswith(b"later")
    finally:
        router.stop()


def test_anonymous_connections_are_rate_limited_per_address(sockdir: Path) -> None:
    join = Upstream(str(sockdir / "j.sock"), tag(b"join"))
    auth = Upstream(str(sockdir / "a.sock"), tag(b"auth"))
    router = SNIRouter("127.0.0.1", 0, {"auth.c.test": auth.path, "join.c.test": join.path}, join.path,
                       anonymous=(join.path,), anonymous_rate=2.0, anonymous_burst=3.0)
    router.start()

    def ask(name: str) -> bytes:
        with connect(router) as c:
            c.sendall(client_hello(name))
            return recv_all(c)

    try:
        assert [ask("join.c.test") for _ in range(3)] == [b"join"] * 3  # the burst
        assert ask("join.c.test") == b""  # over the rate: closed
        assert ask("auth.c.test") == b"auth"  # authenticated traffic (renewals) is not limited
        time.sleep(0.6)
        assert ask("join.c.test") == b"join"  # the bucket refills
    finally:
        router.stop()


def test_handshakes_waiting_on_a_busy_server_are_not_evicted_but_stallers_still_are(sockdir: Path) -> None:
    """A stampede of agents behind one address, arriving while the server is slow to answer their ClientHellos:
    every one beyond the per-address cap used to evict the oldest, which was waiting on the server, not stalling
    (each evicted agent failed its renewal and retried). Now only handshakes that wait on their client count, and
    a burst the server answers at once has a moment (client_grace) to answer back before it counts as stalling."""
    release = threading.Event()

    def busy_server(conn: socket.socket, hello: bytes) -> None:
        release.wait(10)  # answers no ClientHello until released
        conn.sendall(record(0x16, b"server flight"))
        echo(conn, hello)

    up = Upstream(str(sockdir / "busy.sock"), busy_server)
    router = start_router({}, default=up.path, max_per_source=3)
    agents: list[socket.socket] = []
    try:
        for _ in range(10):  # all from 127.0.0.1, over the cap of 3, each saying hello at once
            agents.append(connect(router))
            agents[-1].sendall(client_hello("auth.cluster.test"))
            time.sleep(0.05)
        deadline = time.monotonic() + 5
        while len(up.hellos) < len(agents) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(up.hellos) == len(agents)  # every ClientHello reached the server: none was evicted
        release.set()
        for c in agents:  # each gets the server's answer and finishes its handshake
            assert recv_exactly(c, 5 + len(b"server flight"))[5:] == b"server flight"
        for i, c in enumerate(agents):
            c.sendall(record(0x17, f"app {i}".encode()))
            assert recv_exactly(c, 5 + len(f"app {i}"))[5:] == f"app {i}".encode()
    finally:
        release.set()
        for c in agents:
            c.close()
        router.stop()
    # Handshakes that the server answered and whose clients stall are still capped: the oldest goes.
    up = Upstream(str(sockdir / "answering.sock"), echo)
    router = start_router({}, default=up.path, max_per_source=3, client_grace=0.2)
    stallers: list[socket.socket] = []
    try:
        for _ in range(5):
            stallers.append(connect(router))
            stallers[-1].sendall(client_hello("auth.cluster.test") + record(0x16, b"x"))  # echoed: the server's
            time.sleep(0.3)  # turn is over; and past the grace a client has to answer the server
        for c in stallers[:2]:  # evicted, oldest first: five waited on their clients, three may
            c.settimeout(5)
            assert recv_all(c) == record(0x16, b"x")
        assert recv_exactly(stallers[4], 6) == record(0x16, b"x")
        stallers[4].sendall(record(0x17, b"late"))
        assert recv_exactly(stallers[4], 9) == record(0x17, b"late")
    finally:
        for c in stallers:
            c.close()
        router.stop()


def test_a_burst_of_connections_gets_a_moment_to_say_hello_up_to_a_hard_cap(sockdir: Path) -> None:
    """Many agents on one busy host connect at once and take a moment to send their ClientHellos: within
    hello_grace they are not taken for stallers, but an address never holds more than four times its cap."""
    up = Upstream(str(sockdir / "burst.sock"), echo)
    router = start_router({}, default=up.path, max_per_source=2, hello_grace=30.0)
    burst = [connect(router) for _ in range(8)]  # four times the cap, none has said hello yet
    try:
        time.sleep(0.3)
        for i, c in enumerate(burst):  # all still there: each says hello and is served
            c.sendall(client_hello("auth.cluster.test") + record(0x17, f"agent {i}".encode()))
            assert recv_exactly(c, 5 + len(f"agent {i}"))[5:] == f"agent {i}".encode()
        more = [connect(router) for _ in range(9)]  # these stall: the ninth is past the hard cap of 8
        burst += more
        more[0].settimeout(5)
        assert more[0].recv(10) == b""  # the oldest went, young as it was
    finally:
        for c in burst:
            c.close()
        router.stop()


def held(name: bytes, release: threading.Event) -> Callable[[socket.socket, bytes], None]:
    """Answers its name, then keeps the connection open until `release`."""
    def behaviour(conn: socket.socket, hello: bytes) -> None:
        conn.sendall(name)
        release.wait(10)
    return behaviour


def test_several_workers_share_connections_by_load_and_unreachable_ones_are_passed_over(sockdir: Path) -> None:
    """A server with two worker processes: each connection goes to the less loaded worker (of equals, the next in
    turn), and a worker that cannot be reached (restarting) is passed over."""
    release = threading.Event()
    w0 = Upstream(str(sockdir / "w0-mtls.sock"), held(b"w0", release))
    w1 = Upstream(str(sockdir / "w1-mtls.sock"), held(b"w1", release))
    j0 = Upstream(str(sockdir / "w0-join.sock"), tag(b"j0"))
    j1 = Upstream(str(sockdir / "w1-join.sock"), tag(b"j1"))
    router = start_router({"auth.cluster.test": [w0.path, w1.path]}, default=[j0.path, j1.path],
                          anonymous=(j0.path, j1.path))
    open_conns: list[socket.socket] = []
    try:
        def auth() -> bytes:
            c = connect(router)
            open_conns.append(c)
            c.sendall(client_hello("auth.cluster.test"))
            return recv_exactly(c, 2)

        # Held open: each next one goes to the worker with fewer.
        assert sorted(auth() for _ in range(4)) == [b"w0", b"w0", b"w1", b"w1"]
        release.set()
        for c in open_conns:
            c.close()
        time.sleep(0.2)
        # One after another (none open): in turn.
        assert {auth() for _ in range(4)} == {b"w0", b"w1"}
        joins = set()
        for _ in range(4):
            with connect(router) as c:
                c.sendall(client_hello("join.cluster.test"))
                joins.add(recv_all(c))
        assert joins == {b"j0", b"j1"}
        w0.sock.close()
        os.unlink(w0.path)  # worker 0 is down: every authenticated connection goes to worker 1
        assert {auth() for _ in range(3)} == {b"w1"}
    finally:
        release.set()
        for c in open_conns:
            c.close()
        router.stop()


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "::1", "2001:db8::42"])
def test_a_workers_peer_name_carries_the_client_address(address: str) -> None:
    """gRPC in a worker process names the router's connection; the name carries the client's address."""
    from machineid.cluster.router import client_address, peer_suffix

    tag_ = "machineid-abc123-"
    assert client_address(f"unix-abstract:{tag_}7-{peer_suffix(address)}", tag_) == address
    assert client_address(f"unix-abstract:other-7-{peer_suffix(address)}", tag_).startswith("unix-abstract:")
    assert client_address("ipv4:10.0.0.1:5000", tag_) == "ipv4:10.0.0.1:5000"
