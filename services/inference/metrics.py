"""Domain metrics of the inference service, on the app's own registry.

Names follow the OpenTelemetry GenAI server metrics (`gen_ai.server.*`, written the Prometheus way) and vLLM's
where one exists; what is particular to this engine (slots, cancellations) is `inference_*`. Each is recorded
once per request on the batch thread, never per token.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# SmolLM2 on 2 cores decodes a token in about 14 ms; a 7B model on CPU takes 100 ms or more.
TOKEN_BUCKETS = (0.002, 0.005, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5)
FIRST_TOKEN_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80)
REQUEST_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600)
RATIO_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1)


@dataclass(frozen=True)
class InferenceMetrics:
    time_to_first_token: Histogram
    time_per_output_token: Histogram
    request_duration: Histogram
    queue_wait: Histogram
    context_usage: Histogram
    prompt_tokens: Counter
    generation_tokens: Counter
    cached_prompt_tokens: Counter
    prompt_cache_hits: Counter
    waiting: Gauge
    waiting_limit: Gauge
    running: Gauge
    rejected: Counter
    cancelled: Counter
    slots_total: Gauge
    slots_prefilling: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> InferenceMetrics:
        def histogram(name: str, doc: str, buckets: tuple[float, ...]) -> Histogram:
            return Histogram(name, doc, registry=registry, buckets=buckets)

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, registry=registry)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, registry=registry)

        return cls(
            time_to_first_token=histogram(
                "gen_ai_server_time_to_first_token_seconds",
                "Time from the request's arrival to its first generated token (queue and prompt included).",
                FIRST_TOKEN_BUCKETS),
            time_per_output_token=histogram(
                "gen_ai_server_time_per_output_token_seconds",
                "Mean decode time per generated token after the first, one observation per request.",
                TOKEN_BUCKETS),
            request_duration=histogram(
                "gen_ai_server_request_duration_seconds",
                "Time from the request's arrival to its last token (cancelled generations included).",
                REQUEST_BUCKETS),
            queue_wait=histogram(
                "gen_ai_server_queue_wait_seconds", "Time from the request's arrival until a slot took it.",
                FIRST_TOKEN_BUCKETS),
            context_usage=histogram(
                "gen_ai_server_context_usage_ratio", "Prompt plus generated tokens as a share of a slot's N_CTX.",
                RATIO_BUCKETS),
            prompt_tokens=counter("gen_ai_server_prompt_tokens", "Prompt tokens of finished generations."),
            generation_tokens=counter("gen_ai_server_generation_tokens", "Tokens generated."),
            cached_prompt_tokens=counter(
                "gen_ai_server_cached_prompt_tokens",
                "Prompt tokens taken from a slot's KV cache (prompt cache) instead of evaluated."),
            prompt_cache_hits=counter(
                "gen_ai_server_prompt_cache_hits",
                "Requests that found at least half of their prompt in a slot's prompt cache."),
            waiting=gauge("gen_ai_server_requests_waiting", "Requests waiting for a free slot."),
            waiting_limit=gauge("gen_ai_server_requests_waiting_limit",
                                "Requests that may wait (MAX_QUEUE); more are refused with 503."),
            running=gauge("gen_ai_server_requests_running", "Requests generating now, one per busy slot."),
            rejected=counter("gen_ai_server_requests_rejected",
                             "Requests refused: a full queue (MAX_QUEUE) or no slot free within MAX_QUEUE_WAIT."),
            cancelled=counter("inference_cancelled_generations",
                              "Generations stopped early because the client went away."),
            slots_total=gauge("inference_slots_total", "Slots (N_PARALLEL): generations decoded together."),
            slots_prefilling=gauge("inference_slots_prefilling",
                                   "Busy slots still evaluating their prompt (no token yet)."),
        )
