"""The one training loop: BPR with uniform negatives (or an injected batch loss), early stopping on a
validation score, the best-validation checkpoint returned. Adversarial fine-tuning plugs its loss and
model selection in here (rrec_core.training.adversarial) instead of subclassing a trainer.
"""
from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from rrec_core.config import EvalConfig, HybridConfig, LoopConfig, MFConfig
from rrec_core.data.split import Split
from rrec_core.evaluation.ranking import evaluate_model
from rrec_core.lm.encoder import resolve_device
from rrec_core.models import MFBPR, Recommender, TextHybrid
from rrec_core.training.sampling import NegativeSampler

if TYPE_CHECKING:
    from rrec_core.lm.tower import LaggedTower, LMTower

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: Recommender
    history: list[dict] = field(default_factory=list)  # one row per epoch: loss, valid metrics, seconds
    best_epoch: int = 0
    best_valid: dict = field(default_factory=dict)
    seconds: float = 0.0


def _state_bytes(model: Recommender, lm_tower) -> str:
    """A digest of the starting weights (a warm start from other weights is another run)."""
    import hashlib

    h = hashlib.sha256()
    for module in (model, lm_tower):
        if module is not None:
            for k, v in sorted(module.state_dict().items()):
                h.update(k.encode())
                h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    np.random.seed(seed)
    return torch.Generator().manual_seed(seed)


def build_model(kind: str, split: Split, cfg: MFConfig | HybridConfig, text_features: torch.Tensor | None = None) -> Recommender:
    torch.manual_seed(cfg.seed)  # initialization is part of the run: same seed, same model
    if kind == "mf_bpr":
        model: Recommender = MFBPR(split.n_users, split.n_items, cfg.embedding_dim)
    elif kind == "text_hybrid":
        if text_features is None:
            raise ValueError("text_hybrid needs item text features")
        if not isinstance(cfg, HybridConfig):
            raise TypeError("text_hybrid is built from a HybridConfig")
        model = TextHybrid(split.n_users, split.n_items, text_features.shape[1], cfg.embedding_dim, cfg.text_dropout,
                           cfg.id_dropout, cfg.cold_map_reg)
        model.set_text_features(text_features)
        if cfg.cold_start:
            model.set_item_id_mask(torch.as_tensor(np.unique(split.train[:, 1])))
    else:
        raise ValueError(f"unknown model kind {kind!r}")
    model.user_ids, model.item_ids = list(split.user_ids), list(split.item_ids)
    return model


def warm_start_from(model: Recommender, source: Recommender) -> Recommender:
    """Copy the ID embedding tables of a trained model (same users and items) into `model`."""
    if source.user_ids != model.user_ids or source.item_ids != model.item_ids:
        raise ValueError("warm start needs the same user and item id maps")
    with torch.no_grad():
        model.user_embedding.weight.copy_(source.user_embedding.weight)
        model.item_embedding.weight.copy_(source.item_embedding.weight)
    return model


def train_recommender(
    model: Recommender,
    split: Split,
    cfg: LoopConfig,
    eval_cfg: EvalConfig,
    lm_tower: "LMTower | None" = None,
    progress: bool = True,
    warm_start: bool = False,
    batch_loss: Callable | None = None,
    valid_score: Callable | None = None,
    text_lr: float | None = None,
    lm_lr: float | None = None,
    lm_update_every: int = 0,
    checkpoint_dir: Path | None = None,
) -> TrainResult:
    """Train; keep the state with the best validation score; stop after `patience` epochs without it.

    batch_loss(model, users, pos, neg) -> loss replaces plain BPR (adversarial training plugs in here).
    valid_score(model) -> dict of validation numbers with a "score" key (higher is better), default the
    clean validation NDCG@10; a score of -inf marks an epoch that may not be selected.
    text_lr / lm_lr: learning rates of a hybrid's text projection and tuned LM layers (default: cfg.lr).
    lm_update_every: 0 runs the tuned layers end to end every step; N > 0 moves them once per N steps from
    summed feature gradients (rrec_core.lm.tower.LaggedTower).
    checkpoint_dir: save the whole loop state there after every epoch and resume from it when it holds a
    checkpoint of this very run (rrec_core.training.checkpoint); removed when training ends. Not with
    lm_update_every > 0 (the lagged tower's pending gradients are not part of the state).
    """
    from tqdm.auto import tqdm

    batch_loss = batch_loss or (lambda m, u, p, n: m.bpr_loss(u, p, n))
    if valid_score is None:
        def valid_score(m):
            v = evaluate_model(m, split, "valid", eval_cfg, device)
            return {**v, "score": v["ndcg@10"]}
    cold_items = isinstance(model, TextHybrid) and model.has_cold_items()
    if cold_items:
        # a cold item is validated, saved and served with the ID row its text generates from the current model
        user_valid_score = valid_score

        def valid_score(m):
            m.fit_cold_map()
            return user_valid_score(m)

    gen = seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    model.to(device)
    # the text projection gets its own rate: at the ID tables' rate it outgrows them within an epoch
    # and the hybrid degrades to a content-based model (NDCG@10 0.228-0.231 vs 0.287-0.288 on ML-100K,
    # bench/results/hybrid_ablation_2026-12-02.md)
    text_params = [p for n, p in model.named_parameters() if n.startswith(("text_proj.", "text_norm."))]
    id_params = [p for n, p in model.named_parameters() if not n.startswith(("text_proj.", "text_norm."))]
    params = [{"params": id_params, "lr": cfg.lr}]
    if text_params:
        params.append({"params": text_params, "lr": text_lr if text_lr is not None else cfg.lr})
    lagged: LaggedTower | None = None
    if lm_tower is not None:
        lm_tower.to(device)
        if lm_update_every > 0:
            from rrec_core.lm.tower import LaggedTower

            if not isinstance(model, TextHybrid):
                raise TypeError("tuned LM layers belong to a text_hybrid")
            lagged = LaggedTower(lm_tower, lm_update_every, lm_lr if lm_lr is not None else cfg.lr, cfg.weight_decay)
            model.set_text_source(lagged)
        else:
            model.text_override = lm_tower
            params.append({"params": lm_tower.trainable_parameters(), "lr": lm_lr if lm_lr is not None else cfg.lr})
    opt = torch.optim.Adam(params, weight_decay=cfg.weight_decay)
    # items a hybrid scores by text alone (cold start) are never negatives: see NegativeSampler
    mask = getattr(model, "item_id_mask", None)
    candidates = torch.nonzero(mask.cpu() > 0).flatten() if mask is not None and bool((mask == 0).any()) else None
    sampler = NegativeSampler(split.train, split.n_items, gen, candidates)
    train = torch.as_tensor(np.array(split.train, dtype=np.int64))
    result = TrainResult(model)
    best_score, best_state, since_best = -1.0, None, 0
    best_lm = None
    start = time.perf_counter()
    fp, first_epoch, saved = None, 1, None
    if checkpoint_dir is not None and lagged is None:
        from rrec_core.training.checkpoint import fingerprint, load_checkpoint, restore

        fp = fingerprint(config=cfg.model_dump(mode="json"), kind=model.model_type, train=train.numpy(),
                         loss=repr(getattr(batch_loss, "cfg", None)), text_lr=text_lr, lm_lr=lm_lr,
                         warm_start=warm_start, start=_state_bytes(model, lm_tower))
        saved = load_checkpoint(Path(checkpoint_dir), fp)
    if saved is not None:
        best_state, best_lm = restore(saved, model, opt, gen, lm_tower)
        best_score, since_best = saved["best_score"], saved["since_best"]
        result.best_epoch, result.best_valid, result.history = saved["best_epoch"], saved["best_valid"], saved["history"]
        first_epoch = saved["epoch"] + 1
        log.info("resumed %s from the checkpoint of epoch %d in %s", model.model_type, saved["epoch"], checkpoint_dir)
    elif warm_start:
        # a warm-started model competes with its starting point: epoch 0 is a valid checkpoint
        valid = valid_score(model)
        best_score, result.best_epoch, result.best_valid = valid["score"], 0, valid
        best_state = copy.deepcopy(model.state_dict())
        best_lm = copy.deepcopy(lm_tower.state_dict()) if lm_tower is not None else None
        result.history.append({"epoch": 0, "loss": float("nan"), "train_seconds": 0.0,
                               **{f"valid_{k}": v for k, v in valid.items()}})
    epochs = range(first_epoch, cfg.epochs + 1) if since_best < cfg.patience else range(0)
    bar = tqdm(epochs, desc=f"train {model.model_type}", disable=not progress, unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(len(train), generator=gen)
        total, n = 0.0, 0
        for b in range(0, len(perm), cfg.batch_size):
            batch = train[perm[b:b + cfg.batch_size]]
            users, pos = batch[:, 0], batch[:, 1]
            neg = sampler.sample(users)
            loss = batch_loss(model, users.to(device), pos.to(device), neg.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if lagged is not None:
                lagged.step()
            total += loss.item() * len(batch)
            n += len(batch)
        row = {"epoch": epoch, "loss": total / max(n, 1), "train_seconds": time.perf_counter() - t0}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            valid = valid_score(model)
            row.update({f"valid_{k}": v for k, v in valid.items()})
            score = valid["score"]
            if score > best_score:
                best_score, since_best, result.best_epoch, result.best_valid = score, 0, epoch, valid
                best_state = copy.deepcopy(model.state_dict())
                if lm_tower is not None:
                    best_lm = copy.deepcopy(lm_tower.state_dict())
            else:
                since_best += cfg.eval_every
            bar.set_postfix(loss=f"{row['loss']:.4f}", score=f"{score:.4f}", best=result.best_epoch)
        result.history.append(row)
        if fp is not None:
            from rrec_core.training.checkpoint import save_checkpoint

            save_checkpoint(Path(checkpoint_dir), fp, epoch=epoch, model=model, opt=opt, gen=gen,  # type: ignore[arg-type]
                            best_state=best_state, best_score=best_score, since_best=since_best,
                            best_epoch=result.best_epoch, best_valid=result.best_valid, history=result.history,
                            lm=lm_tower, best_lm=best_lm)
        if since_best >= cfg.patience:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
        if lm_tower is not None:
            lm_tower.load_state_dict(best_lm)
    if lm_tower is not None:
        # freeze what the tuned LM says about each item into the buffer, so the saved model scores alone
        lm_tower.eval()
        with torch.no_grad():
            model.set_text_features(lm_tower(None).detach())
        model.text_override = None
    model.eval()
    if fp is not None:  # the run is over: a later run with the same settings trains afresh (code may have changed)
        import shutil

        shutil.rmtree(Path(checkpoint_dir), ignore_errors=True)  # type: ignore[arg-type]
    result.seconds = time.perf_counter() - start
    model.meta.update({"best_epoch": result.best_epoch, "epochs_run": len(result.history),
                       "train_seconds": result.seconds, "config": cfg.model_dump(mode="json")})
    return result
