#!/usr/bin/env python3
"""Load benchmark for an OpenAI-compatible server (vtc serve, llama-server), loopback only.

For each concurrency level N (default 1, 4, 8) it runs N client threads; each sends
--rounds streaming /v1/completions requests of --tokens tokens (greedy, ignore_eos, a
different short prompt per stream) one after another, and stops early past --max-seconds.
One JSON line per level: aggregate generated tokens/s over the level's wall time, time to
first token p50/p99 and inter-token latency p50/p99/max (ms, over all requests' chunks).

With --join-every S, one more client sends a long prompt (--join-words words, about 1.3
tokens each) with max_tokens 1 every S seconds while the streams run: what a joining
conversation costs the running streams shows in their inter-token p99 and max, and the
joiners' own time to first token is reported as join_ttft_ms_p50/max.

  python3 scripts/serve-load.py --url http://127.0.0.1:8080 --label vtc
  python3 scripts/serve-load.py --streams 3 --rounds 1 --tokens 256 --join-every 0.5
Standard library only.
"""

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "Once upon a time",
    "The history of the Roman Empire",
    "def quicksort(xs):",
    "Ten facts about the ocean:",
    "Dear diary, today",
    "The recipe for bread is",
    "In a distant galaxy",
    "The rules of chess are",
]


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    k = min(len(xs) - 1, max(0, round(p / 100 * (len(xs) - 1))))
    return xs[k]


LONG_WORDS = ("the keeper of the lighthouse wrote in his log every evening about the "
              "weather the ships and the birds that rested on the rocks ").split()


def one_request(host, port, prompt, tokens, api_key):
    body = json.dumps({
        "model": "m", "prompt": prompt, "max_tokens": tokens, "temperature": 0,
        "stream": True, "ignore_eos": True,
    })
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    conn = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"HTTP {resp.status}: {resp.read()[:200]!r}")
    stamps, n_tokens = [], None
    for raw in resp:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        j = json.loads(data)
        if j.get("usage"):
            n_tokens = j["usage"].get("completion_tokens", n_tokens)
        for c in j.get("choices", []):
            if c.get("text"):
                stamps.append(time.perf_counter())
    conn.close()
    if n_tokens is None:
        n_tokens = len(stamps)
    ttft = stamps[0] - t0 if stamps else None
    itl = [b - a for a, b in zip(stamps, stamps[1:])]
    return n_tokens, ttft, itl


def level(url, n, rounds, tokens, max_seconds, api_key, join_every=None, join_words=300):
    u = urllib.parse.urlparse(url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit("serve-load: loopback URLs only")
    results, errors = [], []
    deadline = time.perf_counter() + max_seconds
    lock = threading.Lock()

    def worker(i):
        for r in range(rounds):
            if time.perf_counter() > deadline:
                return
            try:
                res = one_request(u.hostname, u.port or 80, PROMPTS[(i + r) % len(PROMPTS)], tokens, api_key)
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                with lock:
                    errors.append(str(e))
                return
            with lock:
                results.append(res)

    joins, running = [], [True]

    def joiner():
        k = 0
        while running[0]:
            time.sleep(join_every)
            if not running[0]:
                return
            words = [LONG_WORDS[(k + i) % len(LONG_WORDS)] for i in range(join_words)]
            prompt = f"Log {k}: " + " ".join(words)
            k += 1
            try:
                res = one_request(u.hostname, u.port or 80, prompt, 1, api_key)
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                with lock:
                    errors.append(str(e))
                return
            with lock:
                joins.append(res)

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    j = threading.Thread(target=joiner) if join_every else None
    if j:
        j.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    running[0] = False
    if j:
        j.join()
    total = sum(r[0] for r in results)
    ttfts = [r[1] for r in results if r[1] is not None]
    itls = [x for r in results for x in r[2]]
    ms = lambda v: None if v is None else round(v * 1e3, 2)  # noqa: E731
    return {
        "streams": n, "requests": len(results), "errors": len(errors),
        "tokens": total, "wall_s": round(wall, 3),
        "aggregate_tok_s": round(total / wall, 2) if wall > 0 else None,
        "ttft_ms_p50": ms(pct(ttfts, 50)), "ttft_ms_p99": ms(pct(ttfts, 99)),
        "itl_ms_p50": ms(pct(itls, 50)), "itl_ms_p99": ms(pct(itls, 99)),
        "itl_ms_mean": ms(statistics.fmean(itls)) if itls else None,
        "itl_ms_max": ms(max(itls)) if itls else None,
        **({"joins": len(joins),
            "join_ttft_ms_p50": ms(pct([r[1] for r in joins if r[1]], 50)),
            "join_ttft_ms_max": ms(max((r[1] for r in joins if r[1]), default=None))}
           if join_every else {}),
        "first_error": errors[0] if errors else None,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--label", default="server")
    ap.add_argument("--streams", default="1,4,8")
    ap.add_argument("--rounds", type=int, default=2, help="requests per stream")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--max-seconds", type=float, default=120, help="per level")
    ap.add_argument("--api-key")
    ap.add_argument("--join-every", type=float, help="seconds between long-prompt joins")
    ap.add_argument("--join-words", type=int, default=300)
    args = ap.parse_args()
    for n in [int(x) for x in args.streams.split(",")]:
        row = level(args.url, n, args.rounds, args.tokens, args.max_seconds, args.api_key,
                    args.join_every, args.join_words)
        row = {"label": args.label, **row}
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
