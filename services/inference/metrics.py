"""Domain metrics of the inference service, on the app's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class InferenceMetrics:
    prompt_tokens: Counter
    completion_tokens: Counter
    tokens_per_second: Gauge
    generation_seconds: Histogram
    queue_depth: Gauge
    active: Gauge
    cancelled: Counter
    rejected: Counter
    slots_total: Gauge
    slots_prefilling: Gauge
    prompt_cached_tokens: Counter
    prompt_cache_hits: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> InferenceMetrics:
        return cls(
            prompt_tokens=Counter("inference_prompt_tokens", "Prompt tokens processed.", registry=registry),
            completion_tokens=Counter(
                "inference_completion_tokens", "Completion tokens generated.", registry=registry
            ),
            tokens_per_second=Gauge(
                "inference_tokens_per_second", "Decode speed of the last generation.", registry=registry
            ),
            generation_seconds=Histogram(
                "inference_generation_seconds", "Time a generation held the model.", registry=registry,
                buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            ),
            queue_depth=Gauge(
                "inference_queue_depth", "Requests waiting for the model.", registry=registry
            ),
            active=Gauge(
                "inference_active_generations", "Generations running now, one per busy slot.", registry=registry
            ),
            cancelled=Counter(
                "inference_cancelled_generations",
                "Generations stopped early because the client went away.", registry=registry,
            ),
            rejected=Counter(
                "inference_rejected_requests", "Requests refused because the queue was full.", registry=registry
            ),
            slots_total=Gauge("inference_slots_total", "Slots (N_PARALLEL): generations decoded together.",
                              registry=registry),
            slots_prefilling=Gauge(
                "inference_slots_prefilling", "Busy slots still evaluating their prompt (no token yet).",
                registry=registry,
            ),
            prompt_cached_tokens=Counter(
                "inference_prompt_cached_tokens", "Prompt tokens taken from a slot's KV cache instead of evaluated.",
                registry=registry,
            ),
            prompt_cache_hits=Counter(
                "inference_prompt_cache_hits", "Requests that found at least half of their prompt in a slot's cache.",
                registry=registry,
            ),
        )
