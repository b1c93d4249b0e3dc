"""One gradient step of the ranking attack's objective: autograd vs the closed form the attack uses (CPU).

The attack spends its time in this step (robustness_evaluation runs ~3,800 of them per model).
`autograd`: torch.autograd.grad through `ranking_objective` (BlockTerms built once: the held-out pairs and
an additive 0/-inf bias, no masked_fill; the 2026-12-07 afternoon version). `closed form`:
`ranking_objective_grad` (2026-12-07 night): G = dL/dS written directly, and for margin, whose G has one
entry per held-out pair and one per user, gathers and scatters instead of the two dense products.
Same gradients (the relative difference is printed).

    .venv/bin/python bench/explore/ranking_step.py [users items]
"""
import sys
import time

import torch

from rrec_core.attacks.ranking import block_terms, ranking_objective, ranking_objective_grad


def timed(f, reps=30):
    f()
    t0 = time.perf_counter()
    for _ in range(reps):
        f()
    return (time.perf_counter() - t0) / reps * 1e3


def main(n_users=943, n_items=1682, d=64):
    gen = torch.Generator().manual_seed(0)
    U, V = torch.randn(n_users, d, generator=gen), torch.randn(n_items, d, generator=gen)
    hist = torch.rand(n_users, n_items, generator=gen) < 0.06
    pos = (torch.rand(n_users, n_items, generator=gen) < 0.01) & ~hist
    users = torch.arange(n_users)
    target = pos.nonzero()
    exclude = hist.nonzero()
    print(f"{n_users} users x {n_items} items, d={d}, threads={torch.get_num_threads()}")
    print(f"{'objective':10} {'autograd ms':>12} {'closed ms':>10} {'speed-up':>9} {'max rel. grad diff':>19}")
    for objective in ("listwise", "margin"):
        terms = block_terms(users, target, exclude, n_users, n_items, objective)
        dU, dV = torch.zeros_like(U, requires_grad=True), torch.zeros_like(V, requires_grad=True)

        def autograd():
            loss = ranking_objective(U + dU, V + dV, users, target, exclude, objective, terms=terms)
            return torch.autograd.grad(loss, (dU, dV))

        def closed():
            return ranking_objective_grad(U, V, users, terms, objective)

        diff = max(((x - y).abs().max() / x.abs().max()).item() for x, y in zip(autograd(), closed()))
        ta, tc = timed(autograd), timed(closed)
        print(f"{objective:10} {ta:12.2f} {tc:10.2f} {ta / tc:8.2f}x {diff:19.1e}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3])) if len(sys.argv) > 2 else main()
