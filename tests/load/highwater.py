"""Is a service's memory growth under many clients at once a high-water mark or a leak?

    python -m tests.load.highwater [--rounds 6] [--clients 100]

Runs the gateway alone (`python -m services.gateway`) in front of two fake model backends, and sends rounds of
5 x CLIENTS requests, CLIENTS at once (chat, streamed chat, and a chat in a new conversation every fourth),
printing the gateway's RSS and PSS after each round. A high-water mark grows in the first round and then
barely; a leak grows by about the same amount every round.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from pathlib import Path

import httpx
import psutil

from tests.support.fake_openai import FakeBackend
from tests.support.procs import Service, free_port, python_module


def memory(process: psutil.Process) -> tuple[float, float]:
    info = process.memory_full_info()
    return round(info.rss / 2**20, 1), round(info.pss / 2**20, 1)


async def one(client: httpx.AsyncClient, i: int) -> None:
    body: dict = {"model": "chat-7b", "messages": [{"role": "user", "content": f"question {i}"}], "max_tokens": 8,
                  "stream": i % 2 == 0}
    if i % 4 == 0:
        body["conversation"] = (await client.post("/v1/conversations", json={})).json()["id"]
    response = await client.post("/v1/chat/completions", json=body)
    await response.aread()
    response.raise_for_status()


async def burst(url: str, clients: int, repeats: int = 5) -> None:
    for _ in range(repeats):
        pool = [httpx.AsyncClient(base_url=url, timeout=60, trust_env=False) for _ in range(clients)]
        try:
            await asyncio.gather(*(one(client, i) for i, client in enumerate(pool)))
        finally:
            await asyncio.gather(*(client.aclose() for client in pool))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--clients", type=int, default=100)
    args = parser.parse_args()
    chat, code = FakeBackend("chat").start(), FakeBackend("code").start()
    chat.behaviour.delay_s = code.behaviour.delay_s = 0.2
    port = free_port()
    env = {"API_GATEWAY_PORT": str(port), "CHAT_API_BASE": f"http://127.0.0.1:{chat.port}/v1",
           "CODE_API_BASE": f"http://127.0.0.1:{code.port}/v1", "DATA_DIR": tempfile.mkdtemp(prefix="highwater-"),
           "LOG_JSON": "false", "LOG_LEVEL": "WARNING", "EMBEDDING_API_BASE": "http://127.0.0.1:9/v1"}
    gateway = Service("api-gateway", python_module("services.gateway"), env, f"http://127.0.0.1:{port}/health",
                      Path(env["DATA_DIR"]) / "gateway.log")
    url = f"http://127.0.0.1:{port}"
    try:
        gateway.start(60)
        assert gateway.proc is not None
        process = psutil.Process(gateway.proc.pid)
        print(f"started: RSS, PSS MiB {memory(process)}", flush=True)  # noqa: T201 - the command's report
        asyncio.run(burst(url, 2, 3))
        print(f"warmed up (6 requests): {memory(process)}", flush=True)  # noqa: T201
        for n in range(1, args.rounds + 1):
            asyncio.run(burst(url, args.clients))
            print(f"after round {n} ({5 * args.clients} requests, {args.clients} at once): {memory(process)}",  # noqa: T201
                  flush=True)
    finally:
        gateway.stop()
        chat.stop()
        code.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
