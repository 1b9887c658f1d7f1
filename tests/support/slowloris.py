"""A slowloris flood, as a process of its own: `python -m tests.support.slowloris ...`.

It opens `--connections` TCP connections to the server from `--source`, each sending the
start of a request and then one more header line every `--line-every-s` seconds, never
ending its headers, and holds each one until the server closes it. It prints one JSON
object: how many connected, how long the server took to close each one (seconds), and
how many the server had not closed after `--give-up-s`.

It runs apart from the test so that its own event loop, busy with thousands of sockets,
does not delay the probes whose latency the test measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from dataclasses import dataclass, field

HEAD = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n"


@dataclass
class Flood:
    host: str
    port: int
    source: str
    line_every_s: float
    give_up_s: float
    closed_after_s: list[float] = field(default_factory=list)
    never_closed: int = 0
    connect_failed: int = 0

    async def one(self, opening: asyncio.Semaphore) -> None:
        async with opening:
            try:
                reader, writer = await asyncio.open_connection(
                    self.host, self.port, local_addr=(self.source, 0)
                )
            except OSError:
                self.connect_failed += 1
                return
        connected = time.monotonic()
        try:
            writer.write(HEAD)
            async with asyncio.timeout(self.give_up_s):
                trickle = asyncio.create_task(self.trickle(writer))
                try:
                    while await reader.read(4096):
                        pass
                finally:
                    trickle.cancel()
            self.closed_after_s.append(time.monotonic() - connected)
        except TimeoutError:
            self.never_closed += 1
        except OSError:  # reset by the server: closed all the same
            self.closed_after_s.append(time.monotonic() - connected)
        finally:
            writer.close()

    async def trickle(self, writer: asyncio.StreamWriter) -> None:
        for n in range(1_000_000):
            await asyncio.sleep(self.line_every_s)
            writer.write(b"X-Slow-%d: 1\r\n" % n)


async def flood(args: argparse.Namespace) -> dict[str, object]:
    attack = Flood(args.host, args.port, args.source, args.line_every_s, args.give_up_s)
    opening = asyncio.Semaphore(args.in_flight)
    started = time.monotonic()
    await asyncio.gather(*(attack.one(opening) for _ in range(args.connections)))
    return {
        "connections": args.connections,
        "connected": len(attack.closed_after_s) + attack.never_closed,
        "connect_failed": attack.connect_failed,
        "closed_after_s": attack.closed_after_s,
        "never_closed": attack.never_closed,
        "elapsed_s": time.monotonic() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="127.0.0.2")
    parser.add_argument("--connections", type=int, default=20_000)
    parser.add_argument("--in-flight", type=int, default=500, help="connects under way at once")
    parser.add_argument("--line-every-s", type=float, default=5.0)
    parser.add_argument("--give-up-s", type=float, default=60.0)
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(flood(args))))


if __name__ == "__main__":
    main()
