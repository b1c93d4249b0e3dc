"""GAN-made fake user profiles for implicit feedback (after AUSH, Lin et al. 2020, and Leg-UP, Lin et al. 2022).

The attacker knows the interaction table. Real profiles serve as *templates*. The generator G reads a
template with part of its items dropped (`template_keep`) and a noise vector. It outputs one logit per
item. A profile is drawn from those logits as the top-k items of logits + Gumbel noise. This is the
Gumbel-top-k trick: it samples k items without replacement with probabilities ∝ softmax(logits). For
training, the hard top-k goes forward, and a straight-through gradient comes back through the
relaxation  sigmoid((logits + gumbel - threshold) / tau),  where the threshold lies between the k-th
and the (k+1)-th score. The critic D therefore sees binary vectors exactly like the ones the attack
injects. A continuous sigmoid output would let D tell fakes from real rows by their non-binary values.
During training, k is the template's own length, so D cannot use profile length as a signal. At
attack time, k is the filler size, and the targets are masked out of the draw and then added.

Training is WGAN-GP (Gulrajani et al. 2017): a linear critic with no sigmoid, `n_critic` critic steps
per generator step, and a gradient penalty on random interpolates between real and fake profiles.
Before it, G is warm-started for `pretrain_epochs` as a denoising autoencoder (the multinomial
likelihood of the full template given its kept part, as in Mult-DAE). Its output bias starts at log
popularity. Stealth step: after training, G's output bias is fitted so that the item distribution of
profiles drawn at the attack's length matches the real item distribution (`calibrate_rounds` rounds of
iterative proportional fitting). See docs/gan.md for the choices and the numbers on ML-100K.

Input and output follow rrec's interaction contract: user_id (str), item_id (str), rating (float64,
optional), timestamp (int64). Fake users are "fake-gan-<k>". Their rows carry the maximum observed
rating when the data has ratings, and their timestamps come after every real one.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from rrec_core.config import GanConfig
from rrec_core.io import atomic_path, load_tensors, save_tensors
from rrec_core.poisoning.shilling import PoisonedData, append_fake_rows, sample_profile_lengths, select_targets

ATTACK = "gan"
FORMAT_VERSION = 1


class Generator(nn.Module):
    """[template (kept items), noise] -> item logits."""

    def __init__(self, n_items: int, hidden: int = 256, noise_dim: int = 32) -> None:
        super().__init__()
        self.n_items, self.hidden, self.noise_dim = n_items, hidden, noise_dim
        self.net = nn.Sequential(nn.Linear(n_items + noise_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_items))
        # skip connection: how strongly a kept template item is favoured (AUSH / Leg-UP edit a template)
        self.copy = nn.Parameter(torch.zeros(()))

    def forward(self, template: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([template, noise], 1)) + self.copy * template


class Discriminator(nn.Module):
    """WGAN critic: binary profile -> unbounded realness score (no sigmoid, no batch norm)."""

    def __init__(self, n_items: int, hidden: int = 256) -> None:
        super().__init__()
        self.n_items, self.hidden = n_items, hidden
        self.net = nn.Sequential(nn.Linear(n_items, hidden), nn.LeakyReLU(0.2),
                                 nn.Linear(hidden, hidden // 2), nn.LeakyReLU(0.2), nn.Linear(hidden // 2, 1))

    def forward(self, profile: torch.Tensor) -> torch.Tensor:
        return self.net(profile).squeeze(1)


@dataclass
class GanResult:
    generator: Generator
    discriminator: Discriminator
    item_ids: list[str]  # column j of a profile vector is item_ids[j]
    log: list[dict]  # one dict per epoch
    seconds: float  # training wall time
    config: GanConfig = field(default_factory=GanConfig)
    # templates as CSR over item columns: the attacker's copy of the real profiles
    template_indptr: torch.Tensor = field(default_factory=lambda: torch.zeros(1, dtype=torch.int64))
    template_indices: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    # facts about the real data that the attack needs: mean_length, max_timestamp, max_rating (or None)
    meta: dict = field(default_factory=dict)

    def templates(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Dense binary [len(rows), n_items] template profiles (all of them when rows is None)."""
        n_users = len(self.template_indptr) - 1
        rows = torch.arange(n_users) if rows is None else rows
        return _dense(self.template_indptr, self.template_indices, rows, len(self.item_ids))


# --- training -----------------------------------------------------------------------------------

def train_gan(interactions: pd.DataFrame, cfg: GanConfig | None = None, **overrides) -> GanResult:
    """Train G and D on the real profiles of `interactions` (distinct (user, item) pairs, implicit)."""
    cfg = GanConfig.model_validate({**(cfg or GanConfig()).model_dump(), **overrides})
    t_start = time.perf_counter()
    real = interactions.drop_duplicates(["user_id", "item_id"], keep="last")
    if real.empty:
        raise ValueError("train_gan needs at least one interaction")
    uc = pd.Categorical(real["user_id"].astype(str))
    ic = pd.Categorical(real["item_id"].astype(str))
    item_ids = [str(i) for i in ic.categories]
    n_users, n_items = len(uc.categories), len(item_ids)
    u = uc.codes.astype(np.int64)
    order = np.lexsort((ic.codes, u))
    indices = torch.as_tensor(ic.codes.astype(np.int64)[order])
    indptr = torch.as_tensor(np.concatenate([[0], np.cumsum(np.bincount(u, minlength=n_users))]), dtype=torch.int64)
    X = _dense(indptr, indices, torch.arange(n_users), n_items)  # [n_users, n_items]
    lengths = X.sum(1).long()
    pop = X.sum(0)
    p_real = pop / pop.sum()

    g = torch.Generator().manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):  # parameter init from the seed, without touching global RNG state
        torch.manual_seed(cfg.seed)
        G = Generator(n_items, cfg.hidden, cfg.noise_dim)
        D = Discriminator(n_items, cfg.hidden)
    with torch.no_grad():  # start from popularity sampling: softmax(bias) = real item distribution
        G.net[-1].bias.copy_(torch.log(p_real.clamp_min(1e-8)))
        G.net[-1].weight.mul_(0.1)
        G.copy.fill_(cfg.copy_init)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr, betas=(0.5, 0.9))
    bs = min(cfg.batch_size, n_users)
    steps = max(1, math.ceil(n_users / bs))
    eval_rows = torch.randperm(n_users, generator=torch.Generator().manual_seed(cfg.seed + 1))[:cfg.eval_users]

    log = []
    opt_pre = torch.optim.Adam(G.parameters(), lr=cfg.pretrain_lr)
    for epoch in range(1, cfg.pretrain_epochs + 1):  # G learns which items go with a template's kept half
        t0, c0 = time.perf_counter(), time.process_time()
        perm = torch.randperm(n_users, generator=g)
        total = 0.0
        for s in range(steps):
            tmpl = X[perm[s * bs:(s + 1) * bs]]
            loss = -(torch.log_softmax(_logits(G, tmpl, cfg.template_keep, g), 1) * tmpl).sum(1).mean()
            opt_pre.zero_grad(set_to_none=True)
            loss.backward()
            opt_pre.step()
            total += loss.item() / steps
        log.append({"epoch": epoch - cfg.pretrain_epochs - 1, "phase": "pretrain", "g_nll": total,
                    "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0})
    for epoch in range(1, cfg.epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        acc = {"d_loss": 0.0, "wasserstein": 0.0, "gp": 0.0, "g_loss": 0.0, "batch_tv": 0.0}
        perm = torch.randperm(n_users, generator=g)
        G.train(), D.train()
        for s in range(steps):
            # the critic's fakes for its n_critic steps come from the same (frozen) G: draw them in one go
            tmpl = torch.randint(n_users, (cfg.n_critic * bs,), generator=g)
            reals = torch.randint(n_users, (cfg.n_critic * bs,), generator=g)
            with torch.no_grad():
                fakes = _draw(G, X[tmpl], lengths[tmpl], cfg, g)
            for c in range(cfg.n_critic):
                real_x, fake_x = X[reals[c * bs:(c + 1) * bs]], fakes[c * bs:(c + 1) * bs]
                d_real, d_fake = D(real_x), D(fake_x)
                gp = _gradient_penalty(D, real_x, fake_x, g)
                w = d_real.mean() - d_fake.mean()
                loss_d = -w + cfg.gp_weight * gp
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                acc["d_loss"] += loss_d.item() / cfg.n_critic
                acc["wasserstein"] += w.item() / cfg.n_critic
                acc["gp"] += gp.item() / cfg.n_critic
            tmpl = perm[torch.arange(s * bs, s * bs + bs) % n_users]
            fake_x = _draw(G, X[tmpl], lengths[tmpl], cfg, g)  # hard forward, straight-through backward
            for p in D.parameters():
                p.requires_grad_(False)
            adv = -D(fake_x).mean()
            for p in D.parameters():
                p.requires_grad_(True)
            p_fake = fake_x.detach().sum(0) / fake_x.detach().sum()
            tv = 0.5 * (p_fake - p_real).abs().sum().detach()  # diagnostic only; the stealth step is _calibrate
            loss_g = adv
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            acc["g_loss"] += loss_g.item()
            acc["batch_tv"] += tv.item()
        row = {"epoch": epoch, "phase": "gan"}
        row.update({k: v / steps for k, v in acc.items()})
        row.update(_evaluate(G, D, X, lengths, eval_rows, cfg))
        row["copy"] = float(G.copy.detach())
        row["seconds"] = time.perf_counter() - t0
        row["cpu_seconds"] = time.process_time() - c0
        log.append(row)

    calib = _calibrate(G, X, lengths, p_real, cfg, g)
    if calib:
        log.append(calib)
    G.eval(), D.eval()
    meta = {"n_users": n_users, "n_items": n_items, "n_interactions": int(len(real)),
            "mean_length": float(lengths.float().mean()),
            "max_timestamp": int(interactions["timestamp"].max()),
            "max_rating": float(real["rating"].max()) if "rating" in real.columns and real["rating"].notna().any() else None}
    return GanResult(G, D, item_ids, log, time.perf_counter() - t_start, cfg, indptr, indices, meta)


@torch.no_grad()
def _calibrate(G: Generator, X: torch.Tensor, lengths: torch.Tensor, p_real: torch.Tensor, cfg: GanConfig,
               g: torch.Generator) -> dict:
    """Stealth step: shift G's output bias by log(p_real / p_fake), where p_fake is the item distribution
    of profiles drawn from every template at the attack's profile length (round(mean real length)), as
    generate_profiles draws them (iterative proportional fitting, `calibrate_rounds` rounds, add-one
    smoothing). Returns the log row: the TV distance of each round."""
    if cfg.calibrate_rounds <= 0:
        return {}
    t0, c0 = time.perf_counter(), time.process_time()
    G.eval()
    n_users = len(X)
    rows = torch.arange(n_users).repeat(cfg.calibrate_draws)
    k = torch.full((len(rows),), int(round(float(lengths.float().mean()))))
    real_counts = p_real * k[:n_users].sum()
    tvs = []
    for r in range(cfg.calibrate_rounds + 1):
        counts = torch.zeros(X.shape[1])
        for s in range(0, len(rows), 1024):
            b = rows[s:s + 1024]
            counts += _draw(G, X[b], k[s:s + 1024], cfg, g).round().sum(0)
        p_fake = counts / counts.sum()
        tvs.append(float(0.5 * (p_fake - p_real).abs().sum()))
        if r == cfg.calibrate_rounds:
            break
        # counts on the same scale as the real ones (one draw per template), smoothed for rare items
        ratio = (real_counts + 1) / (counts / cfg.calibrate_draws + 1)
        G.net[-1].bias.add_(torch.log(ratio))
    G.train()
    return {"epoch": cfg.epochs + 1, "phase": "calibrate", "tv_before": tvs[0], "tv_after": tvs[-1],
            "tv_rounds": tvs, "seconds": time.perf_counter() - t0, "cpu_seconds": time.process_time() - c0}


def _dense(indptr: torch.Tensor, indices: torch.Tensor, rows: torch.Tensor, n_items: int) -> torch.Tensor:
    starts, ends = indptr[rows], indptr[rows + 1]
    counts = ends - starts
    r = torch.repeat_interleave(torch.arange(len(rows)), counts)
    offs = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    out = torch.zeros(len(rows), n_items)
    out[r, indices[torch.repeat_interleave(starts, counts) + offs]] = 1.0
    return out


def _logits(G: Generator, templates: torch.Tensor, keep: float, g: torch.Generator) -> torch.Tensor:
    kept = templates * (torch.rand(templates.shape, generator=g) < keep).float()
    noise = torch.randn(len(templates), G.noise_dim, generator=g)
    return G(kept, noise)


def _gumbel(shape, g: torch.Generator) -> torch.Tensor:
    u = torch.rand(shape, generator=g).clamp(1e-10, 1 - 1e-7)
    return -torch.log(-torch.log(u))


def _draw(G: Generator, templates: torch.Tensor, k: torch.Tensor, cfg: GanConfig, g: torch.Generator) -> torch.Tensor:
    """Binary profiles with k[b] items in row b: hard Gumbel-top-k forward, sigmoid relaxation backward."""
    s = _logits(G, templates, cfg.template_keep, g) + _gumbel(templates.shape, g)
    return _straight_through_topk(s, k, cfg.tau)


def _straight_through_topk(s: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """Forward: 1 on the k[b] largest entries of row b. Backward: d/ds sigmoid((s - kth) / tau).

    The k[b]-th largest value of every row comes from one kthvalue call (a selection, not a sort): each
    row is padded with kmax - k[b] values of +inf and k[b] values of -inf, which makes it the kmax-th
    largest entry of the padded row for all rows at once."""
    n, n_items = s.shape
    k = k.clamp(1, n_items)
    kmax = int(k.max())
    pad = torch.where(torch.arange(kmax)[None, :] < (kmax - k)[:, None], math.inf, -math.inf)
    kth = torch.kthvalue(torch.cat([s.detach(), pad], 1), n_items + 1, dim=1, keepdim=True).values  # [n, 1]
    hard = (s.detach() >= kth).float()
    soft = torch.sigmoid((s - kth) / tau)
    return hard + soft - soft.detach()


def _gradient_penalty(D: Discriminator, real: torch.Tensor, fake: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    eps = torch.rand(len(real), 1, generator=g)
    mix = (eps * real + (1 - eps) * fake).requires_grad_(True)
    grad, = torch.autograd.grad(D(mix).sum(), mix, create_graph=True)
    return ((grad.norm(2, dim=1) - 1) ** 2).mean()


@torch.no_grad()
def _evaluate(G: Generator, D: Discriminator, X: torch.Tensor, lengths: torch.Tensor, rows: torch.Tensor,
              cfg: GanConfig) -> dict:
    """Critic on a fixed set of real users vs fakes drawn from the same templates (fixed noise).

    d_acc: balanced accuracy at the midpoint between the mean real and the mean fake score (a WGAN
    critic has no natural 0.5 threshold); d_auc: P(score(real) > score(fake)), threshold-free."""
    g = torch.Generator().manual_seed(cfg.seed + 2)
    G.eval(), D.eval()
    fake = _draw(G, X[rows], lengths[rows], cfg, g)
    sr, sf = D(X[rows]), D(fake)
    G.train(), D.train()
    thr = (sr.mean() + sf.mean()) / 2
    acc = 0.5 * ((sr > thr).float().mean() + (sf <= thr).float().mean())
    ranks = torch.as_tensor(pd.Series(torch.cat([sr, sf]).numpy()).rank().to_numpy().copy())
    auc = (ranks[:len(sr)].sum() - len(sr) * (len(sr) + 1) / 2) / (len(sr) * len(sf))
    return {"d_acc": float(acc), "d_auc": float(auc), "d_real": float(sr.mean()), "d_fake": float(sf.mean())}


# --- attack -------------------------------------------------------------------------------------

def generate_profiles(result: GanResult, targets: list[str], n_users: int, seed: int = 0,
                      filler_size: int | None = None, batch: int = 256,
                      lengths: np.ndarray | None = None) -> pd.DataFrame:
    """Interactions of `n_users` fake users "fake-gan-<k>": each holds every target plus its fillers
    drawn from G (Gumbel-top-k of its logits for a randomly drawn template, targets excluded).

    Fillers per profile: `lengths[k] - len(targets)` when `lengths` (whole profile lengths, e.g. from
    shilling.sample_profile_lengths) is given, else `filler_size`, else the config's, else
    round(mean real length) - len(targets). Rows follow the contract: rating = the maximum real rating
    when the data had ratings, timestamps after every real one."""
    targets = [str(t) for t in targets]
    if len(set(targets)) != len(targets):
        raise ValueError(f"duplicate target items: {targets}")
    cfg = result.config
    item_ids = np.asarray(result.item_ids, dtype=object)
    n_items = len(item_ids)
    col = pd.Index(result.item_ids).get_indexer(targets)
    n_in_catalogue = int((col >= 0).sum())
    if lengths is not None:
        fills_n = np.asarray(lengths, dtype=np.int64) - len(targets)
    else:
        if filler_size is None:
            filler_size = cfg.filler_size
        if filler_size is None:
            filler_size = int(round(result.meta["mean_length"])) - len(targets)
        fills_n = np.full(n_users, filler_size, dtype=np.int64)
    fills_n = np.clip(fills_n, 0, n_items - n_in_catalogue)
    if len(fills_n) != n_users:
        raise ValueError(f"{len(fills_n)} profile lengths for {n_users} fake users")

    g = torch.Generator().manual_seed(seed)
    n_templates = len(result.template_indptr) - 1
    tmpl = torch.randint(n_templates, (n_users,), generator=g)
    result.generator.eval()
    fill: list[np.ndarray] = []
    kmax = int(fills_n.max()) if n_users else 0
    with torch.no_grad():
        for s in range(0, n_users, batch):
            rows = tmpl[s:s + batch]
            score = _logits(result.generator, result.templates(rows), cfg.template_keep, g) + _gumbel((len(rows), n_items), g)
            score[:, col[col >= 0]] = -math.inf  # targets are added below, never drawn
            top = torch.topk(score, kmax, dim=1).indices.numpy() if kmax else np.zeros((len(rows), 0), np.int64)
            fill += [top[r, :fills_n[s + r]] for r in range(len(rows))]  # Gumbel-top-k is nested in k
    rng = np.random.default_rng(seed)
    t_arr = np.asarray(targets, dtype=object)
    users, items = [], []
    for k in range(n_users):
        prof = np.concatenate([t_arr, item_ids[fill[k]]])
        users += [f"fake-{ATTACK}-{k}"] * len(prof)
        items.append(prof[rng.permutation(len(prof))])  # interleave targets and fillers
    item_col = np.concatenate(items) if items else np.empty(0, dtype=object)
    out = pd.DataFrame({"user_id": pd.Series(users, dtype="str"), "item_id": pd.Series(item_col, dtype="str")})
    if result.meta.get("max_rating") is not None:
        out["rating"] = np.full(len(out), float(result.meta["max_rating"]), dtype=np.float64)
    t0 = int(result.meta.get("max_timestamp", -1)) + 1
    out["timestamp"] = np.arange(t0, t0 + len(out), dtype=np.int64)
    return out


def gan_attack(interactions: pd.DataFrame, targets: list[str] | None = None, cfg: GanConfig | None = None,
               result: GanResult | None = None, **overrides) -> PoisonedData:
    """Train a GAN on `interactions` (or reuse `result`) and append round(fake_ratio * real users) GAN
    fake users pushing `targets` (None: `n_targets` drawn by shilling.select_targets with the seed).
    Same result type as shilling.inject_attack; attack name "gan"."""
    cfg = GanConfig.model_validate({**(cfg or GanConfig()).model_dump(), **overrides})
    inter = interactions
    real = inter.drop_duplicates(["user_id", "item_id"], keep="last")
    n_real = real["user_id"].nunique()
    n_fake = max(1, int(round(cfg.fake_ratio * n_real)))
    targets = [str(t) for t in (targets if targets is not None else select_targets(real, cfg.n_targets, seed=cfg.seed))]
    fake_users = [f"fake-{ATTACK}-{k}" for k in range(n_fake)]
    clash = set(map(str, real["user_id"].unique())).intersection(fake_users)
    if clash:
        raise ValueError(f"fake user ids already exist in the data: {sorted(clash)[:5]}")
    if result is None:
        result = train_gan(inter, cfg)
    lengths = None
    if cfg.filler_size is None and cfg.profile_lengths == "real":
        lengths = sample_profile_lengths(real, n_fake, np.random.default_rng(cfg.seed), min_length=len(targets))
    fake = generate_profiles(result, targets, n_fake, seed=cfg.seed, filler_size=cfg.filler_size, lengths=lengths)
    if "rating" in inter.columns and "rating" not in fake.columns:
        fake["rating"] = float(real["rating"].max())
    out = append_fake_rows(inter, fake, ATTACK, n_fake, targets)
    config = cfg.model_dump(mode="json")
    config.update(attack=ATTACK, targets=targets, train_seconds=result.seconds)
    return PoisonedData(out, fake_users, targets, ATTACK, [], config)


# --- stealth ------------------------------------------------------------------------------------

def stealth_stats(real: pd.DataFrame, fake: pd.DataFrame, exclude_items: list[str] | None = None) -> dict:
    """How close the fake profiles look to the real ones, on distinct (user, item) pairs.

    tv_distance: 0.5 * sum_i |p_fake(i) - p_real(i)|, where p(i) = (profiles holding i) / (all pairs), the
    item-popularity distribution of each set (items in `exclude_items`, e.g. the targets, are dropped
    first). Also the profile-length mean and standard deviation (ddof 0) of both sets."""
    def prep(df):
        d = df[["user_id", "item_id"]].astype(str).drop_duplicates()
        return d[~d["item_id"].isin(set(map(str, exclude_items or [])))]

    r, f = prep(real), prep(fake)
    pr = r["item_id"].value_counts(normalize=True)
    pf = f["item_id"].value_counts(normalize=True)
    tv = 0.5 * float(pr.sub(pf, fill_value=0.0).abs().sum()) if len(r) and len(f) else float("nan")
    lr, lf = real.drop_duplicates(["user_id", "item_id"]).groupby("user_id").size(), \
        fake.drop_duplicates(["user_id", "item_id"]).groupby("user_id").size()
    return {"tv_distance": tv,
            "real_length_mean": float(lr.mean()), "real_length_std": float(lr.std(ddof=0)),
            "fake_length_mean": float(lf.mean()), "fake_length_std": float(lf.std(ddof=0)),
            "n_real": int(len(lr)), "n_fake": int(len(lf))}


# --- save / load --------------------------------------------------------------------------------

def save_generator(result: GanResult, path: str | Path) -> Path:
    """Directory with gan.safetensors (G, D weights, templates) and gan.json (config, ids, meta, log).

    Each file lands atomically (temp file + os.replace); the JSON, written last, marks a complete save."""
    path = Path(path)
    tensors = {f"generator.{k}": v for k, v in result.generator.state_dict().items()}
    tensors.update({f"discriminator.{k}": v for k, v in result.discriminator.state_dict().items()})
    tensors["templates.indptr"] = result.template_indptr
    tensors["templates.indices"] = result.template_indices
    save_tensors(path / "gan.safetensors", tensors, metadata={"format": "rrec-gan", "version": str(FORMAT_VERSION)})
    doc = {"format": "rrec-gan", "version": FORMAT_VERSION, "config": result.config.model_dump(mode="json"),
           "item_ids": list(result.item_ids), "meta": result.meta, "log": result.log, "seconds": result.seconds}
    with atomic_path(path / "gan.json") as tmp:
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
    return path


def load_generator(path: str | Path) -> GanResult:
    """Rebuild a saved GanResult (safetensors + JSON only, no pickle)."""
    path = Path(path)
    doc = json.loads((path / "gan.json").read_text())
    if doc.get("format") != "rrec-gan" or doc.get("version") != FORMAT_VERSION:
        raise ValueError(f"{path / 'gan.json'}: not an rrec GAN generator (format {doc.get('format')!r}, "
                         f"version {doc.get('version')!r})")
    cfg = GanConfig.model_validate(doc["config"])
    n_items = len(doc["item_ids"])
    G, D = Generator(n_items, cfg.hidden, cfg.noise_dim), Discriminator(n_items, cfg.hidden)
    state = load_tensors(path / "gan.safetensors")
    G.load_state_dict({k[len("generator."):]: v for k, v in state.items() if k.startswith("generator.")}, strict=True)
    D.load_state_dict({k[len("discriminator."):]: v for k, v in state.items() if k.startswith("discriminator.")},
                      strict=True)
    return GanResult(G.eval(), D.eval(), doc["item_ids"], doc["log"], float(doc["seconds"]), cfg,
                     state["templates.indptr"], state["templates.indices"], doc["meta"])
