"""One public port, two TLS policies: route each connection by the TLS SNI to an internal gRPC listener.

gRPC's Python TLS either requires a client certificate or never asks for one, but the API needs both on one
address: mutual TLS for everything authenticated, and no client certificate for ping and join. Clients ask for
`auth.…` or `join.…` (machineid.api.certs); this router peeks at the ClientHello's server name and splices the raw
bytes to the matching listener. TLS still terminates in gRPC, end to end with the client; the router sees only
ciphertext.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import struct
import threading

log = logging.getLogger("machineid.cluster.router")
_MAX_HELLO = 16384 + 5


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


def _read_hello(conn: socket.socket) -> bytes:
    data = b""
    conn.settimeout(10)
    while len(data) < 5:
        chunk = conn.recv(5 - len(data))
        if not chunk:
            return data
        data += chunk
    need = 5 + struct.unpack_from("!H", data, 3)[0]
    while len(data) < min(need, _MAX_HELLO):
        chunk = conn.recv(min(need, _MAX_HELLO) - len(data))
        if not chunk:
            break
        data += chunk
    conn.settimeout(None)
    return data


class SNIRouter:
    def __init__(self, host: str, port: int, routes: dict[str, int], default_port: int) -> None:
        self.routes = {k.lower(): v for k, v in routes.items()}
        self.default_port = default_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(128)
        self.address = self.sock.getsockname()
        self._stop = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name="sni-router", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        with self._lock:
            for c in list(self._conns):
                with contextlib.suppress(OSError):
                    c.shutdown(socket.SHUT_RDWR)
                c.close()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            hello = _read_hello(client)
            if not hello:
                return
            port = self.routes.get(parse_sni(hello) or "", self.default_port)
            upstream = socket.create_connection(("127.0.0.1", port))
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._conns.update((client, upstream))
            upstream.sendall(hello)
            self._splice(client, upstream)
        except OSError as e:
            log.debug("router connection ended: %s", e)
        finally:
            with self._lock:
                self._conns.discard(client)
                if upstream is not None:
                    self._conns.discard(upstream)
            for s in (client, upstream):
                if s is not None:
                    s.close()

    def _splice(self, a: socket.socket, b: socket.socket) -> None:
        peer = {a: b, b: a}
        while not self._stop.is_set():
            readable, _, _ = select.select([a, b], [], [], 1.0)
            for s in readable:
                data = s.recv(65536)
                if not data:
                    return
                peer[s].sendall(data)
