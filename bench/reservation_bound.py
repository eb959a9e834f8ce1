"""What the true upper bound costs in 402s near the end of a budget, against the estimate it replaced.

A simulation on the gateway's own planning code (no server): a key with a
budget spends itself down on a mix of requests (English prose, code, CJK text;
output caps of 256-4,096 tokens), `--concurrency` of them holding their
reservations at once. Each request's real token counts come from typical
tokenizer ratios (English ~4.2 characters a token, code ~3, CJK ~1.1 tokens a
character, one-letter words 2 characters a token) and a real answer of 10-100 % of its cap. Two ways to reserve:

- `estimate`: the reservation before issue 13 (input estimate x 1.25, charge capped at the reservation:
  what that undercharged is shown);
- `bound`: tokens.bound_request (bytes bound tokens), each call charged its real cost.

For each: calls served, the 402 rate once 90 % of the budget is spent (until the key has refused 50 calls in
a row), how many of those 402s the call's real cost would have fitted (what a true bound costs), the budget
spent, and what was undercharged. Then the CPU time of the estimate and of the bound per request.

    .venv/bin/python bench/reservation_bound.py
    .venv/bin/python bench/reservation_bound.py --budget 2 --concurrency 16 --seed 7
"""
from __future__ import annotations

import argparse
import random
import sys
import timeit
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.gateway import billing  # noqa: E402
from service.gateway.canonical import Message, Request, TextPart, Usage  # noqa: E402
from service.gateway.catalog import ModelInfo  # noqa: E402
from service.gateway.tokens import bound_request, estimate_request  # noqa: E402
from service.money import cost_nano  # noqa: E402

MODEL = ModelInfo("bench-mini", "bench-mini", "bench", 400_000, 128_000, 250_000_000, 2_000_000_000, 25_000_000, 0)
WORDS = "the budget of every key holds under load while many requests settle their real cost".split()
CODE = '{"id": 1, "items": [x for x in range(10)], "ok": true}; def f(a, b): return a + b  # note\n'
CJK = "预算在负载下保持不变，许多请求同时结算它们的真实成本。"


@dataclass
class Call:
    request: Request
    input_tokens: int  # what the upstream counts
    output_tokens: int  # what it answers


def make_call(rng: random.Random) -> Call:
    kind = rng.choices(["prose", "code", "cjk", "spaced"], weights=[6, 3, 1, 1])[0]
    size = int(rng.lognormvariate(7.5, 1.0))  # characters: median ~1,800
    if kind == "prose":
        text = " ".join(rng.choice(WORDS) for _ in range(size // 6))
        tokens = len(text) / 4.2
    elif kind == "code":
        text = (CODE * (size // len(CODE) + 1))[:size]
        tokens = len(text) / 3.0
    elif kind == "cjk":
        text = (CJK * (size // len(CJK) + 1))[: max(1, size // 3)]
        tokens = len(text) * 1.1
    else:  # one-letter words, a token each with its space (issue 12's "a a a …")
        text = "a " * (size // 2)
        tokens = len(text) / 2
    cap = rng.choice([256, 512, 1024, 2048, 4096])
    request = Request(model=MODEL.id, messages=[Message("user", [TextPart(text)])], max_output_tokens=cap)
    return Call(request, int(tokens) + 8, max(1, int(cap * rng.uniform(0.1, 1.0))))


def old_reservation(key, call: Call) -> tuple:
    """The pre-issue-13 plan: (amount, output cap) or None for a 402."""
    input_cost = cost_nano(int(estimate_request(call.request) * 1.25) + 1, MODEL.input_nano_per_mtok)
    return _fit(key, input_cost, call.request.max_output_tokens)


def _fit(key, input_cost: int, wanted: int):
    remaining = key.budget_nano - key.used_nano - key.reserved_nano
    if input_cost > remaining:
        return None
    affordable = (remaining - input_cost) * 1_000_000 // MODEL.output_nano_per_mtok
    if affordable < 1:
        return None
    cap = min(wanted, affordable)
    return input_cost + cost_nano(cap, MODEL.output_nano_per_mtok), cap


def new_reservation(key, call: Call):
    try:
        planned = billing._plan(key, MODEL, bound_request(call.request, MODEL.context_window),
                                call.request.max_output_tokens, False)
    except billing.BudgetExhausted:
        return None
    return planned.amount, planned.max_output_tokens


def simulate(method: str, calls: list, budget_nano: int, concurrency: int) -> dict:
    key = SimpleNamespace(id="key", budget_nano=budget_nano, used_nano=0, reserved_nano=0)
    plan = old_reservation if method == "estimate" else new_reservation
    served = refused_late = tried_late = needless = undercharged = in_a_row = 0
    pending = iter(calls)
    done = False
    while not done:
        wave = []
        for _ in range(concurrency):
            call = next(pending, None)
            if call is None:
                done = True
                break
            late = key.used_nano >= budget_nano * 0.9
            tried_late += late
            planned = plan(key, call)
            if planned is None:
                in_a_row += 1
                refused_late += late
                real = billing.price_usage(MODEL, Usage(call.input_tokens, min(call.output_tokens, 16)))
                needless += late and real <= budget_nano - key.used_nano - key.reserved_nano
                continue
            in_a_row = 0
            amount, cap = planned
            key.reserved_nano += amount
            wave.append((call, amount, cap))
        for call, amount, cap in wave:
            cost = billing.price_usage(MODEL, Usage(call.input_tokens, min(call.output_tokens, cap)))
            charge = min(cost, amount) if method == "estimate" else cost
            undercharged += cost - charge
            key.reserved_nano -= amount
            key.used_nano += charge
            served += 1
        if in_a_row >= 50:  # the budget is spent: only 402s from here
            break
    return {"served": served, "refused_late": refused_late, "tried_late": tried_late, "needless": needless,
            "spent": key.used_nano / budget_nano, "over": max(0, key.used_nano - budget_nano),
            "undercharged": undercharged}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=1.0, help="USD per key (default 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="reservations held at once (default 8)")
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=20, help="keys simulated, each on its own requests")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    budget = int(args.budget * 1e9)
    totals = {m: {} for m in ("estimate", "bound")}
    for run in range(args.runs):
        rng = random.Random(args.seed + run)
        calls = [make_call(rng) for _ in range(args.calls)]
        for method in totals:
            for name, value in simulate(method, calls, budget, args.concurrency).items():
                totals[method][name] = totals[method].get(name, 0) + value
    print(f"{args.runs} keys of {args.budget:g} USD, {args.concurrency} reservations at once, model at "
          f"0.25 / 2.00 USD per Mtok")
    print(f"{'reservation':<12}{'served':>8}{'402 rate, last 10%':>20}{'402s that fitted':>18}{'spent':>9}"
          f"{'over limit':>12}{'undercharged':>14}")
    for method, t in totals.items():
        n = args.runs
        rate = t["refused_late"] / max(1, t["tried_late"])
        print(f"{method:<12}{t['served'] / n:>8.1f}{rate:>20.1%}{t['needless'] / n:>18.1f}"
              f"{t['spent'] / n:>8.1%}{t['over'] / n / 1e9:>11.6f}${t['undercharged'] / n / 1e9:>12.6f}$")
    sample = make_call(random.Random(args.seed)).request
    for name, function in (("estimate_request", lambda: estimate_request(sample)),
                           ("bound_request", lambda: bound_request(sample, MODEL.context_window))):
        seconds = min(timeit.repeat(function, number=2000, repeat=5)) / 2000
        print(f"{name}: {seconds * 1e6:.1f} µs per request ({len(sample.messages[0].text())} characters)")


if __name__ == "__main__":
    main()
