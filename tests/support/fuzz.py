"""Schemathesis over a running service's OpenAPI: generated requests never get a server error.

Driven by hand: schemathesis' pytest plugin does not run under pytest 9 yet ('Function' has no '_nodeid').
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import schemathesis
from hypothesis import HealthCheck, given, settings


def fuzz(base_url: str, expected: Iterable[str], examples: int = 25, headers: Mapping[str, str] | None = None,
         skip: Iterable[str] = ()) -> list[int]:
    """Call every operation (METHOD /path) `examples` times with generated input; return the statuses seen.

    `expected` operations must be in the schema; `skip` leaves some out (say, one that would stop the server).
    """
    api = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [result.ok() for result in api.get_all_operations()]
    names = {f"{op.method.upper()} {op.path}" for op in operations}
    missing = set(expected) - names
    assert not missing, f"not in the OpenAPI schema: {sorted(missing)}"
    statuses: list[int] = []
    for operation in operations:
        if f"{operation.method.upper()} {operation.path}" in set(skip):
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def no_server_error(case: schemathesis.Case) -> None:
            response = case.call(base_url=base_url, headers=dict(headers or {}), timeout=60)
            statuses.append(response.status_code)
            assert response.status_code < 500, (
                f"{case.method} {case.path} {case.body!r}: {response.status_code} {response.text[:500]}")

        no_server_error()
    return statuses
