"""The arithmetic of `make load-check` and `make soak`: regressions, spread, the leak rule and the load shapes."""

from __future__ import annotations

from tests.load.check import compare, summarise
from tests.load.profiles import PROFILES, duration, stages_at
from tests.load.soak import leaks, slope


def run(p50: float, errors: int = 0, ok: int = 10) -> dict:
    return {"endpoints": {"GET /v1/models": {"p50": p50, "ok": ok, "errors": errors, "error_kinds": {}}}}


def test_the_baseline_is_the_median_with_its_spread() -> None:
    base = summarise([run(10), run(12), run(11)])
    row = base["routes"]["GET /v1/models"]
    assert row["p50"] == 11 and row["spread"] == round(2 / 11, 3)


def test_a_slower_route_is_flagged_and_noise_is_not() -> None:
    base = summarise([run(10), run(12), run(11)])  # spread 18%: margin 36% + 5 ms -> 20 ms at most
    assert compare(base, run(19)) == []
    assert compare(base, run(61))[0].startswith("GET /v1/models: p50 61")
    assert "errors" in compare(base, run(11, errors=2))[0]
    assert compare(base, run(11, ok=0)) == ["GET /v1/models: no answered requests"]


def test_the_margin_is_at_least_a_quarter() -> None:
    base = summarise([run(100), run(100)])
    assert compare(base, run(129)) == [] and compare(base, run(131))


def test_shapes_end_and_ramp_to_100_users() -> None:
    assert stages_at(PROFILES["baseline"], 0) == (1, 1.0) and stages_at(PROFILES["baseline"], 121) is None
    assert stages_at(PROFILES["ramp"], 260)[0] == 100 and duration(PROFILES["ramp"]) == 300
    assert duration(PROFILES["baseline"]) + duration(PROFILES["ramp"]) <= 600


def samples(rss: list[float], fds: list[int], every: float = 60) -> list[dict]:
    return [{"t": i * every, "services": {"rag": {"rss_mib": r, "fds": f}}}
            for i, (r, f) in enumerate(zip(rss, fds, strict=True))]


def test_slope_is_least_squares() -> None:
    assert slope([(0, 1), (1, 3), (2, 5)]) == 2 and slope([(0, 5)]) == 0


def test_a_steady_service_is_not_a_leak_even_after_warming_up() -> None:
    # fast growth in the first third (warm-up), flat afterwards with noise
    fits, problems = leaks(samples([100, 300, 305, 298, 303, 301, 304, 300, 302], [10] * 9), run_s=480)
    assert problems == [] and abs(fits["rag"]["rss_growth_mib"]) < 10


def test_steady_growth_and_climbing_fds_are_leaks() -> None:
    _, problems = leaks(samples([300 + 20 * i for i in range(9)], [10 + 5 * i for i in range(9)]), run_s=480)
    assert len(problems) == 2 and "RSS rises" in problems[0] and "open files" in problems[1]


def test_small_growth_on_a_big_process_is_not_a_leak() -> None:
    # 40 MiB on 2 GiB is 2%: under the 5% share
    _, problems = leaks(samples([2048 + 6.7 * i for i in range(9)], [10] * 9), run_s=480)
    assert problems == []
