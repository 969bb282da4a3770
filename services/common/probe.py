"""Health probe for compose healthchecks: `python -m services.common.probe URL` exits 0 on HTTP 200."""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request

# stdlib only: it runs inside every image, and the native runner calls `probe()` in process.


def probe(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """GET `url`; return (healthy, short reason)."""
    if not url.startswith(("http://", "https://")):
        return False, f"not an http(s) URL: {url}"
    try:
        request = urllib.request.Request(url, headers={"Accept": "application/json"})
        with urllib.request.urlopen(request, timeout=timeout) as response:  # nosec B310  # http(s) only, checked above
            return response.status == 200, f"HTTP {response.status}"
    except urllib.error.HTTPError as exc:
        return False, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return False, str(reason) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.common.probe", description=__doc__)
    parser.add_argument("url", help="health URL, e.g. http://127.0.0.1:8001/health")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for the answer")
    args = parser.parse_args(argv)
    healthy, reason = probe(args.url, args.timeout)
    if not healthy:
        sys.stderr.write(f"unhealthy: {args.url}: {reason}\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
