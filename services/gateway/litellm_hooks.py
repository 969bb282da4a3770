"""LiteLLM proxy callback that resolves model `auto` with the suite's classifier (litellm engine only)."""

from __future__ import annotations

from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from services.gateway.routing import AUTO
from services.gateway.routing import resolve as resolve_route


class AutoRouteHook(CustomLogger):
    """Rewrites `"model": "auto"` to chat-7b or code-7b before LiteLLM picks a deployment."""

    async def async_pre_call_hook(
        self, user_api_key_dict: Any, cache: Any, data: dict, call_type: Any
    ) -> dict:
        if data.get("model") == AUTO:
            data["model"] = resolve_route(AUTO, data).model
        return data


auto_route = AutoRouteHook()
