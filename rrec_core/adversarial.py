"""Adversarial fine-tuning: APR and PGD adversarial training on embeddings, text-side FGM.

Objective per batch: alpha * L_clean + (1 - alpha) * L_adv, where L_adv is the BPR loss with the
batch's user and item representations perturbed inside the eps-ball (rrec_core.attacks). For the
text-aware hybrid the item representation already contains the LM projection output, so the
perturbation covers it; when LM layers are fine-tuned, an extra FGM perturbation of the LM's token
states (the input of the tuned layers) is applied in the adversarial pass.
"""
from __future__ import annotations

import copy

import torch

from rrec_core import ops
from rrec_core.attacks import Attack, bpr_loss, perturbations
from rrec_core.config import AdversarialConfig, EvalConfig
from rrec_core.data.split import Split
from rrec_core.metrics import evaluate_full_ranking
from rrec_core.models import Recommender, TextHybrid
from rrec_core.train import LMTower, TrainResult, evaluate_model, train_recommender


def training_attack(cfg: AdversarialConfig) -> Attack:
    steps = 1 if cfg.method == "apr" else cfg.steps
    return Attack(eps=cfg.eps, steps=steps, norm="l2" if cfg.method == "apr" else cfg.norm, scale=cfg.scale,
                  step_size=cfg.step_size, delta_penalty=cfg.delta_penalty)


class AdversarialLoss:
    """batch_loss for train_recommender: alpha * clean BPR + (1 - alpha) * BPR under attack.

    `user_weights` [n_users] (optional) weight each pair by its user in both terms: the GAN-trained
    suspicion weights (rrec_core.poisoning.detector) make the model not follow users who look like
    generated profiles. The attack itself still maximizes the unweighted loss."""

    def __init__(self, cfg: AdversarialConfig, user_weights: torch.Tensor | None = None) -> None:
        self.cfg = cfg
        self.attack = training_attack(cfg)
        self.user_weights = user_weights

    def __call__(self, model: Recommender, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        uu, u_idx = torch.unique(users, return_inverse=True)
        ii, inv = torch.unique(torch.cat([pos, neg]), return_inverse=True)
        p_idx, n_idx = inv[: len(pos)], inv[len(pos):]
        tower = getattr(model, "text_override", None)
        text_attack = isinstance(tower, LMTower) and self.cfg.text_eps > 0
        tokens = tower.token_states(ii).detach().requires_grad_() if text_attack else None

        U = model.user_vectors(uu)
        V = _item_vectors(model, ii, tokens)
        w = None
        if self.user_weights is not None:
            self.user_weights = self.user_weights.to(users.device)
            w = self.user_weights[users]
        clean = bpr_loss(U[u_idx], V[p_idx], V[n_idx], w)
        if self.cfg.alpha >= 1.0:
            return clean
        dU, dV = perturbations(U, V, u_idx, p_idx, n_idx, self.attack)
        if text_attack:
            # FGM on token states: per-token L2 step of radius text_eps along the clean loss gradient
            (g,) = torch.autograd.grad(clean, tokens, retain_graph=True)
            flat = g.reshape(-1, g.shape[-1])
            adv_tokens = tokens.detach() + ops.fgsm(flat, self.cfg.text_eps, "l2").reshape_as(g)
            V_adv = _item_vectors(model, ii, adv_tokens) + dV
        else:
            V_adv = V + dV
        U_adv = U + dU
        adv = bpr_loss(U_adv[u_idx], V_adv[p_idx], V_adv[n_idx], w)
        return self.cfg.alpha * clean + (1 - self.cfg.alpha) * adv


def _item_vectors(model: Recommender, items: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
    if tokens is not None and isinstance(model, TextHybrid):
        ids = model.item_embedding(items)
        return ids + model.text_vectors(items, token_states=tokens)
    return model.item_vectors(items)


def attacked_metrics(model: Recommender, split: Split, attack: Attack, part: str, eval_cfg: EvalConfig,
                     negatives: int = 1, seed: int = 0, device: str | torch.device | None = None) -> dict[str, float]:
    """Full-ranking metrics on `part` after a white-box attack maximizing the BPR loss of its held-out pairs.
    Runs on `device`, by default the model's own."""
    from rrec_core.attacks import sample_attack_pairs

    model.eval()
    device = device if device is not None else next(model.parameters()).device
    target = split.valid if part == "valid" else split.test
    exclude = [split.train] if part == "valid" else [split.train, split.valid]
    import numpy as np

    known = np.concatenate([split.train, split.valid, split.test])
    pairs = sample_attack_pairs(target, split.n_items, known, negatives, seed).to(device)
    with torch.no_grad():
        U = model.user_vectors(torch.arange(split.n_users, device=device))
        V = model.item_vectors()
    with torch.enable_grad():
        dU, dV = perturbations(U, V, pairs[:, 0], pairs[:, 1], pairs[:, 2], attack)
    Ua, Va = U + dU, V + dV
    return evaluate_full_ranking(lambda u: Ua[u] @ Va.T, split.n_users, split.n_items, target, exclude,
                                 eval_cfg.ks, eval_cfg.batch_users, device)


def adversarial_finetune(pretrained: Recommender, split: Split, cfg: AdversarialConfig, eval_cfg: EvalConfig,
                         lm_tower: LMTower | None = None, progress: bool = True,
                         user_weights: torch.Tensor | None = None) -> TrainResult:
    """Fine-tune a copy of `pretrained` adversarially; select the epoch that is most robust on validation
    (NDCG@10 under PGD at the training radius) among those that keep `min_clean_ratio` of its clean NDCG@10."""
    model = copy.deepcopy(pretrained)
    model.meta = {}
    sel_attack = Attack(eps=cfg.eps, steps=cfg.select_attack_steps, norm=training_attack(cfg).norm, scale=cfg.scale)
    ev10 = EvalConfig(ks=(10,), batch_users=eval_cfg.batch_users)
    clean0 = evaluate_model(pretrained, split, "valid", ev10)["ndcg@10"]

    def valid_score(m: Recommender) -> dict:
        clean = evaluate_model(m, split, "valid", ev10)["ndcg@10"]
        robust = attacked_metrics(m, split, sel_attack, "valid", ev10, seed=cfg.train.seed)["ndcg@10"]
        ok = clean >= cfg.min_clean_ratio * clean0
        return {"ndcg@10": clean, "ndcg@10_attacked": robust, "score": robust if ok else float("-inf")}

    result = train_recommender(model, split, cfg.train, eval_cfg, lm_tower=lm_tower, progress=progress,
                               warm_start=True, batch_loss=AdversarialLoss(cfg, user_weights), valid_score=valid_score)
    result.model.meta.update({"adversarial": cfg.model_dump(mode="json"), "pretrained_valid_ndcg@10": clean0})
    return result
