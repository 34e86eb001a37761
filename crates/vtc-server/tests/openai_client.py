"""The server through the real `openai` Python client (driven by tests/openai_client.rs).

Usage: python openai_client.py --base-url http://127.0.0.1:PORT/v1 --api-key KEY
Exits non-zero (an exception or a failed check) when the server does not behave as the
OpenAI API does for these calls.
"""

import argparse
import sys

import openai


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--api-key", required=True)
    args = ap.parse_args()
    client = openai.OpenAI(base_url=args.base_url, api_key=args.api_key, max_retries=0, timeout=300)
    checks = 0

    def check(cond, what):
        nonlocal checks
        if not cond:
            raise AssertionError(what)
        checks += 1

    models = client.models.list()
    ids = [m.id for m in models.data]
    check(len(ids) == 1, f"one model, got {ids}")
    model = ids[0]

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    r = client.chat.completions.create(model=model, messages=messages, max_tokens=24, temperature=0)
    text = r.choices[0].message.content
    check(r.object == "chat.completion", r.object)
    check(r.choices[0].message.role == "assistant", "assistant role")
    check(bool(text), "non-empty reply")
    check(r.choices[0].finish_reason in ("stop", "length"), r.choices[0].finish_reason)
    check(r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens, "usage adds up")

    # Streaming gives the same greedy text, chunk by chunk.
    parts, finish, roles = [], None, []
    for chunk in client.chat.completions.create(
        model=model, messages=messages, max_tokens=24, temperature=0, stream=True
    ):
        d = chunk.choices[0].delta
        if d.role:
            roles.append(d.role)
        if d.content:
            parts.append(d.content)
        if chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    check("".join(parts) == text, f"stream {''.join(parts)!r} != {text!r}")
    check(roles == ["assistant"], f"roles {roles}")
    check(finish == r.choices[0].finish_reason, f"finish {finish}")

    # Stream with usage.
    last = None
    for chunk in client.chat.completions.create(
        model=model, messages=messages, max_tokens=4, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ):
        last = chunk
    check(last.usage is not None and last.usage.completion_tokens >= 1, "usage chunk")

    # Completions, and a stop string taken from the greedy text.
    c = client.completions.create(model=model, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0)
    full = c.choices[0].text
    check(c.choices[0].finish_reason == "length", c.choices[0].finish_reason)
    stop = full[4:7]
    c2 = client.completions.create(
        model=model, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=[stop]
    )
    check(c2.choices[0].text == full[: full.index(stop)], f"{c2.choices[0].text!r} vs {full!r} cut at {stop!r}")
    check(c2.choices[0].finish_reason == "stop", c2.choices[0].finish_reason)
    streamed = "".join(
        ch.choices[0].text
        for ch in client.completions.create(
            model=model, prompt="1, 2, 3, 4,", max_tokens=20, temperature=0, stop=stop, stream=True
        )
        if ch.choices
    )
    check(streamed == c2.choices[0].text, f"streamed {streamed!r}")

    # Seeds reproduce sampled text and logprobs.
    def sampled(seed):
        r = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "Tell me a story."}],
            max_tokens=16, temperature=1.0, seed=seed, logprobs=True, top_logprobs=2,
        )
        lp = [(t.token, t.logprob, [a.token for a in t.top_logprobs]) for t in r.choices[0].logprobs.content]
        return r.choices[0].message.content, lp

    a, b = sampled(7), sampled(7)
    check(a == b, "same seed, same reply and logprobs")
    check(all(len(t[2]) == 2 and t[1] <= 0.0 for t in a[1]), "logprobs shape")

    # Errors surface as the client's typed exceptions.
    def status_of(fn):
        try:
            fn()
        except openai.APIStatusError as e:
            return e.status_code, type(e).__name__
        return None

    check(status_of(lambda: client.chat.completions.create(model=model, messages=messages, n=2))
          == (400, "BadRequestError"), "n=2 -> 400")
    check(status_of(lambda: client.completions.create(model=model, prompt="word " * 3000))
          == (400, "BadRequestError"), "too long -> 400")
    check(status_of(lambda: client.completions.create(model=model, prompt="x" * (2 << 20)))[0] == 413,
          "huge body -> 413")
    wrong = openai.OpenAI(base_url=args.base_url, api_key="wrong", max_retries=0)
    check(status_of(lambda: wrong.models.list()) == (401, "AuthenticationError"), "wrong key -> 401")

    print(f"openai {openai.__version__}: {checks} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
