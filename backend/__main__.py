"""Launch the backend: `python -m backend [--host 127.0.0.1] [--port 8000]` (what `make run` and the image run).

The rule it enforces before listening: an address other than loopback needs `TWM_API_TOKEN`, because everyone who
reaches the port could otherwise start jobs and read every run. `TWM_ALLOW_NO_TOKEN=1` is the explicit opt-out, for
a private network you trust. (Plain `uvicorn backend.main:create_app --factory` still works and checks nothing.)
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from collections.abc import Sequence

from backend.settings import Settings

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


def is_loopback(host: str) -> bool:
    """Whether listening on `host` serves this machine only (`localhost`, 127.0.0.0/8, `::1`)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # any other name may resolve to a public address
        return False


def exposure_problem(host: str, settings: Settings) -> str | None:
    """Why the backend must not listen on `host` with these settings, or None when it may."""
    if is_loopback(host) or settings.api_token is not None or settings.allow_no_token:
        return None
    return (f"refusing to listen on {host!r} without an API token: anyone who reaches it could control the backend. "
            "Set TWM_API_TOKEN (clients send `Authorization: Bearer <token>`), listen on 127.0.0.1, or set "
            "TWM_ALLOW_NO_TOKEN=1 if every client of this network is trusted.")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backend", description="Serve the TWM backend API (uvicorn).")
    parser.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    parser.add_argument("--log-level", default="info", help="uvicorn log level (default info)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Check the exposure rule, then run uvicorn in the foreground; returns the exit status."""
    args = parse_args(argv)
    settings = Settings()
    problem = exposure_problem(args.host, settings)
    if problem is not None:
        sys.stderr.write(f"twm backend: {problem}\n")
        return 2
    import uvicorn  # lazy: the check above needs none of the server

    from backend.main import create_app

    uvicorn.run(create_app(settings), host=args.host, port=args.port, log_level=args.log_level)
    return 0


if __name__ == "__main__":
    sys.exit(main())
