"""The real ingest as a process of its own, so a harness can SIGKILL it mid-delivery (issue 15).

    python -m bench.ingest_proc --port N --ready FILE [--hold FILE]

Serves ``ingest.serve.app_from_environment`` (the production app, configured from the
environment ``bench.stack`` builds) under uvicorn on a socket bound with ``SO_REUSEPORT``, so a
replacement process can listen on the same port before the old one is killed: a supervisor's
restart that is up before ServiceTrade's retries (3 tries ~immediately, reference §10.6) are
spent. Writes ``--ready`` once it accepts connections.

The hold (bench only; the production app has no such hook): with ``--hold FILE``, once FILE
exists the *first* webhook delivery after that, in whichever armed process gets it (they claim
it by creating ``FILE.claim`` exclusively), is held and never answered, and ``FILE.held`` is
written with ``<pid> <mode> <messageId>``. FILE's content is the mode:

- ``before``: the request was received and its body read, the app never saw it;
- ``after``: the app processed it (inbox row committed, tasks in Redis, duplicates noted) and
  produced its 202, which is never sent.

Either way the delivery is "between receiving and answering" when the harness SIGKILLs the
process; ServiceTrade's retry then reaches the replacement.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import uvicorn

Scope = dict[str, Any]


class HoldOneDelivery:
    """ASGI wrapper: hold the first webhook delivery that arrives once ``hold`` exists."""

    def __init__(self, app: Any, hold: Path) -> None:
        self.app = app
        self.hold = hold

    def _take(self) -> str | None:
        """The hold mode if this delivery is the one to hold (one in all armed processes)."""
        if not self.hold.exists():
            return None
        try:
            fd = os.open(f"{self.hold}.claim", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return None
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        return self.hold.read_text().strip() or "after"

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/webhooks/"):
            await self.app(scope, receive, send)
            return
        mode = self._take()
        if mode is None:
            await self.app(scope, receive, send)
            return
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if not message.get("more_body"):
                break
        try:
            message_id = str(json.loads(bytes(body)).get("messageId"))
        except (ValueError, AttributeError):
            message_id = "?"
        if mode == "after":
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if replayed:
                    return {"type": "http.disconnect"}
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            answer: dict[str, Any] = {}

            async def keep(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    answer["status"] = message["status"]

            await self.app(scope, replay, keep)
            mode = f"after {answer.get('status')}"
        tmp = Path(f"{self.hold}.held.tmp")
        tmp.write_text(f"{os.getpid()} {mode} {message_id}\n")
        tmp.rename(f"{self.hold}.held")  # whole or absent for the harness
        await anyio.sleep(3600)  # never answered: the harness kills the process


def main(argv: list[str] | None = None) -> int:
    from ingest.serve import app_from_environment

    p = argparse.ArgumentParser(prog="python -m bench.ingest_proc")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--ready", type=Path, required=True)
    p.add_argument("--hold", type=Path, default=None)
    args = p.parse_args(argv)
    app: Any = app_from_environment()
    if args.hold is not None:
        app = HoldOneDelivery(app, args.hold)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(("127.0.0.1", args.port))
    server = uvicorn.Server(
        uvicorn.Config(app, access_log=False, log_level="warning", log_config=None)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            return 1
        time.sleep(0.02)
    args.ready.write_text("ready\n")
    thread.join()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
