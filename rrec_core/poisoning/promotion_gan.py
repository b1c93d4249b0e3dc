"""The GAN turned into an attack: its generator tuned to promote the targets through a surrogate's retraining
while its critic keeps the profiles as real-looking as the GAN made them (after AUSH, Lin et al. 2020, and
Leg-UP, Lin et al. 2022, whose generators are trained on a surrogate recommender's promotion loss beside the
discriminator's).

The plain GAN (rrec_core.poisoning.gan) writes realistic profiles that do not promote a tail target
(docs/poisoning.md: the target moves from the 30th to the 75th percentile, never into a top 50). The
gradient attack (rrec_core.poisoning.gradient) promotes, but its profiles are free 0/1 vectors that a
classifier tells from real ones (stealth AUC 0.92). This attack does both with the same two parts the
others use:

* **The generator, not free profiles, is optimized.** A copy of the trained G is fine-tuned; every fake
  keeps its own template, keep-mask, noise and Gumbel draw (fixed), so the profiles injected are exactly
  the ones the loss saw: Gumbel-top-k of G's logits at a length drawn from the real length distribution,
  targets masked out of the draw and then added, straight-through gradients (gan._straight_through_topk).
* **Promotion:** the gradient attack's surrogate (implicit ALS, fitted on the real data, re-solved on
  real + fake rows for `unroll_rounds` alternations) and its smooth HR@k over the real users who do not
  hold a target (gradient.smooth_hit).
* **Realism:** the GAN's critic D (WGAN, trained with G by the gan_samples stage). Its mean score on the
  untuned G's fakes is the reference; the loss pays `realism` per standard deviation of D's scores on real
  profiles that the fakes fall below it (hinged: profiles as real as the GAN's cost nothing). And
  `item_drift` per unit of relative growth of the total variation between the fakes' filler items and the
  real item distribution over the untuned GAN's (hinged the same way): tuning for promotion concentrates
  every fake on the items that carry the target, which a classifier on item vectors reads off while the
  critic does not (docs/poisoning.md has the measured trade-off; off by default, the strongest attack).

The best iterate by surrogate HR@k is kept (step 0 is the plain GAN's profiles). The attacker knows the
interaction table (as every attack here), not the victim model.
"""
from __future__ import annotations

import copy
import math

import numpy as np
import pandas as pd
import torch

from rrec_core.config import PromotionGanConfig
from rrec_core.poisoning.gan import GanResult, _dense, _gumbel, _straight_through_topk
from rrec_core.poisoning.gradient import ImplicitALS, smooth_hit
from rrec_core.poisoning.shilling import PoisonedData, append_fake_rows, sample_profile_lengths, select_targets

ATTACK = "gan_promotion"


def promotion_gan_attack(interactions: pd.DataFrame, result: GanResult, targets: list[str] | None = None,
                         cfg: PromotionGanConfig | None = None, log=None, **overrides) -> PoisonedData:
    """Append round(fake_ratio * real users) fake users "fake-gan_promotion-<k>" pushing `targets` (None:
    `n_targets` drawn by shilling.select_targets with the seed), drawn from a copy of `result`'s generator
    tuned for promotion (module docstring). `result` is not modified. Same result type as
    shilling.inject_attack; `config["trace"]` holds the surrogate's hit rate and the critic's score per step."""
    cfg = PromotionGanConfig.model_validate({**(cfg or PromotionGanConfig()).model_dump(), **overrides})
    real = interactions.drop_duplicates(["user_id", "item_id"], keep="last")
    users = pd.Index(sorted(real["user_id"].astype(str).unique()))
    items = pd.Index(result.item_ids)  # the generator's columns
    targets = [str(t) for t in (targets if targets is not None else select_targets(real, cfg.n_targets, seed=cfg.seed))]
    if len(set(targets)) != len(targets):
        raise ValueError(f"duplicate target items: {targets}")
    missing = [t for t in targets if t not in items]
    if missing:
        raise ValueError(f"the gan_promotion attack needs targets among the generator's items: {missing}")
    fake_users = [f"fake-{ATTACK}-{k}" for k in range(max(1, int(round(cfg.fake_ratio * len(users)))))]
    clash = set(users).intersection(fake_users)
    if clash:
        raise ValueError(f"fake user ids already exist in the data: {sorted(clash)[:5]}")
    # the surrogate sees the real table over the generator's columns (items it has never seen cannot be drawn)
    col = items.get_indexer(real["item_id"].astype(str))
    keep = col >= 0
    X = torch.zeros(len(users), len(items))
    X[users.get_indexer(real["user_id"].astype(str)[keep]), col[keep]] = 1
    rng = np.random.default_rng(cfg.seed)
    lengths = sample_profile_lengths(real, len(fake_users), rng, min_length=len(targets))
    profiles, trace = optimize_generator(result, X, list(items.get_indexer(targets)), lengths, cfg, log=log)
    f, i = profiles.nonzero(as_tuple=True)
    order = np.lexsort((rng.random(len(f)), f.numpy()))  # rows per user, items shuffled
    fake = pd.DataFrame({"user_id": pd.Series(np.asarray(fake_users, dtype=object)[f.numpy()[order]], dtype="str"),
                         "item_id": pd.Series(np.asarray(items, dtype=object)[i.numpy()[order]], dtype="str")})
    if "rating" in interactions.columns:
        fake["rating"] = float(real["rating"].max())
    out = append_fake_rows(interactions, fake, ATTACK, len(fake_users), targets)
    config = cfg.model_dump(mode="json")
    config.update(attack=ATTACK, targets=targets, trace=trace)
    return PoisonedData(out, fake_users, targets, ATTACK, [], config)


def optimize_generator(result: GanResult, X: torch.Tensor, targets: list[int], lengths: np.ndarray,
                       cfg: PromotionGanConfig, log=None) -> tuple[torch.Tensor, list[dict]]:
    """Binary fake profiles [n_fake, n_items] (targets included) from a copy of the generator tuned on
    -smooth_hit + realism * hinge(critic shortfall); the best iterate by the surrogate's exact hit@k."""
    n, m = X.shape
    nf = len(lengths)
    G = copy.deepcopy(result.generator).train()
    D = result.discriminator.eval()
    for p in D.parameters():
        p.requires_grad_(False)
    gcfg = result.config
    g = torch.Generator().manual_seed(cfg.seed)
    n_templates = len(result.template_indptr) - 1
    rows = torch.randint(n_templates, (nf,), generator=g)
    tmpl = _dense(result.template_indptr, result.template_indices, rows, m)
    kept = tmpl * (torch.rand(tmpl.shape, generator=g) < gcfg.template_keep).float()
    noise = torch.randn(nf, G.noise_dim, generator=g)
    gumbel = _gumbel((nf, m), g)
    tgt = torch.as_tensor(targets, dtype=torch.long)
    n_fill = torch.as_tensor(np.clip(np.asarray(lengths) - len(targets), 1, m - len(targets)), dtype=torch.long)
    onehot = torch.zeros(m)
    onehot[tgt] = 1.0

    def draw() -> torch.Tensor:
        s = (G(kept, noise) + gumbel).masked_fill(onehot.bool(), -math.inf)
        return _straight_through_topk(s, n_fill, gcfg.tau) + onehot

    sur = ImplicitALS(X, cfg.dim, cfg.reg, cfg.confidence, cfg.fit_rounds, cfg.seed)
    history = X > 0
    eligible = (~history[:, tgt]).any(1)
    hist_e = history[eligible]
    k = min(cfg.k, m - len(targets) - 1)
    p_real = X.sum(0) / X.sum()
    fill_cols = torch.ones(m, dtype=torch.bool)
    fill_cols[tgt] = False

    def item_tv(fake: torch.Tensor) -> torch.Tensor:
        """Total variation between the fakes' filler-item distribution and the real item distribution."""
        c = fake[:, fill_cols].sum(0)
        q = p_real[fill_cols] / p_real[fill_cols].sum()
        return 0.5 * (c / c.sum().detach() - q).abs().sum()

    with torch.no_grad():
        d_real = D(X[torch.randperm(n, generator=g)[:min(n, 512)]])
        d_scale = float(d_real.std().clamp_min(1e-6))
        start = draw()
        d_ref = float(D(start).mean())  # the untuned GAN's realism: the levels to keep
        tv_ref = float(item_tv(start))
    opt = torch.optim.Adam(G.parameters(), lr=cfg.lr)
    best_hit, best = -1.0, None
    trace = []
    for step in range(cfg.steps + 1):
        fake = draw()
        scores = sur.retrained_scores(fake, cfg.unroll_rounds)[eligible]
        obj, hit = smooth_hit(scores, hist_e, tgt, k, cfg.tau)
        critic = D(fake).mean()
        tv = item_tv(fake)
        shortfall = torch.relu(d_ref - critic) / d_scale
        drift = torch.relu(tv - tv_ref) / max(tv_ref, 1e-6)
        trace.append({"step": step, "objective": float(obj.detach()), f"surrogate_hit@{k}": float(hit),
                      "critic": float(critic.detach()), "critic_shortfall_sd": float(shortfall.detach()),
                      "item_tv": float(tv.detach())})
        if float(hit) > best_hit:
            best_hit, best = float(hit), fake.detach().round()
        if log is not None and (step % 10 == 0 or step == cfg.steps):
            log(f"gan_promotion step {step}: surrogate hit@{k} {float(hit):.4f}, critic shortfall "
                f"{float(shortfall.detach()):.2f} sd")
        if step == cfg.steps:
            break
        opt.zero_grad()
        (-obj + cfg.realism * shortfall + cfg.item_drift * drift).backward()
        opt.step()
    assert best is not None  # step 0 always sets it
    return best, trace
