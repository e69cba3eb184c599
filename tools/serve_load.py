#!/usr/bin/env python3
"""A small bounded load client for OpenAI-compatible servers (apr serve, llama-server, vLLM),
until `apr bench serve` lands: for each concurrency level, that many client threads each send
--requests streamed /v1/completions requests one after another, with a prompt of exactly
--prompt-tokens token ids (seeded, so every server gets the same prompts) and --max-tokens to
generate. Per request: TTFT (until the first chunk with text), inter-token latency (gaps between
later text chunks, divided by the tokens each chunk carries); per level: aggregate generated tok/s
over the level's wall time. Loopback or given URL only; every request is bounded by --timeout.

  tools/serve_load.py http://127.0.0.1:8080 --streams 1,4,8 --requests 4 --prompt-tokens 128 --max-tokens 64
"""
import argparse
import json
import random
import statistics
import sys
import threading
import time
import urllib.parse
import http.client


def one_request(url, prompt, max_tokens, timeout):
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    body = json.dumps({"model": "any", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
                       "stream": True, "stream_options": {"include_usage": True}})
    start = time.perf_counter()
    connection.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
    text_times, usage = [], None
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        chunk = json.loads(line[6:])
        if chunk.get("usage"):
            usage = chunk["usage"]
        if chunk.get("choices") and chunk["choices"][0].get("text"):
            text_times.append(time.perf_counter())
    end = time.perf_counter()
    connection.close()
    if not text_times:
        raise RuntimeError("no text came back")
    tokens = usage["completion_tokens"] if usage else len(text_times)
    gaps = [b - a for a, b in zip(text_times, text_times[1:])]
    # A chunk may carry several tokens (a character split across tokens arrives whole).
    per_token_gap = (text_times[-1] - text_times[0]) / (tokens - 1) if tokens > 1 else None
    return {"ttft": text_times[0] - start, "itl": per_token_gap, "gaps": gaps, "tokens": tokens, "e2e": end - start}


def run_level(args, streams, prompts):
    results, errors = [], []
    lock = threading.Lock()

    def client(index):
        for r in range(args.requests):
            try:
                result = one_request(args.url, prompts[(index * args.requests + r) % len(prompts)], args.max_tokens,
                                     args.timeout)
                with lock:
                    results.append(result)
            except Exception as e:  # recorded, reported, and the level counts as failed
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.timeout * args.requests + 60)
    wall = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"{len(errors)} requests failed at {streams} streams: {errors[:3]}")
    ttfts = sorted(r["ttft"] for r in results)
    itls = [r["itl"] for r in results if r["itl"] is not None]
    tokens = sum(r["tokens"] for r in results)
    return {"streams": streams, "requests": len(results), "wall_s": wall, "generated_tokens": tokens,
            "aggregate_tok_s": tokens / wall, "ttft_median_ms": 1e3 * statistics.median(ttfts),
            "ttft_p90_ms": 1e3 * ttfts[min(len(ttfts) - 1, int(0.9 * len(ttfts)))],
            "itl_median_ms": 1e3 * statistics.median(itls) if itls else None,
            "per_stream_tok_s": statistics.median(1 / i for i in itls) if itls else None}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("url")
    parser.add_argument("--streams", default="1,4,8", help="comma-separated concurrency levels (default: 1,4,8)")
    parser.add_argument("--requests", type=int, default=4, help="requests per stream and level (default: 4)")
    parser.add_argument("--prompt-tokens", type=int, default=128, help="prompt length in token ids (default: 128)")
    parser.add_argument("--max-tokens", type=int, default=64, help="tokens to generate (default: 64)")
    parser.add_argument("--vocab", type=int, default=32000, help="prompt ids are drawn from [100, VOCAB) (default: 32000)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds one request may take (default: 300)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    levels = [int(s) for s in args.streams.split(",")]
    rng = random.Random(args.seed)
    prompts = [[rng.randrange(100, args.vocab) for _ in range(args.prompt_tokens)] for _ in range(max(levels) * args.requests)]
    one_request(args.url, prompts[0][:8], 2, args.timeout)  # warm-up
    rows = []
    print("| streams | requests | aggregate tok/s | per-stream tok/s (median) | TTFT median / p90 ms | ITL median ms |")
    print("|---|---|---|---|---|---|")
    for streams in levels:
        row = run_level(args, streams, prompts)
        rows.append(row)
        print(f"| {streams} | {row['requests']} | {row['aggregate_tok_s']:.1f} | {row['per_stream_tok_s']:.1f} | "
              f"{row['ttft_median_ms']:.0f} / {row['ttft_p90_ms']:.0f} | {row['itl_median_ms']:.1f} |", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"url": args.url, "prompt_tokens": args.prompt_tokens, "max_tokens": args.max_tokens,
                       "levels": rows}, f, indent=2)


if __name__ == "__main__":
    sys.exit(main())
