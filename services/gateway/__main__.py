"""`python -m services.gateway`: serve the gateway, or write the LiteLLM config with --write-litellm-config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from services.common.serve import serve
from services.gateway.settings import GatewaySettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.gateway", description=__doc__)
    parser.add_argument("--write-litellm-config", type=Path, metavar="PATH",
                        help="write the LiteLLM proxy config derived from the environment, then exit")
    args = parser.parse_args(argv)
    settings = GatewaySettings()
    if args.write_litellm_config:
        from services.gateway.litellm_config import write_litellm_config

        write_litellm_config(settings, args.write_litellm_config)
        return 0
    if settings.engine == "litellm":
        from services.gateway.litellm_engine import exec_litellm

        exec_litellm(settings)
        return 1  # exec does not return
    from services.gateway.app import create_app

    serve(lambda _: create_app(settings), settings, settings.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
