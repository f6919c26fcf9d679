"""Load generator for the API bench, run as its own process (the second process over loopback).

    python bench/load_api.py --url http://127.0.0.1:PORT --key TOKEN --path /overview --requests 400 \
        --concurrency 4 --warmup 20

Keeps `concurrency` requests in flight (httpx, one keep-alive client), each answer must be 200; prints one JSON
line: p50/p95/p99/max latency in ms and requests/s over the timed requests (the warm-up is not counted).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx
import orjson


def percentile(sorted_ms: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_ms:
        return 0.0
    rank = max(1, round(q / 100 * len(sorted_ms) + 0.5 - 1e-9))
    return sorted_ms[min(rank, len(sorted_ms)) - 1]


async def run(url: str, key: str, path: str, n: int, concurrency: int, warmup: int) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30.0) as client:
        for _ in range(warmup):
            (await client.get(path)).raise_for_status()
        latencies: list[float] = []
        todo = iter(range(n))

        async def worker() -> None:
            for _ in todo:
                t = time.perf_counter()
                r = await client.get(path)
                latencies.append((time.perf_counter() - t) * 1000)
                if r.status_code != 200:
                    raise RuntimeError(f"{path}: HTTP {r.status_code} {r.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": float(n), "concurrency": float(concurrency), "p50_ms": round(percentile(latencies, 50), 1),
            "p95_ms": round(percentile(latencies, 95), 1), "p99_ms": round(percentile(latencies, 99), 1),
            "max_ms": round(latencies[-1], 1), "requests_per_s": round(n / elapsed, 1)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--path", required=True)
    p.add_argument("--requests", type=int, default=400)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--warmup", type=int, default=20)
    a = p.parse_args()
    result = asyncio.run(run(a.url, a.key, a.path, a.requests, a.concurrency, a.warmup))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
