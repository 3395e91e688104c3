"""`pulumi-resource-machineid`: the ResourceProvider gRPC plugin the Pulumi engine runs.

The port goes to stdout as the first line, as the engine expects; after that stdout is pointed at stderr so that
nothing else reaches the engine's protocol pipe. The engine starts the plugin several times per command, so start-up
time counts: the plugin loads only the protocol stubs of the `pulumi` package, not the whole SDK.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import signal
import sys
import threading
import types
from collections.abc import Callable
from concurrent import futures


def _light_pulumi_protos() -> None:
    """Make `pulumi.runtime.proto.X` importable without running `pulumi/__init__` (the SDK, ~0.1 s).

    Only for the plugin process, which needs the stubs and nothing else of the SDK."""
    if "pulumi" in sys.modules:
        return
    spec = importlib.util.find_spec("pulumi")
    if spec is None or not spec.submodule_search_locations:
        return
    base = next(iter(spec.submodule_search_locations))
    for name, sub in (("pulumi", ""), ("pulumi.runtime", "runtime"), ("pulumi.runtime.proto", "runtime/proto")):
        module = types.ModuleType(name)
        module.__path__ = [os.path.join(base, sub)]
        sys.modules[name] = module


def _engine_address(argv: list[str]) -> str:
    positional = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--tracing", "--root"):
            skip = True
            continue
        if arg.startswith("-"):
            continue
        positional.append(arg)
    return positional[-1] if positional else ""


USAGE = """pulumi-resource-machineid: the machineid resource provider for Pulumi.

The Pulumi engine starts this program itself; it is not run by hand. Install it into Pulumi's plugin cache,
where the engine looks for it:

    machineid pulumi install
"""


def warm() -> None:
    """What serving needs, imported ahead (the fork server does this once, before it forks)."""
    _light_pulumi_protos()
    import grpc  # noqa: F401
    from pulumi.runtime.proto import provider_pb2_grpc  # noqa: F401

    from machineid.pulumi.servicer import Servicer  # noqa: F401


def main(argv: list[str] | None = None, alive: Callable[[], bool] | None = None) -> int:
    """Serve until SIGTERM/SIGINT, or (in a fork server's child) until `alive` says the launcher is gone."""
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return 0
    _light_pulumi_protos()
    import grpc
    from pulumi.runtime.proto import provider_pb2_grpc

    from machineid.pulumi.servicer import Servicer

    logging.basicConfig(level=os.environ.get("MACHINEID_PROVIDER_LOG", "WARNING").upper(), stream=sys.stderr)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="provider"),
                         options=[("grpc.max_receive_message_length", 64 << 20)])
    provider_pb2_grpc.add_ResourceProviderServicer_to_server(Servicer(_engine_address(argv)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    sys.stdout.write(f"{port}\n")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # later prints must not reach the engine's protocol pipe
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    gone = threading.Event()
    if alive is not None:
        def watch() -> None:
            while not done.wait(0.05):
                if not alive():
                    # The engine killed the launcher and now waits for EOF on the pipes it gave the plugin, which
                    # this child holds: let go of them at once, and stop without a grace period (nobody listens).
                    devnull = os.open(os.devnull, os.O_RDWR)
                    for fd in (0, 1, 2):
                        os.dup2(devnull, fd)
                    gone.set()
                    done.set()

        threading.Thread(target=watch, name="launcher-watch", daemon=True).start()
    done.wait()
    server.stop(0 if gone.is_set() else 2).wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
