"""The LiteLLM proxy configuration, derived from the gateway settings alone."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from services.gateway.routing import ALIASES, CHAT, CODE, FALLBACKS
from services.gateway.settings import GatewaySettings

AUTO_HOOK = "services.gateway.litellm_hooks.auto_route"


def build_litellm_config(settings: GatewaySettings) -> dict:
    """model_list, router_settings and litellm_settings for the stock LiteLLM proxy."""
    # The key itself never lands in the file: LiteLLM reads `os.environ/NAME` references at load time.
    key_ref = "os.environ/BACKEND_API_KEY" if settings.backend_api_key else (
        "os.environ/API_KEY" if settings.api_key else "none"
    )
    backends = {
        CHAT: (settings.chat_api_base, settings.chat_backend_model),
        CODE: (settings.code_api_base, settings.code_backend_model),
    }
    model_list = [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{backend_model}",
                "api_base": api_base.rstrip("/"),
                "api_key": key_ref,
                "timeout": settings.llm_request_timeout,
                "max_retries": 0,
            },
        }
        for name, (api_base, backend_model) in backends.items()
    ]
    # Further backends of a model join its group; LiteLLM spreads a group's requests by its routing strategy.
    model_list += [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{extra.backend_model}",
                "api_base": extra.api_base,
                "api_key": f"os.environ/{extra.key_env}" if extra.key_env else key_ref,
                "timeout": settings.llm_request_timeout,
                "max_retries": 0,
            },
        }
        for name, which in ((CHAT, "chat"), (CODE, "code"))
        for extra in settings.extra_backends(which)
    ]
    pooled = len(model_list) > len(backends)
    model_list += embedding_entries(settings, key_ref)
    router_settings: dict[str, object] = {
        "num_retries": settings.max_retries,
        "timeout": settings.llm_request_timeout,
        "cooldown_time": settings.cooldown_seconds,
        "allowed_fails": 1,
        # LiteLLM looks fallbacks up by the requested group name, so each alias needs its own entry.
        "fallbacks": [{name: list(targets)} for name, targets in FALLBACKS.items()]
        + [{alias: list(FALLBACKS[target])} for alias, target in ALIASES.items()],
        "model_group_alias": dict(ALIASES),
    }
    if pooled:
        router_settings["routing_strategy"] = "least-busy"
    return {
        "model_list": model_list,
        "router_settings": router_settings,
        "litellm_settings": {
            "request_timeout": settings.llm_request_timeout,
            "telemetry": False,
            "drop_params": True,
            # `auto` is resolved by our classifier before LiteLLM routes the request.
            "callbacks": [AUTO_HOOK],
        },
        "general_settings": {},
    }


def embedding_entries(settings: GatewaySettings, key_ref: str) -> list[dict]:
    """One entry per embedding name, each sent to the service under the model name it always answers to."""
    return [
        {
            "model_name": name,
            "litellm_params": {
                "model": f"openai/{settings.embedding_model}",
                "api_base": settings.embedding_api_base,
                "api_key": key_ref,
                "timeout": settings.embedding_timeout,
                "max_retries": 0,
            },
        }
        for name in settings.embedding_model_names()
    ]


def write_litellm_config(settings: GatewaySettings, path: Path) -> Path:
    """Write the config as YAML, atomically, and return its path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(build_litellm_config(settings), sort_keys=False))
    os.replace(tmp, path)
    return path
