"""One public port, two TLS policies: route each connection by the TLS SNI to an internal gRPC listener.

gRPC's Python TLS either requires a client certificate or never asks for one, but the API needs both on one
address: mutual TLS for everything authenticated, and no client certificate for ping and join. Clients ask for
`auth.…` or `join.…` (machineid.api.certs); this router peeks at the ClientHello's server name and splices the raw
bytes to the matching listener. TLS still terminates in gRPC, end to end with the client; the router sees only
ciphertext.

The internal listeners are Unix sockets in a private directory, and one thread multiplexes every connection with
epoll: a thread and a loopback TCP connection per client used to cost about 1.7 ms of server CPU per new
connection, and every bot renewal is a new connection (see benchmarks/bench_issuance.py).

The router is also where the client's address is still known, so it bounds what anonymous clients can hold: a cap
on connections per source address and in total (derived from the descriptor limit: each connection costs three),
a deadline for the ClientHello, and a deadline for the rest of the TLS handshake (the client's first application
data record), so a client that stalls mid-handshake frees its descriptors in seconds, not minutes.

The per-address cap must not be a lever against others behind that address (or against its own admin calls and
renewals): connections still in their handshake are capped per address, but one arriving at the cap evicts the
address's oldest one instead of being turned away, so a staller that keeps its quota topped up only evicts itself
while a real client's handshake (milliseconds) completes. Only a handshake waiting on its client counts (and can be
evicted): one whose ClientHello went to the server and that the server has not answered yet waits on the server,
which a client cannot stall. So when many agents behind one address come back at once (a stampede after an outage)
and the busy server takes a while to answer their ClientHellos, they queue at the server instead of evicting each
other (which failed every renewal beyond the cap and set off a storm of retries); the server's answer starts the
client's turn, capped and timed again. Anonymous connections past their handshake have a cap of their own;
authenticated ones (mutual TLS: the server closes a connection whose certificate it refuses during the handshake)
count only toward the total.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import itertools
import logging
import resource
import secrets
import selectors
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence

from machineid.cluster.limits import RateLimits

log = logging.getLogger("machineid.cluster.router")
_MAX_HELLO = 16384 + 5
_HELLO_TIMEOUT = 10.0  # seconds a client may take to send its ClientHello
_HANDSHAKE_TIMEOUT = 10.0  # seconds a client may then take to complete the TLS handshake (from the server's answer)
_SERVER_ANSWER_TIMEOUT = 60.0  # seconds a ClientHello may wait for the (busy) server's first answer
_CLIENT_GRACE = 5.0  # seconds a client may take to answer the server before it counts as stalling at the cap
_HELLO_GRACE = 1.0  # seconds a connection may take to bring its ClientHello before it counts as stalling at the cap
_HARD_CAP = 4  # x max_per_source: beyond this many waiting on them, an address's oldest goes, however young
_EVICTION_SCAN = 16  # connections looked at for one to evict, oldest first
MAX_PER_SOURCE = 256  # connections open at once from one address
JOIN_RATE = 50.0  # new connections per second, per address, to an anonymous route (joins, ping)
JOIN_BURST = 200.0
_APPLICATION_DATA = 0x17
_DESCRIPTORS_PER_CONNECTION = 3  # the client's socket, the router's upstream socket, gRPC's end of it
_RESERVED_DESCRIPTORS = 128  # for the database, logs, the listeners and gRPC's own
_CHUNK = 65536
_MAX_BUFFERED = 4 << 20  # per direction: stop reading a side whose peer is this far behind
_ACCEPT_PAUSE = 0.1  # seconds without accepting after the process ran out of descriptors or memory


def parse_sni(record: bytes) -> str | None:
    """Server name from a TLS ClientHello record, or None when absent or malformed."""
    try:
        if len(record) < 5 or record[0] != 0x16:
            return None
        body = record[5:]
        if body[0] != 0x01:
            return None
        pos = 4 + 2 + 32  # handshake header, client_version, random
        pos += 1 + body[pos]  # session id
        (n,) = struct.unpack_from("!H", body, pos)
        pos += 2 + n  # cipher suites
        pos += 1 + body[pos]  # compression methods
        (ext_total,) = struct.unpack_from("!H", body, pos)
        pos += 2
        end = pos + ext_total
        while pos + 4 <= end:
            ext_type, ext_len = struct.unpack_from("!HH", body, pos)
            pos += 4
            if ext_type == 0:  # server_name
                _list_len, name_type, name_len = struct.unpack_from("!HBH", body, pos)
                if name_type == 0:
                    return body[pos + 5 : pos + 5 + name_len].decode("ascii", "replace").lower()
            pos += ext_len
    except (IndexError, struct.error):
        return None
    return None


def hello_length(data: bytes) -> int | None:
    """How many bytes the ClientHello record needs (capped), once its 5-byte header is in."""
    if len(data) < 5:
        return None
    return min(5 + struct.unpack_from("!H", data, 3)[0], _MAX_HELLO)


def peer_suffix(source: str) -> str:
    """The client's address, as it goes into the upstream socket's name: hex of the packed address (gRPC names the
    peer by it, and colons or a scope there would not survive that)."""
    try:
        return ipaddress.ip_address(source.partition("%")[0]).packed.hex()
    except ValueError:
        return ""


def _paths(route: str | Sequence[str]) -> tuple[str, ...]:
    return (route,) if isinstance(route, str) else tuple(route)


def client_address(peer: str, tag: str) -> str:
    """The client's address behind gRPC's name for a connection from this router (`tag`: the router's, given to
    each worker): the name carries it, so a worker in another process learns it without asking. Any other peer
    (a direct connection) is named as it is."""
    prefix = "unix-abstract:" + tag
    if not peer.startswith(prefix):
        return peer
    _, _, packed = peer[len(prefix):].partition("-")
    try:
        return str(ipaddress.ip_address(bytes.fromhex(packed)))
    except ValueError:
        return peer


def default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(16, (soft - _RESERVED_DESCRIPTORS) // _DESCRIPTORS_PER_CONNECTION)


class _Side:
    """One socket of a spliced pair: what it still has to write to its socket, and its registered events. The
    client's side also tracks the TLS records it sends until the first application data record, which ends the
    handshake (in TLS 1.3 the client's Finished is the first; in 1.2 the HTTP/2 preface follows right after)."""

    __slots__ = (
        "anonymous",
        "closed",
        "counted",
        "eof",
        "events",
        "handshake_deadline",
        "out",
        "path",
        "peer",
        "record_header",
        "record_left",
        "server_turn",
        "shut",
        "since",
        "sock",
        "source",
    )

    def __init__(self, sock: socket.socket, source: str = "") -> None:
        self.sock = sock
        self.source = source  # the client's address; empty for the upstream side
        self.path = ""  # the upstream side's listener
        self.anonymous = False  # routed to a listener that takes no client certificate
        self.counted = False  # counted among its address's anonymous connections past the handshake
        self.handshake_deadline = 0.0  # 0 once the handshake is over (or for the upstream side)
        self.server_turn = False  # its ClientHello went upstream and the server has not answered yet
        self.since = 0.0  # when the server answered its ClientHello (monotonic)
        self.record_left = 0  # bytes of the current TLS record still to skip
        self.record_header = bytearray()
        self.out = bytearray()
        self.peer: _Side | None = None
        self.events = 0
        self.eof = False  # its socket has nothing more to read
        self.shut = False  # its socket's write side was shut down (its peer's EOF, passed on)
        self.closed = False

    def handshake_done(self, data: bytes) -> bool:
        """Scans what the client sent for the record header of its first application data record."""
        i = 0
        while i < len(data):
            if self.record_left:
                step = min(self.record_left, len(data) - i)
                self.record_left -= step
                i += step
                continue
            take = 5 - len(self.record_header)
            self.record_header += data[i:i + take]
            i += take
            if len(self.record_header) < 5:
                return False
            if self.record_header[0] == _APPLICATION_DATA:
                return True
            self.record_left = int.from_bytes(self.record_header[3:5], "big")
            self.record_header.clear()
        return False


class _Pending:
    """A client whose ClientHello is not complete yet."""

    __slots__ = ("data", "deadline", "since", "sock", "source")

    def __init__(self, sock: socket.socket, timeout: float, source: str) -> None:
        self.sock = sock
        self.source = source
        self.data = b""
        self.since = time.monotonic()
        self.deadline = self.since + timeout


class SNIRouter:
    def __init__(self, host: str, port: int, routes: Mapping[str, str | Sequence[str]],
                 default: str | Sequence[str],
                 hello_timeout: float = _HELLO_TIMEOUT, handshake_timeout: float = _HANDSHAKE_TIMEOUT,
                 max_per_source: int = MAX_PER_SOURCE, max_connections: int | None = None,
                 anonymous: tuple[str, ...] = (), anonymous_rate: float = JOIN_RATE,
                 anonymous_burst: float = JOIN_BURST, peer_tag: str = "",
                 client_grace: float = _CLIENT_GRACE, hello_grace: float = _HELLO_GRACE) -> None:
        """routes: server name -> Unix socket path of the listener, or the paths of several (one per worker process
        of the server); default: the path(s) for other names (and for a ClientHello without one). Of several, a
        connection goes to the one with the fewest connections open (of equals, the next in turn); one that cannot
        be reached (a worker restarting) is passed over. (The workers limit anonymous calls per address together:
        limits.SharedRateLimits.)

        A client that has not sent its ClientHello within hello_timeout, or completed
        the handshake within handshake_timeout after it, is dropped; connections beyond max_per_source from one
        address, or max_connections in all, are closed as they arrive. New connections to the `anonymous` listener
        paths are limited per address to anonymous_rate a second (anonymous_burst at once): the calls there need no
        certificate, so the address is all there is to hold a caller to.

        Each upstream connection is bound to a name of its own (`unix-abstract:TAG...`) that carries the client's
        address: the servicers behind the Unix sockets, in this process or another, learn who they serve from it
        (client_address with `peer_tag`), to limit calls per address."""
        self.routes = {k.lower(): _paths(v) for k, v in routes.items()}
        self.default = _paths(default)
        self._connected: Counter[str] = Counter()  # connections open per upstream path
        self._turn = 0
        self._unreachable_logged = 0.0
        self.hello_timeout = hello_timeout
        self.handshake_timeout = handshake_timeout
        self.max_per_source = max_per_source
        self.client_grace = client_grace
        self.hello_grace = hello_grace
        self.max_connections = max_connections or default_max_connections()
        # Per address: connections still in their handshake, oldest first (a _Pending before its ClientHello, then
        # the client's _Side), and anonymous connections past it.
        self._unproven: dict[str, dict[socket.socket, _Pending | _Side]] = {}
        self._anonymous_open: Counter[str] = Counter()
        self._evicted_logged = 0.0
        self.anonymous = frozenset(anonymous)
        self._anonymous_rate = RateLimits(anonymous_rate, anonymous_burst)
        self.peer_tag = peer_tag or f"machineid-{secrets.token_hex(6)}-"
        self._peer_seq = itertools.count()
        self._open = 0
        self._handshaking: set[_Side] = set()
        self._refused_logged = 0.0
        self.refused: Counter[str] = Counter()  # refusals by limit since the start (the server's metrics)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(512)
        self.sock.setblocking(False)
        self.address = self.sock.getsockname()
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.sock, selectors.EVENT_READ, None)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._pending: dict[socket.socket, _Pending] = {}
        self._accept_paused_until = 0.0  # monotonic time; 0 while the listener is registered
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sni-router", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread.is_alive():
            self._thread.join(5)

    # ------------------------------------------------------------------ event loop
    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                for key, events in self._sel.select(timeout=min(1.0, self.hello_timeout, self.handshake_timeout,
                                                                _ACCEPT_PAUSE)):
                    try:
                        self._dispatch(key.data, events)
                    except Exception:  # one connection's trouble must not stop the router
                        log.exception("router: dropping a connection after an unexpected error")
                        self._drop(key.data)
                self._expire_pending()
                self._expire_handshakes()
                self._resume_accepting()
        finally:
            self._close_all()

    def _dispatch(self, data: object, events: int) -> None:
        if data is None:
            self._accept()
        elif data == "wake":
            with contextlib.suppress(OSError):
                self._wake_r.recv(64)
        elif isinstance(data, _Pending):
            self._read_hello(data)
        else:
            assert isinstance(data, _Side)
            if events & selectors.EVENT_WRITE and not data.closed:
                self._flush(data)
            if events & selectors.EVENT_READ and not data.closed:
                self._pump(data)

    def _drop(self, data: object) -> None:
        if isinstance(data, _Pending):
            self._drop_pending(data)
        elif isinstance(data, _Side):
            self._close(data)

    def _accept(self) -> None:
        for _ in range(64):  # drain the backlog, but let established connections move too
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                if e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # The backlog stays readable: stop watching it for a moment instead of spinning.
                    log.warning("router cannot accept connections for now (%s); pausing %.1fs", e, _ACCEPT_PAUSE)
                    self._sel.unregister(self.sock)
                    self._accept_paused_until = time.monotonic() + _ACCEPT_PAUSE
                return
            try:
                conn.setblocking(False)
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                conn.close()
                continue
            source = str(addr[0]) if isinstance(addr, tuple) else ""
            if self._open >= self.max_connections:
                conn.close()
                self._log_refusal(source, limit="connections")
                continue
            self._open += 1
            pending = _Pending(conn, self.hello_timeout, source)
            self._hold(source, conn, pending)
            self._pending[conn] = pending
            self._sel.register(conn, selectors.EVENT_READ, pending)

    def _log_refusal(self, source: str, why: str = "", *, limit: str) -> None:
        self.refused[limit] += 1
        now = time.monotonic()
        if now - self._refused_logged >= 10.0:  # a flood must not flood the log too
            self._refused_logged = now
            why = why or f"{self._open} open in all, the limit is {self.max_connections}"
            log.warning("router: refusing connections (%s)", why)

    def _hold(self, source: str, sock: socket.socket, conn: _Pending | _Side) -> None:
        """Counts a connection whose handshake now waits on its client (last in its address's order). At the
        address's cap, its oldest such connection that is stalling goes: one without a whole ClientHello for
        hello_grace, or one the server answered more than client_grace ago (a real client sends its hello right
        after connecting and answers the server in milliseconds; a busy client, such as many agents on one host
        coming back at once, takes longer). When none is that old, none goes, up to _HARD_CAP times the cap, where
        the oldest goes however young: an address never holds more than that."""
        waiting = self._unproven.setdefault(source, {})
        waiting.pop(sock, None)
        if len(waiting) >= self.max_per_source:
            now = time.monotonic()
            hard = len(waiting) >= _HARD_CAP * self.max_per_source
            # The oldest first (the order is by when each began to wait on its client), and only a few: a burst
            # of young connections must not cost a scan of them all for each new one.
            for c in list(itertools.islice(waiting.values(), _EVICTION_SCAN)):
                if len(waiting) < self.max_per_source:
                    break
                if isinstance(c, _Pending):
                    # Under load the router may not have read a ClientHello that is already here: read it now
                    # (its connection then waits on the server) rather than evict it with its connection.
                    self._try_hello(c)
                    if c.sock not in self._pending or (not hard and now - c.since < self.hello_grace):
                        continue
                elif not hard and now - c.since < self.client_grace:
                    continue
                self._evict(source, c, len(waiting))
                break
            waiting = self._unproven.setdefault(source, {})
        waiting[sock] = conn

    def _try_hello(self, p: _Pending) -> None:
        while p.sock in self._pending:
            before = len(p.data)
            self._read_hello(p)
            if len(p.data) == before:
                return

    def _evict(self, source: str, oldest: _Pending | _Side, count: int) -> None:
        """Makes room for a new connection from an address at its cap by dropping one that has still not finished
        its handshake."""
        self.refused["handshakes_per_source"] += 1
        now = time.monotonic()
        if now - self._evicted_logged >= 10.0:
            self._evicted_logged = now
            log.warning("router: %d connections from %s have not finished their TLS handshake, which waits on "
                        "them (the limit per address); dropping the oldest for each new one", count, source)
        if isinstance(oldest, _Pending):
            self._drop_pending(oldest)
        else:
            self._close(oldest)

    def _forget(self, source: str, sock: socket.socket) -> None:
        waiting = self._unproven.get(source)
        if waiting is not None and waiting.pop(sock, None) is not None and not waiting:
            del self._unproven[source]

    def _release(self, source: str, sock: socket.socket) -> None:
        self._open -= 1
        self._forget(source, sock)

    def _resume_accepting(self) -> None:
        if self._accept_paused_until and time.monotonic() >= self._accept_paused_until:
            self._accept_paused_until = 0.0
            self._sel.register(self.sock, selectors.EVENT_READ, None)

    def _read_hello(self, p: _Pending) -> None:
        try:
            need = hello_length(p.data) or 5
            chunk = p.sock.recv(need - len(p.data))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self._drop_pending(p)
            return
        p.data += chunk
        total = hello_length(p.data)
        if total is None or len(p.data) < total:
            return
        self._sel.unregister(p.sock)
        del self._pending[p.sock]
        paths = self.routes.get(parse_sni(p.data) or "", self.default)
        anonymous = paths[0] in self.anonymous
        if anonymous and not self._anonymous_rate.allow(p.source, time.monotonic()):
            p.sock.close()
            self._release(p.source, p.sock)
            self._log_refusal(p.source, f"anonymous connections from {p.source} beyond "
                              f"{self._anonymous_rate.rate:g} a second", limit="anonymous_connection_rate")
            return
        upstream = self._connect_upstream(self._order(paths), p.source)
        if upstream is None:
            p.sock.close()
            self._release(p.source, p.sock)
            return
        sock, path = upstream
        client, server = _Side(p.sock, p.source), _Side(sock)
        server.path = path
        self._connected[path] += 1
        client.anonymous = anonymous
        client.peer, server.peer = server, client
        self._forget(p.source, p.sock)  # the server's turn: it is not this client that the handshake waits on
        client.server_turn = True
        client.handshake_deadline = time.monotonic() + max(self.handshake_timeout, _SERVER_ANSWER_TIMEOUT)
        self._handshaking.add(client)
        server.out += p.data
        self._update(client)
        self._flush(server)

    def _order(self, paths: tuple[str, ...]) -> tuple[str, ...]:
        """The upstreams to try, best first: the least loaded; of equals, the next in turn (so that one client's
        connections in a row spread too)."""
        n = len(paths)
        if n == 1:
            return paths
        self._turn = (self._turn + 1) % n
        first = min(((self._turn + k) % n for k in range(n)), key=lambda i: self._connected[paths[i]])
        return paths[first:] + paths[:first]

    def _connect_upstream(self, paths: tuple[str, ...], source: str) -> tuple[socket.socket, str] | None:
        for path in paths:
            try:
                upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            except OSError as e:  # out of descriptors
                log.warning("router cannot open a connection to the internal listener: %s", e)
                return None
            name = f"{self.peer_tag}{next(self._peer_seq)}-{peer_suffix(source)}"
            try:
                upstream.setblocking(False)
                upstream.bind("\0" + name)  # Linux's abstract namespace: no file, gone with the socket
                upstream.connect(path)  # a local Unix socket: immediate, or EAGAIN when its backlog is full
            except OSError as e:
                upstream.close()
                now = time.monotonic()
                if now - self._unreachable_logged >= 10.0:  # a worker down must not flood the log either
                    self._unreachable_logged = now
                    log.warning("router cannot reach the internal listener %s: %s", path, e)
                continue
            return upstream, path
        return None

    def _expire_pending(self) -> None:
        if not self._pending:
            return
        now = time.monotonic()
        for p in [p for p in self._pending.values() if p.deadline < now]:
            self._drop_pending(p)

    def _drop_pending(self, p: _Pending) -> None:
        if self._pending.pop(p.sock, None) is not None:
            self._release(p.source, p.sock)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(p.sock)
        p.sock.close()

    def _expire_handshakes(self) -> None:
        if not self._handshaking:
            return
        now = time.monotonic()
        for side in [s for s in self._handshaking if s.handshake_deadline < now]:
            self._close(side)

    # ------------------------------------------------------------------ splicing
    def _pump(self, side: _Side) -> None:
        """Read what `side` has and pass it to its peer."""
        peer = side.peer
        assert peer is not None
        try:
            data = side.sock.recv(_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:  # reset: nothing more comes from it, and nothing more can go to it
            side.eof = True
            if self._write_failed(side):
                return
            self._end_direction(side)
            return
        if data and peer.server_turn and peer.handshake_deadline and not peer.closed:
            # The server answered the ClientHello: from here the handshake waits on the client (counted, timed).
            peer.server_turn = False
            peer.since = time.monotonic()
            peer.handshake_deadline = peer.since + self.handshake_timeout
            self._hold(peer.source, peer.sock, peer)
        if side.handshake_deadline and data and side.handshake_done(data):
            side.handshake_deadline = 0.0
            side.server_turn = False
            self._handshaking.discard(side)
            self._forget(side.source, side.sock)
            if side.anonymous:
                if self._anonymous_open[side.source] >= self.max_per_source:
                    self._log_refusal(side.source, f"{self._anonymous_open[side.source]} anonymous connections "
                                      f"from {side.source}, the limit per address",
                                      limit="anonymous_connections_per_source")
                    self._close(side)
                    return
                self._anonymous_open[side.source] += 1
                side.counted = True
        if not data:
            side.eof = True
            self._end_direction(side)
            return
        peer.out += data
        self._flush(peer)

    def _flush(self, side: _Side) -> None:
        """Write what `side` owes; wait for writability when its socket is full, and hold its peer's reads back
        while too much is queued."""
        while side.out:
            try:
                sent = side.sock.send(side.out)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._write_failed(side)
                return
            del side.out[:sent]
        peer = side.peer
        assert peer is not None
        if not side.out and peer.eof:
            self._end_direction(peer)
            return
        self._update(side)
        self._update(peer)

    def _end_direction(self, src: _Side) -> None:
        """`src` reached EOF: once its peer has written everything, pass the EOF on (a half-close); once both
        directions have ended, close both sockets."""
        dst = src.peer
        assert dst is not None
        if dst.out:
            self._update(src)  # stop reading src; _flush(dst) comes back here when drained
            self._update(dst)
            return
        if not dst.shut:
            dst.shut = True
            with contextlib.suppress(OSError):  # already gone: the direction has ended all the same
                dst.sock.shutdown(socket.SHUT_WR)
        if dst.eof and src.shut:
            self._close(src)
            return
        self._update(src)
        self._update(dst)

    def _write_failed(self, side: _Side) -> bool:
        """`side` can take no more data: the direction towards it has ended (what was queued for it is lost, as it
        would be without the router), while the other direction still delivers what it has. True when closed."""
        peer = side.peer
        assert peer is not None
        side.out.clear()
        side.shut = True
        peer.eof = True  # stop reading what could not be delivered
        if side.eof and peer.shut:
            self._close(side)
            return True
        self._update(side)
        self._update(peer)
        return False

    def _update(self, side: _Side) -> None:
        """(Re)register the socket for what it waits for now: reads unless its peer is backed up, writes while it
        owes data. A socket waiting for nothing is unregistered until its peer drains."""
        if side.closed:
            return
        peer = side.peer
        assert peer is not None
        reading = not side.eof and len(peer.out) < _MAX_BUFFERED
        events = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if side.out else 0)
        if events == side.events:
            return
        if side.events == 0:
            self._sel.register(side.sock, events, side)
        elif events == 0:
            self._sel.unregister(side.sock)
        else:
            self._sel.modify(side.sock, events, side)
        side.events = events

    def _close(self, side: _Side) -> None:
        for s in (side, side.peer):
            if s is None or s.closed:
                continue
            s.closed = True
            if s.source:
                self._release(s.source, s.sock)
                self._handshaking.discard(s)
                if s.counted:
                    self._anonymous_open[s.source] -= 1
                    if self._anonymous_open[s.source] <= 0:
                        del self._anonymous_open[s.source]
            elif s.path:
                self._connected[s.path] -= 1
            if s.events:
                self._sel.unregister(s.sock)
                s.events = 0
            s.sock.close()

    def _close_all(self) -> None:
        for key in list(self._sel.get_map().values()):
            data = key.data
            if isinstance(data, _Side):
                self._close(data)
            elif isinstance(data, _Pending):
                data.sock.close()
        self._sel.close()
        self.sock.close()
        self._wake_r.close()
        self._wake_w.close()
