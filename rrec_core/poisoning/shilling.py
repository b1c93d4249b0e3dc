"""Heuristic shilling (profile-injection) attacks on an interaction table.

The attacker adds fake users whose profiles contain every target item (a *push* attack) plus items
chosen by the attack model so that the profiles look plausible (Lam & Riedl 2004; Mobasher et al. 2007,
"Toward trustworthy recommender systems"). A profile is  targets + selected items + filler items:

  random     fillers drawn uniformly from the catalogue; ratings ~ N(global mean, global std)
  average    fillers drawn uniformly; ratings ~ N(item mean, item std) (knowledge of item means)
  bandwagon  selected = the `n_selected` most popular items (max rating); fillers drawn with probability
             proportional to popularity ("popular items as fillers", the implicit-feedback variant used
             in e.g. Huang et al. 2021); filler ratings as in the random attack
  segment    selected = the `n_selected` items most popular within the targets' audience (the users who
             interacted with a target, i.e. the segment the attacker wants to reach; max rating);
             fillers drawn uniformly with the minimum rating (Mobasher et al.'s segment attack)

Targets always get the maximum rating. Without a rating column only the item choice matters, so
random and average inject the same kind of profile (they differ only in the ratings).

Input and output follow rrec's interaction contract: user_id (str), item_id (str), rating (float64,
optional), timestamp (int64). Fake users get ids "fake-<attack>-<k>" and timestamps after every real one.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rrec_core.config import ShillingConfig

ATTACKS = ("random", "average", "bandwagon", "segment")


@dataclass
class PoisonedData:
    interactions: pd.DataFrame  # real rows followed by the injected ones
    fake_users: list[str]  # raw ids of the injected users
    targets: list[str]  # raw ids of the pushed items
    attack: str
    selected: list[str] = field(default_factory=list)  # bandwagon / segment selected items
    config: dict = field(default_factory=dict)

    @property
    def injected(self) -> pd.DataFrame:
        return self.interactions[self.interactions["user_id"].isin(set(self.fake_users))]


def item_popularity(interactions: pd.DataFrame) -> pd.Series:
    """Distinct users per item (duplicate (user, item) rows count once)."""
    return interactions.drop_duplicates(["user_id", "item_id"]).groupby("item_id").size()


def sample_profile_lengths(real: pd.DataFrame, n: int, rng: np.random.Generator, min_length: int = 1) -> np.ndarray:
    """`n` profile lengths drawn with replacement from the real users' lengths (distinct items), at least
    `min_length`: fake profiles then have the real length distribution, not one constant length that
    a detector reads off at once (every profile at the mean length has standard deviation 0)."""
    lengths = real.drop_duplicates(["user_id", "item_id"]).groupby("user_id").size().to_numpy()
    if len(lengths) == 0:
        raise ValueError("no real profiles to draw fake profile lengths from")
    return np.maximum(rng.choice(lengths, n, replace=True), min_length).astype(np.int64)


def select_targets(interactions: pd.DataFrame, n_targets: int = 5, quantiles: tuple[float, float] = (0.1, 0.3),
                   min_count: int = 5, seed: int = 0) -> list[str]:
    """`n_targets` unpopular items drawn at random among items whose popularity lies between the two
    quantiles of the item popularity distribution and is at least `min_count` (enough history to be
    recommendable at all, so the attack's effect is not confounded by cold-start)."""
    pop = item_popularity(interactions)
    lo, hi = np.quantile(pop.to_numpy(), quantiles)
    cand = pop[(pop >= max(lo, min_count)) & (pop <= max(hi, min_count))].index
    if len(cand) < n_targets:  # small or very sparse data: take the least popular items above min_count
        cand = pop[pop >= min_count].sort_values(kind="stable").index[:max(n_targets, 4 * n_targets)]
    if len(cand) < n_targets:
        raise ValueError(f"only {len(cand)} items have at least {min_count} interactions; need {n_targets} targets")
    rng = np.random.default_rng(seed)
    cand = np.asarray(sorted(map(str, cand)))
    return sorted(rng.choice(cand, n_targets, replace=False).tolist())


def inject_attack(interactions: pd.DataFrame, cfg: ShillingConfig | None = None, **overrides) -> PoisonedData:
    """Add fake users to `interactions` according to `cfg`; returns the poisoned table and what was injected."""
    cfg = ShillingConfig.model_validate({**(cfg or ShillingConfig()).model_dump(), **overrides})
    rng = np.random.default_rng(cfg.seed)
    inter = interactions
    real = inter.drop_duplicates(["user_id", "item_id"], keep="last")
    items = np.asarray(sorted(real["item_id"].astype(str).unique()))
    pop = item_popularity(real).reindex(items).to_numpy(dtype=float)
    n_real = real["user_id"].nunique()
    n_fake = max(1, int(round(cfg.fake_ratio * n_real)))

    targets = [str(t) for t in (cfg.targets if cfg.targets is not None else
                                select_targets(real, cfg.n_targets, cfg.target_quantiles, cfg.target_min_count, cfg.seed))]
    if len(set(targets)) != len(targets):
        raise ValueError(f"duplicate target items: {targets}")
    unknown = set(targets) - set(items)
    if unknown:  # a new item may be pushed, but it joins the catalogue only through the fake profiles
        items = np.concatenate([items, np.asarray(sorted(unknown))])
        pop = np.concatenate([pop, np.zeros(len(unknown))])
    is_target = np.isin(items, targets)

    n_free = int((~is_target).sum())
    if cfg.filler_fraction is not None:
        budgets = np.full(n_fake, int(round(cfg.filler_fraction * len(items))))
    elif cfg.filler_size is not None:
        budgets = np.full(n_fake, cfg.filler_size)
    elif cfg.profile_lengths == "real":
        budgets = sample_profile_lengths(real, n_fake, rng, min_length=len(targets)) - len(targets)
    else:
        budgets = np.full(n_fake, int(round(real.groupby("user_id").size().mean())) - len(targets))
    budgets = np.clip(budgets, 0, n_free).astype(int)

    selected = np.empty(0, dtype=items.dtype)
    if cfg.attack in ("bandwagon", "segment"):
        n_sel = min(cfg.n_selected, int(budgets.max()))
        score = pop.copy() if cfg.attack == "bandwagon" else _audience_popularity(real, items, targets, pop)
        score[is_target] = -np.inf
        order = np.lexsort((items, -score))  # most popular first, ties by id (deterministic)
        selected = items[order[:n_sel]]
    pool = ~is_target & ~np.isin(items, selected)
    pool_items = items[pool]
    if cfg.attack == "bandwagon":
        w = pop[pool] + 1e-12
        p = w / w.sum()
    else:
        p = None
    n_pool = int((p > 0).sum()) if p is not None else len(pool_items)

    rows_u: list[str] = []
    parts_i: list[np.ndarray] = []
    parts_k: list[np.ndarray] = []  # kind: 0 target, 1 selected, 2 filler
    fake_users = [f"fake-{cfg.attack}-{k}" for k in range(n_fake)]
    taken = set(map(str, real["user_id"].unique()))
    clash = taken.intersection(fake_users)
    if clash:
        raise ValueError(f"fake user ids already exist in the data: {sorted(clash)[:5]}")
    for u, budget in zip(fake_users, budgets):
        sel = selected[:min(len(selected), budget)]  # a short profile keeps the most popular selected items
        n_fill = min(budget - len(sel), n_pool)
        fill = rng.choice(pool_items, n_fill, replace=False, p=p) if n_fill else np.empty(0, dtype=items.dtype)
        prof = np.concatenate([np.asarray(targets, dtype=items.dtype), sel, fill])
        k = np.concatenate([np.zeros(len(targets), int), np.ones(len(sel), int), np.full(len(fill), 2)])
        perm = rng.permutation(len(prof))  # interleave, as a human-looking session would
        rows_u += [u] * len(prof)
        parts_i.append(prof[perm])
        parts_k.append(k[perm])
    rows_i = np.concatenate(parts_i) if parts_i else np.empty(0, dtype=str)
    kinds = np.concatenate(parts_k) if parts_k else np.empty(0, dtype=int)

    fake = pd.DataFrame({"user_id": pd.Series(rows_u, dtype=inter["user_id"].dtype),
                         "item_id": pd.Series(rows_i.astype(str), dtype=inter["item_id"].dtype)})
    if "rating" in inter.columns:
        fake["rating"] = _fake_ratings(real, rows_i.astype(str), kinds, cfg.attack, rng)
    out = append_fake_rows(inter, fake, cfg.attack, len(fake_users), list(targets))
    return PoisonedData(out, fake_users, list(targets), cfg.attack, [str(s) for s in selected],
                        cfg.model_dump(mode="json"))


def append_fake_rows(inter: pd.DataFrame, fake: pd.DataFrame, attack: str, n_fake: int,
                     targets: list[str]) -> pd.DataFrame:
    """Real rows followed by the fake ones: timestamps after every real one, row labels continuing the
    real ones (line numbers), the real columns' dtypes, and the attack recorded in attrs["poisoning"]."""
    fake = fake.copy()
    t0 = int(inter["timestamp"].max()) + 1 if len(inter) else 0
    fake["timestamp"] = np.arange(t0, t0 + len(fake), dtype=np.int64)
    fake = fake[[c for c in inter.columns if c in fake.columns]]
    start = (int(inter.index.max()) + 1) if len(inter) and pd.api.types.is_integer_dtype(inter.index) else len(inter)
    fake.index = pd.RangeIndex(start, start + len(fake))
    out = pd.concat([inter, fake])
    out = out.astype({c: inter[c].dtype for c in fake.columns})
    out.attrs.update(inter.attrs)
    out.attrs["poisoning"] = {"attack": attack, "fake_users": n_fake, "targets": targets}
    return out


def _audience_popularity(real: pd.DataFrame, items: np.ndarray, targets: list[str], pop: np.ndarray) -> np.ndarray:
    """Popularity of each item among the users who interacted with a target (the segment); items the
    audience never touched fall back to a tiny multiple of global popularity (ties broken by it)."""
    audience = real.loc[real["item_id"].astype(str).isin(targets), "user_id"].unique()
    seg = real[real["user_id"].isin(audience)].groupby(real["item_id"].astype(str)).size()
    return seg.reindex(items).fillna(0).to_numpy(dtype=float) + 1e-6 * pop


def _fake_ratings(real: pd.DataFrame, items: np.ndarray, kinds: np.ndarray, attack: str,
                  rng: np.random.Generator) -> np.ndarray:
    r = real["rating"].astype(float)
    lo, hi = float(r.min()), float(r.max())
    integral = bool(np.all(np.mod(r.dropna().to_numpy(), 1) == 0))
    out = np.empty(len(items), dtype=np.float64)
    fill = kinds == 2
    if attack == "average":
        stats = r.groupby(real["item_id"].astype(str)).agg(["mean", "std"])
        mu = stats["mean"].reindex(items[fill]).fillna(r.mean()).to_numpy()
        sd = stats["std"].reindex(items[fill]).fillna(r.std()).fillna(0).to_numpy()
        out[fill] = rng.normal(mu, sd)
    elif attack == "segment":
        out[fill] = lo
    else:  # random and bandwagon fillers: the global rating distribution
        out[fill] = rng.normal(r.mean(), r.std() if len(r) > 1 else 0.0, int(fill.sum()))
    out[~fill] = hi  # targets and selected items
    if integral:
        out = np.round(out)
    return np.clip(out, lo, hi)


OBFUSCATIONS = ("noise", "target_shift", "popular")


def obfuscate(poisoned: PoisonedData, kind: str, strength: float = 0.2, seed: int = 0) -> PoisonedData:
    """An obfuscated copy of an injection (Williams et al. 2006's obfuscated attack models, implicit form):

      noise         each fake's non-target items: a `strength` share swapped for items drawn uniformly
      target_shift  a `strength` share of the fakes drop the targets (cover profiles), so the
                    targets' holder group is less tightly co-held
      popular       a `strength` share of each fake's non-target items swapped for items drawn with
                    probability proportional to popularity (popular-item averaging)

    Real rows, fake ids and profile lengths (except the dropped targets of target_shift) stay as they
    were; the attack is named "<attack>+<kind>"."""
    if kind not in OBFUSCATIONS:
        raise ValueError(f"unknown obfuscation {kind!r}; one of {OBFUSCATIONS}")
    if not 0 <= strength <= 1:
        raise ValueError(f"obfuscation strength must lie in [0, 1], got {strength}")
    rng = np.random.default_rng(seed)
    inter = poisoned.interactions
    fake_set = set(poisoned.fake_users)
    is_fake = inter["user_id"].isin(fake_set)
    real, inj = inter[~is_fake], inter[is_fake]
    items = np.asarray(sorted(real["item_id"].astype(str).unique()))
    pop = item_popularity(real).reindex(items).fillna(0).to_numpy(dtype=float)
    targets = set(poisoned.targets)
    cover = set(rng.choice(poisoned.fake_users, int(round(strength * len(poisoned.fake_users))), replace=False)) \
        if kind == "target_shift" else set()
    parts = []
    for u, prof in inj.groupby("user_id", sort=False):
        held = prof["item_id"].astype(str).to_numpy()
        rest = held[~np.isin(held, list(targets))]
        if kind == "target_shift":
            keep = held if u not in cover else rest
            parts.append(prof[prof["item_id"].astype(str).isin(set(keep))])
            continue
        n_swap = int(round(strength * len(rest)))
        if n_swap == 0:
            parts.append(prof)
            continue
        out = rng.choice(len(rest), n_swap, replace=False)
        pool = ~np.isin(items, held)
        p = None if kind == "noise" else pop[pool] / pop[pool].sum()
        new = rng.choice(items[pool], min(n_swap, int(pool.sum())), replace=False, p=p)
        kept = np.delete(rest, out)
        new_items = np.concatenate([np.asarray([t for t in held if t in targets]), kept, new])
        row = prof.iloc[:1]
        extra = pd.DataFrame({c: np.repeat(row[c].to_numpy(), len(new_items)) for c in prof.columns})
        extra["item_id"] = pd.Series(new_items, dtype=prof["item_id"].dtype).to_numpy()
        if "rating" in prof.columns:  # a swapped-in item takes the rating of the item it replaced
            r = prof.set_index(prof["item_id"].astype(str))["rating"]
            old = np.concatenate([[t for t in held if t in targets], kept, rest[out][:len(new)]])
            extra["rating"] = r.reindex(old).to_numpy(dtype=float)
        parts.append(extra)
    fake = pd.concat(parts, ignore_index=True) if parts else inj.iloc[:0]
    out = append_fake_rows(real, fake[[c for c in real.columns if c in fake.columns]].drop(columns="timestamp"),
                           f"{poisoned.attack}+{kind}", len(poisoned.fake_users), list(poisoned.targets))
    return PoisonedData(out, list(poisoned.fake_users), list(poisoned.targets), f"{poisoned.attack}+{kind}",
                        list(poisoned.selected), {**poisoned.config, "obfuscation": kind, "strength": strength})
