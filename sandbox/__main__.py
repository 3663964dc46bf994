"""``python -m sandbox``: run both simulators on loopback, or dump the seed world.

    python -m sandbox up [--st-port 8801] [--spectrum-port 8802] [--host 127.0.0.1]
                         [--data-dir .stsync/sandbox] [--seed 42] [--companies 5]
                         [--latency-ms 0] [--no-seed]
    python -m sandbox seed [--seed 42] [--companies 5] [--big-ids] --out world.json

``up`` runs until SIGINT (Ctrl-C) or SIGTERM, then stops both servers cleanly.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sandbox.seed import SeedSpec, build_world, world_to_json

_DESCRIPTION = "Run both stsync simulators on loopback, or dump the seed world."


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _spec(args: argparse.Namespace) -> SeedSpec:
    try:
        return SeedSpec(seed=args.seed, companies=args.companies, big_ids=args.big_ids)
    except ValueError as exc:
        raise SystemExit(f"sandbox: {exc}") from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox", description=_DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)

    def world_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--seed", type=int, default=42, help="random seed of the world (42)")
        p.add_argument("--companies", type=int, default=5, help="customer companies (5)")
        p.add_argument("--big-ids", action="store_true", help="16-digit ServiceTrade ids")

    up = sub.add_parser("up", help="serve both simulators until Ctrl-C")
    up.add_argument("--st-port", type=int, default=8801, help="ServiceTrade port (8801; 0 = any)")
    up.add_argument("--spectrum-port", type=int, default=8802, help="Spectrum port (8802)")
    up.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    up.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".stsync/sandbox"),
        help="where spectrum.sqlite lives (.stsync/sandbox)",
    )
    up.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="added latency per request on both simulators (0)",
    )
    up.add_argument(
        "--no-seed",
        action="store_true",
        help="keep the existing Spectrum file; start ServiceTrade empty",
    )
    world_options(up)

    seed = sub.add_parser("seed", help="write the seed world as JSON")
    seed.add_argument("--out", type=Path, default=None, help="file to write (default: stdout)")
    world_options(seed)
    return parser


def _up(args: argparse.Namespace) -> int:
    # imported here so that ``seed`` works without the simulators' web stack
    from sandbox.credentials import (
        SPECTRUM_AUTHORIZATION_ID,
        SPECTRUM_COMPANY,
        ST_CLIENT_ID,
        ST_CLIENT_SECRET,
    )
    from sandbox.run import start_sandbox

    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    spec = None if args.no_seed else _spec(args)
    started = time.monotonic()
    sandbox = start_sandbox(
        args.data_dir,
        st_port=args.st_port,
        spectrum_port=args.spectrum_port,
        spec=spec,
        host=args.host,
        latency_ms=args.latency_ms,
    )
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        _out(f"ServiceTrade sandbox  {sandbox.st_url}/api")
        _out(f"Spectrum sandbox      {sandbox.spectrum_url}/ws/<Service>")
        _out(f"Info-Link (SQLite)    {sandbox.infolink_url}")
        _out(
            f"admin                 {sandbox.st_url}/_sandbox/faults, "
            f"{sandbox.spectrum_url}/_sandbox/faults"
        )
        _out(
            f"credentials           ServiceTrade client {ST_CLIENT_ID} / {ST_CLIENT_SECRET}; "
            f"Spectrum {SPECTRUM_COMPANY} / {SPECTRUM_AUTHORIZATION_ID}"
        )
        if sandbox.world is not None:
            s = sandbox.world.summary()
            _out(
                f"seeded                {s['customers']} customers, {s['location']} locations, "
                f"{s['job']} jobs, {s['invoice']} invoices, {s['timecard']} timecards, "
                f"{s['purchase_orders']} purchase orders "
                f"({time.monotonic() - started:.1f} s)"
            )
        else:
            _out("seeded                nothing (--no-seed)")
        _out("Ctrl-C stops both.")
        while not stop.wait(0.5):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sandbox.stop()
        _out("sandbox stopped")
    return 0


def _seed(args: argparse.Namespace) -> int:
    world = build_world(_spec(args))
    text = world_to_json(world, indent=1)
    if args.out is None:
        _out(text)
    else:
        args.out.write_text(text + "\n", encoding="utf-8")
        summary = world.summary()
        _out(
            f"wrote {args.out}: {summary['customers']} customers, {summary['job']} jobs, "
            f"{summary['invoice']} invoices, {summary['purchase_orders']} purchase orders"
        )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "up":
        return _up(args)
    return _seed(args)


if __name__ == "__main__":
    raise SystemExit(main())
