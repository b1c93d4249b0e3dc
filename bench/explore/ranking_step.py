"""One gradient step of the ranking attack's objective, before and after the 2026-12-07 rewrite (CPU).

The attack spends its time in this step (robustness_evaluation runs ~3,800 of them per model). Before:
masked_fill of the scores, the held-out pairs found by nonzero and (margin) `hist | pos` every step, and a
full log_softmax for listwise. After: BlockTerms built once (the held-out pairs and an additive 0/-inf bias), no masked_fill. Same values (checked here).

    .venv/bin/python bench/explore/ranking_step.py [users items]
"""
import sys
import time

import torch
import torch.nn.functional as F

from rrec_core.attacks.ranking import block_terms, ranking_objective


def old_objective(U, V, users, hist, pos, objective, k=10):
    scores = U[users] @ V.T
    row, col = pos.nonzero(as_tuple=True)
    if objective == "listwise":
        return -(scores.masked_fill(hist, float("-inf")).log_softmax(dim=1)[row, col]).sum()
    kth = scores.masked_fill(hist | pos, float("-inf")).topk(k, dim=1).values[:, -1]
    return F.softplus(kth[row] - scores[row, col]).sum()


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
    print(f"{'objective':10} {'before ms':>10} {'after ms':>10} {'speed-up':>9} {'|diff|/|loss|':>14} {'max |grad diff|':>15}")
    for objective in ("listwise", "margin"):
        terms = block_terms(users, target, exclude, n_users, n_items, objective)
        dU, dV = torch.zeros_like(U, requires_grad=True), torch.zeros_like(V, requires_grad=True)

        def before():
            return torch.autograd.grad(old_objective(U + dU, V + dV, users, hist, pos, objective), (dU, dV))

        def after():
            loss = ranking_objective(U + dU, V + dV, users, target, exclude, objective, terms=terms)
            return torch.autograd.grad(loss, (dU, dV))

        a = old_objective(U, V, users, hist, pos, objective).item()
        b = ranking_objective(U, V, users, target, exclude, objective, terms=terms).item()
        grad_diff = max((x - y).abs().max().item() for x, y in zip(before(), after()))
        tb, ta = timed(before), timed(after)
        print(f"{objective:10} {tb:10.2f} {ta:10.2f} {tb / ta:8.2f}x {abs(a - b) / abs(a):14.1e} {grad_diff:15.1e}")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:3])) if len(sys.argv) > 2 else main()
