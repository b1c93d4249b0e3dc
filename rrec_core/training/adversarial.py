"""Adversarial fine-tuning: APR and PGD adversarial training on embeddings, text-side FGM.

Objective per batch: w * L_clean + (1 - w) * L_adv (w = clean_weight), where L_adv is the BPR loss with the
batch's user and item representations perturbed inside the eps-ball (rrec_core.attacks). For the
text-aware hybrid the item representation already contains the LM projection output, so the
perturbation covers it; when LM layers are fine-tuned, an extra FGM perturbation of the LM's token
states (the input of the tuned layers) is applied in the adversarial pass.
"""
from __future__ import annotations

import copy

import torch

from rrec_core import ops
from rrec_core.attacks import Attack, bpr_loss, perturbations, radius
from rrec_core.attacks.ranking import (
    RankingAttack,
    catalogue_logits,
    catalogue_objective,
    catalogue_perturbations,
    inbatch_listwise_perturbations,
    ranking_attack,
)
from rrec_core.config import AdversarialConfig, EvalConfig
from rrec_core.data.split import Split
from rrec_core.evaluation.attacked import attacked_per_user, held_out
from rrec_core.evaluation.ranking import _batch_mask, _sorted_pairs, evaluate_model
from rrec_core.lm.tower import LMTower
from rrec_core.models import Recommender, TextHybrid
from rrec_core.training.loop import TrainResult, train_recommender
from rrec_core.training.sampling import NegativeSampler


def training_attack(cfg: AdversarialConfig) -> Attack:
    steps = 1 if cfg.method == "apr" else cfg.steps
    return Attack(eps=cfg.eps, steps=steps, norm="l2" if cfg.method == "apr" else cfg.norm, scale=cfg.scale,
                  step_fraction=cfg.step_fraction, delta_penalty=cfg.delta_penalty)


class AdversarialLoss:
    """batch_loss for train_recommender: w * clean BPR + (1 - w) * BPR under attack (w = clean_weight).

    `user_weights` [n_users] (optional) weight each pair by its user in both terms: the GAN-trained
    suspicion weights (rrec_core.poisoning.detector) make the model not follow users who look like
    generated profiles. The attack itself still maximizes the unweighted loss.

    The catalogue adversaries (listwise_catalogue, trades) score every item for the batch's users, so
    they need the training `history` (user-sorted [n, 2] pairs, masked out of the candidates)."""

    def __init__(self, cfg: AdversarialConfig, user_weights: torch.Tensor | None = None,
                 history: torch.Tensor | None = None, n_users: int | None = None) -> None:
        self.cfg = cfg
        self.attack = training_attack(cfg)
        self.user_weights = user_weights
        if cfg.adversary in ("listwise_catalogue", "trades") and (history is None or n_users is None):
            raise ValueError(f"adversary {cfg.adversary!r} needs the training history and n_users")
        self.history = _sorted_pairs(history) if history is not None else None
        self.n_users = n_users
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self.hard_sampler: NegativeSampler | None = None
        if cfg.hard_negatives > 0:
            if history is None:
                raise ValueError("hard_negatives needs the training history (negatives exclude it)")
            self._history_pairs = history

    def _hard_negatives(self, model: Recommender, users: torch.Tensor) -> torch.Tensor:
        """[B] for each pair, the best-scored of `hard_negatives` uniform items outside the user's history."""
        if self.hard_sampler is None:
            self.hard_sampler = NegativeSampler(self._history_pairs.cpu().numpy(), model.n_items,
                                                torch.Generator().manual_seed(self.cfg.train.seed + 1))
        k = self.cfg.hard_negatives
        cand = self.hard_sampler.sample(users.cpu().repeat_interleave(k)).reshape(-1, k).to(users.device)
        with torch.no_grad():
            s = (model.user_vectors(users).unsqueeze(1) * model.item_vectors(cand.flatten()).reshape(*cand.shape, -1)).sum(-1)
        return cand.gather(1, s.argmax(1, keepdim=True)).squeeze(1)

    def __call__(self, model: Recommender, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        hard = self._hard_negatives(model, users) if self.cfg.hard_negatives > 0 else None
        if hard is not None and self.cfg.hard_negatives_clean:
            neg, hard = hard, None
        uu, u_idx = torch.unique(users, return_inverse=True)
        extra = [hard] if hard is not None else []
        ii, inv = torch.unique(torch.cat([pos, neg, *extra]), return_inverse=True)
        p_idx, n_idx = inv[: len(pos)], inv[len(pos):2 * len(pos)]
        adv_n_idx = inv[2 * len(pos):] if hard is not None else n_idx
        tower = getattr(model, "text_override", None)
        text_attack = isinstance(tower, LMTower) and self.cfg.text_eps > 0
        tokens = tower.token_states(ii).detach().requires_grad_() if text_attack else None

        U = model.user_vectors(uu)
        V = _item_vectors(model, ii, tokens)
        w = None
        if self.user_weights is not None:
            self.user_weights = self.user_weights.to(users.device)
            w = self.user_weights[users]
        # index_select, not U[u_idx]: the backward of advanced indexing is a slow index_put on CPU
        # (bench/bench_apr_rows.py: the APR step 1.7-1.9x faster at ML-100K size)
        clean = bpr_loss(U.index_select(0, u_idx), V.index_select(0, p_idx), V.index_select(0, n_idx), w)
        if self.cfg.clean_weight >= 1.0:
            return clean
        scale = self._vulnerability(U, V, u_idx, p_idx, n_idx, len(uu)) if self.cfg.user_radius == "vulnerability" else None
        if self.cfg.adversary in ("listwise_catalogue", "trades"):
            adv = self._catalogue_adversarial(model, uu, u_idx, pos, U, scale, w)
            return self.cfg.clean_weight * clean + (1 - self.cfg.clean_weight) * adv
        if self.cfg.adversary == "listwise":
            a = self.attack
            r_u = radius(U.detach(), a)
            dU, dV = inbatch_listwise_perturbations(U, V, u_idx, p_idx, r_u * scale if scale is not None else r_u,
                                                    radius(V.detach(), a), a.steps, a.norm, a.step_fraction)
        else:
            dU, dV = perturbations(U, V, u_idx, p_idx, adv_n_idx, self.attack, user_scale=scale)
        if text_attack:
            # FGM on token states: per-token L2 step of radius text_eps along the clean loss gradient
            (g,) = torch.autograd.grad(clean, tokens, retain_graph=True)
            flat = g.reshape(-1, g.shape[-1])
            adv_tokens = tokens.detach() + ops.fgsm(flat, self.cfg.text_eps, "l2").reshape_as(g)
            V_adv = _item_vectors(model, ii, adv_tokens) + dV
        else:
            V_adv = V + dV
        U_adv = U + dU
        adv = bpr_loss(U_adv.index_select(0, u_idx), V_adv.index_select(0, p_idx), V_adv.index_select(0, adv_n_idx), w)
        return self.cfg.clean_weight * clean + (1 - self.cfg.clean_weight) * adv


    def _catalogue_adversarial(self, model: Recommender, uu, u_idx, pos, U, scale, w) -> torch.Tensor:
        """The adversarial term over the whole catalogue: the listwise cross-entropy of each batch pair's
        positive (history masked, the positive kept) at the perturbation maximizing it, or TRADES'
        KL(clean ranking || perturbed ranking) of each batch user at the perturbation maximizing that."""
        assert self.history is not None and self.n_users is not None
        V = model.item_vectors()  # every item: the ranking the evaluation attacks
        hist = _batch_mask(self.history, uu.cpu(), self.n_users, V.shape[0]).to(V.device)
        a = self.attack
        r_u = radius(U.detach(), a)
        r_u = r_u * scale if scale is not None else r_u
        r_v = radius(V.detach(), a)
        if self.cfg.adversary == "listwise_catalogue":
            mask = hist.index_select(0, u_idx)
            mask[torch.arange(len(pos), device=mask.device), pos] = False
            dU, dV = catalogue_perturbations(U, V, u_idx, mask, "listwise", r_u, r_v, a.steps, a.norm,
                                             a.step_fraction, pos=pos)
            loss = catalogue_objective(catalogue_logits(U + dU, V + dV, u_idx, mask), "listwise", pos=pos)
            return loss.mean() if w is None else (w * loss).sum() / w.sum().clamp_min(1e-12)
        rows = torch.arange(len(uu), device=U.device)
        dU, dV = catalogue_perturbations(U, V, rows, hist, "trades", r_u, r_v, a.steps, a.norm, a.step_fraction,
                                         generator=self.generator)
        reference = catalogue_logits(U, V, rows, hist)
        loss = catalogue_objective(catalogue_logits(U + dU, V + dV, rows, hist), "trades", reference=reference)
        return loss.mean()

    def _vulnerability(self, U, V, u_idx, p_idx, n_idx, n_users: int) -> torch.Tensor:
        """[n_users] radius multipliers, mean 1: clip(mean loss / user's loss, 1/cap, cap), renormalized."""
        with torch.no_grad():
            u, p, n = U.index_select(0, u_idx), V.index_select(0, p_idx), V.index_select(0, n_idx)
            nll = -torch.nn.functional.logsigmoid((u * p).sum(-1) - (u * n).sum(-1)).float()
            loss = torch.zeros(n_users, device=nll.device).index_add_(0, u_idx, nll)
            count = torch.zeros(n_users, device=nll.device).index_add_(0, u_idx, torch.ones_like(nll))
            loss = loss / count.clamp_min(1)
            cap = self.cfg.vulnerability_cap
            f = (loss.mean() / loss.clamp_min(1e-6)).clamp(1.0 / cap, cap)
            return f / f.mean()


def _item_vectors(model: Recommender, items: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
    if tokens is not None and isinstance(model, TextHybrid):
        ids = model.item_embedding(items)
        return ids + model.text_vectors(items, token_states=tokens)
    return model.item_vectors(items)


def validation_robustness(m: Recommender, split: Split, cfg: AdversarialConfig, sel_attack: Attack,
                          ev10: EvalConfig) -> float:
    """Validation NDCG@10 under the selection attack: the pairwise PGD, or (select_on=worst_case) the
    per-user minimum of it and the listwise and margin ranking attacks at the same radius."""
    _, pairwise = attacked_per_user(m, split, sel_attack, "valid", ev10, seed=cfg.train.seed)
    if cfg.select_on == "bpr":
        return pairwise["ndcg@10"].mean().item()
    with torch.no_grad():
        device = next(m.parameters()).device
        U, V = m.user_vectors(torch.arange(split.n_users, device=device)), m.item_vectors()
    target, exclude = held_out(split, "valid")
    worst = pairwise["ndcg@10"]
    for objective in ("listwise", "margin"):
        attack = RankingAttack(objective, cfg.eps, norm=sel_attack.norm, scale=cfg.scale,  # type: ignore[arg-type]
                               steps=cfg.select_attack_steps, restarts=1, seed=cfg.train.seed)
        worst = torch.minimum(worst, ranking_attack(U, V, target, exclude, attack, batch_users=ev10.batch_users)
                              .per_user["ndcg@10"])
    return worst.mean().item()


def validation_worst_case(model: Recommender, split: Split, cfg: AdversarialConfig,
                          eval_cfg: EvalConfig | None = None) -> float:
    """`model`'s validation NDCG@10 under `cfg`'s selection attack: the number adversarial_finetune selects
    on and the quality gate compares (for a model trained under another configuration too)."""
    sel_attack = Attack(eps=cfg.eps, steps=cfg.select_attack_steps, norm=training_attack(cfg).norm, scale=cfg.scale)
    ev10 = EvalConfig(ks=(10,), batch_users=(eval_cfg or EvalConfig()).batch_users)
    return validation_robustness(model, split, cfg, sel_attack, ev10)


def adversarial_finetune(pretrained: Recommender, split: Split, cfg: AdversarialConfig, eval_cfg: EvalConfig,
                         lm_tower: LMTower | None = None, progress: bool = True,
                         user_weights: torch.Tensor | None = None, checkpoint_dir=None) -> TrainResult:
    """Fine-tune a copy of `pretrained` adversarially; select the epoch that is most robust on validation
    (NDCG@10 under PGD at the training radius) among those that keep `min_clean_ratio` of its clean NDCG@10."""
    model = copy.deepcopy(pretrained)
    model.meta = {}
    sel_attack = Attack(eps=cfg.eps, steps=cfg.select_attack_steps, norm=training_attack(cfg).norm, scale=cfg.scale)
    ev10 = EvalConfig(ks=(10,), batch_users=eval_cfg.batch_users)
    clean0 = evaluate_model(pretrained, split, "valid", ev10)["ndcg@10"]

    def valid_score(m: Recommender) -> dict:
        clean = evaluate_model(m, split, "valid", ev10)["ndcg@10"]
        robust = validation_robustness(m, split, cfg, sel_attack, ev10)
        ok = clean >= cfg.min_clean_ratio * clean0
        return {"ndcg@10": clean, "ndcg@10_attacked": robust, "score": robust if ok else float("-inf")}

    result = train_recommender(model, split, cfg.train, eval_cfg, lm_tower=lm_tower, progress=progress,
                               warm_start=True, text_lr=cfg.train.text_lr, lm_lr=cfg.train.lm_lr,
                               batch_loss=AdversarialLoss(cfg, user_weights,
                                                          torch.as_tensor(split.train, dtype=torch.long), split.n_users),
                               valid_score=valid_score, checkpoint_dir=checkpoint_dir)
    result.model.meta.update({"adversarial": cfg.model_dump(mode="json"), "pretrained_valid_ndcg@10": clean0})
    return result
