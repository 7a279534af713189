"""``debleed ports``: list JACK ports and their connections."""

from __future__ import annotations

from debleed.errors import DebleedError


def cmd_ports(args) -> int:
    import jack

    try:
        client = jack.Client("debleed-ports", no_start_server=True, servername=args.server)
    except jack.JackOpenError:
        raise DebleedError("no JACK server is running (start jackd first)") from None
    try:
        for p in client.get_ports():
            kind = "midi" if p.is_midi else "audio"
            direction = "out" if p.is_output else "in"
            conns = ", ".join(c.name for c in client.get_all_connections(p))
            print(f"{p.name:40s} {kind:5s} {direction:3s}" + (f"  -> {conns}" if conns else ""))
    finally:
        client.close()
    return 0


def register(sub) -> None:
    """Add ``ports`` to the ``debleed`` subparsers."""
    ports = sub.add_parser("ports", help="list JACK ports and their connections")
    ports.add_argument("--server", default=None, help="JACK server name")
    ports.set_defaults(func=cmd_ports)
