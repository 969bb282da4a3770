"""Schemathesis over a running service's OpenAPI: generated requests never get a server error.

Driven by hand: schemathesis' pytest plugin does not run under pytest 9 yet ('Function' has no '_nodeid').
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode


def fuzz(base_url: str, expected: Iterable[str], examples: int = 25, headers: Mapping[str, str] | None = None,
         skip: Iterable[str] = (), schema: dict[str, Any] | None = None, negative: bool = False) -> list[int]:
    """Call every operation (METHOD /path) `examples` times with generated input; return the statuses seen.

    `expected` operations must be in the schema; `skip` leaves some out (say, one that would stop the server).
    The schema is the service's /openapi.json unless given (for a service that does not publish one).
    `negative` adds as many inputs that break the schema, where an operation has any input to break.
    """
    api = (schemathesis.openapi.from_dict(schema) if schema is not None
           else schemathesis.openapi.from_url(f"{base_url}/openapi.json"))
    operations = [result.ok() for result in api.get_all_operations()]
    names = {f"{op.method.upper()} {op.path}" for op in operations}
    missing = set(expected) - names
    assert not missing, f"not in the OpenAPI schema: {sorted(missing)}"
    statuses: list[int] = []
    for operation in operations:
        if f"{operation.method.upper()} {operation.path}" in set(skip):
            continue

        modes = [GenerationMode.POSITIVE]
        if negative and _has_input(operation.definition.raw):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            _run(operation, mode, base_url, examples, dict(headers or {}), statuses)
    return statuses


def _has_input(definition: dict[str, Any]) -> bool:
    return bool(definition.get("requestBody") or definition.get("parameters"))


def _run(operation: Any, mode: GenerationMode, base_url: str, examples: int, headers: dict[str, str],
         statuses: list[int]) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    # The same inputs every run, so `make test` is repeatable; FUZZ_RANDOM=1 draws new ones (to hunt for more).
    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None,
              derandomize=os.environ.get("FUZZ_RANDOM") != "1")
    def no_server_error(case: schemathesis.Case) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=60)
        statuses.append(response.status_code)
        assert response.status_code < 500, (
            f"{mode.value} {case.method} {case.path} {case.query!r} {case.body!r}: "
            f"{response.status_code} {response.text[:500]}")

    try:
        no_server_error()
    except Unsatisfiable:
        # only a path parameter of type string: every value is valid, so no broken input exists to send
        if mode is GenerationMode.POSITIVE:
            raise
