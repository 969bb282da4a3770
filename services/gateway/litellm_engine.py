"""Run the stock LiteLLM proxy on the generated config (GATEWAY_ENGINE=litellm)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from services.common.settings import is_loopback
from services.gateway.litellm_config import write_litellm_config
from services.gateway.settings import GatewaySettings


def litellm_command(settings: GatewaySettings, config_path: Path) -> list[str]:
    """The proxy's command line; the executable sits next to this interpreter in the venv."""
    executable = Path(sys.executable).with_name("litellm")
    binary = str(executable) if executable.exists() else (shutil.which("litellm") or "litellm")
    return [binary, "--config", str(config_path), "--host", settings.host, "--port", str(settings.port),
            "--num_workers", "1"]


def litellm_environment(settings: GatewaySettings, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for the proxy: offline, local cost map, and a master key unless bound to loopback only."""
    env = dict(os.environ if base is None else base)
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    env["LITELLM_OFFLINE_MODE"] = "true" if settings.litellm_offline_mode else "false"
    env.setdefault("LITELLM_TELEMETRY", "False")
    if settings.api_key:
        env["LITELLM_MASTER_KEY"] = settings.api_key
    elif is_loopback(settings.host) or settings.trust_container_network:
        # Deliberate: on loopback (or a container port published on host loopback) no key is asked for.
        env["LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY"] = "true"
        env.pop("LITELLM_MASTER_KEY", None)
    return env


def exec_litellm(settings: GatewaySettings) -> None:
    """Replace this process with the LiteLLM proxy; refuses an exposed bind without a key first."""
    settings.check_exposure()
    config_path = write_litellm_config(settings, settings.resolved_litellm_config_path())
    command = litellm_command(settings, config_path)
    os.execve(command[0], command, litellm_environment(settings))
