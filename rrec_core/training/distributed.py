"""Data-parallel BPR training with torch DistributedDataParallel (gloo on CPU, nccl on GPU).

`train_distributed(split, cfg, world_size)` trains the same model `train_recommender` would, in
`world_size` processes: the same optimizer (Adam, the loop's parameter groups, `cfg.lr`, a hybrid's
`text_lr`, Adam's `weight_decay`), the same global batches, the same negatives, the same early stopping
on validation NDCG@10. world_size=1 runs the very same per-rank code in the calling process, without a
process group: the reference the distributed run is tested against (tests/test_distributed.py).

Placement: the embedding tables are replicated, not sharded. Every rank holds the whole model and its
Adam state; DDP all-reduces the dense gradients after each backward pass.
- Why: at MovieLens scale the tables are small. ML-100K is (943 + 1682) x 64 fp32 = 0.7 MB, ML-1M
  2.5 MB, ML-10M (70K users + 10K items) 20 MB, and with Adam's two moments three times that. That fits
  in one process's memory, or one GPU's, with orders of magnitude to spare. Sharding the rows over ranks
  (torchrec's row- or table-wise sharding, model parallelism of the tables) pays off when the tables
  outgrow one device. It costs an all-to-all of the batch's looked-up rows forward and of their gradients
  backward, a sharded optimizer, and a checkpoint format in which no rank holds the model. None of that
  buys anything while a replica fits.
- What replication costs: a dense gradient is as large as the table (zero outside the batch's rows),
  so each step all-reduces O(table) bytes, not O(batch x d). With batch 2048 and d = 64 a step touches
  at most 3 x 2048 rows (users, positives, negatives), about 1.5 MB. The all-reduce moves the whole table
  gradient: 0.7 MB for ML-100K, 2.5 MB for ML-1M, 20 MB for ML-10M. Above roughly 6K rows the
  communication is mostly zeros. `bench/ddp_scaling.py` measures it.
- `nn.Embedding(sparse=True)` would send only the touched rows. DDP's sparse-gradient support was built
  on gloo's sparse all-reduce (pytorch#22037); the NCCL process group's is a late prototype (pytorch#103916,
  pytorch#22400 still open). The bench's figures show what it saves per step. But `torch.optim.Adam` rejects
  sparse gradients, and `SparseAdam` is a different optimizer. It updates a row's moments only when the
  row is in the batch (lazy Adam) and has no weight decay, where the single-process loop's dense Adam
  keeps moving every row on its momentum. Sparse gradients would therefore change the trained model, not
  only the speed, and break the equivalence this module guarantees. That is a separate decision (a
  changed optimizer, re-measured against RecBole's numbers), not a change of placement.

Batching: each epoch draws one permutation of the training pairs from a generator seeded with cfg.seed,
identical on every rank. It is cut into global batches of cfg.batch_size. Rank r takes the contiguous
rows [r*n//W, (r+1)*n//W) of each global batch of n rows, so the ranks' shards are disjoint and together
make the global batch. Only the last batch can be short, and there a shard may even be empty.

Negatives: every rank runs the loop's NegativeSampler over the whole global batch, with that same
generator, and keeps its shard's slice. The union over ranks is exactly what a single process draws,
rejection re-draws included, and the generator stays in step on all ranks. The cost is sampling
cfg.batch_size negatives per rank per step (a searchsorted over the batch), small next to the step.
The global RNG that dropout uses is seeded cfg.seed + rank, so the ranks drop independently.

Loss scaling: the single-process loss is the mean over the global batch, (1/n) sum_i l_i. DDP averages
gradients over ranks, so rank r back-propagates (W/n) sum_{i in shard r} l_i. Averaged over the W ranks
that is (1/n) sum_i l_i, the same gradient, even when the shards are unequal or empty. A per-shard mean
would give a short last batch's rows unequal weights. Note that Adam is nearly invariant to a constant
factor on the gradient (only eps and weight decay see it), so a test of this scaling needs weight decay,
or a direct check of the gradients (`scaled_shard_loss`). The reported epoch loss is the all-reduced sum
of l_i over the number of pairs, as the loop reports it.

Exactness: MF-BPR matches the single-process run up to float summation order (atol 1e-5 after several
epochs in the tests). A text hybrid with frozen item text vectors (no tuned LM layers) trains the same
way. With text_dropout or id_dropout > 0 its dropout masks are drawn per rank, so the run is equal in
distribution, not bitwise. Buffers are synced once, when DDP is built, not before every step
(`forward_sync_buffers=False`): the text vectors are constant in training, and the cold-start map is
refitted on rank 0 before each validation, which is the only rank that validates. Not supported here: tuned LM layers (`lm_finetune_layers > 0`),
an injected batch loss (adversarial fine-tuning), and resumable checkpoints.

Entry points:
  train_distributed(split, cfg, world_size=2)  spawns the processes (torch.multiprocessing.spawn)
  torchrun --nproc-per-node 2 -m rrec_core.training.distributed --split DIR --out DIR [--model mf_bpr]
      [--params params.yaml] [--set pretrain.mf_bpr.epochs=5] [--init SAVED_MODEL] [--backend gloo]
The processes exchange the model only through save_recommender / load_recommender (safetensors + JSON).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import socket
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from rrec_core.config import EvalConfig, HybridConfig, MFConfig
from rrec_core.data.split import Split
from rrec_core.models import Recommender, TextHybrid, load_recommender, save_recommender
from rrec_core.training.loop import TrainResult, build_model
from rrec_core.training.sampling import NegativeSampler

log = logging.getLogger(__name__)

BACKENDS = ("gloo", "nccl")


def distributed_available(backend: str = "gloo") -> bool:
    """Whether this torch build can run `backend` (nccl needs CUDA as well)."""
    if not dist.is_available():
        return False
    if backend == "gloo":
        return dist.is_gloo_available()
    if backend == "nccl":
        return dist.is_nccl_available() and torch.cuda.is_available()
    return False


def free_port() -> int:
    """A TCP port free right now on 127.0.0.1. The OS picks it (bind to port 0). Another process could
    take it before rank 0 binds it, a small window."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def shard_bounds(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows [lo, hi) of a global batch of n rows that `rank` trains on. The shards are disjoint and
    contiguous and cover the batch; their sizes differ by at most one."""
    return rank * n // world_size, (rank + 1) * n // world_size


def scaled_shard_loss(pair_losses: torch.Tensor, world_size: int, global_batch: int) -> torch.Tensor:
    """The loss one rank back-propagates: (W / n) * the sum of its shard's per-pair losses. DDP averages
    the ranks' gradients, which gives the gradient of the mean over the whole global batch of n pairs."""
    return pair_losses.sum() * (world_size / global_batch)


class BPRStep(nn.Module):
    """The model's BPR loss per pair, as a module's forward (what DDP wraps). Recommender.bpr_loss is the
    mean of these: -log sigmoid(<u, i+> - <u, i->)."""

    def __init__(self, model: Recommender) -> None:
        super().__init__()
        self.model = model

    def forward(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        u = self.model.user_vectors(users)
        margin = (u * self.model.item_vectors(pos)).sum(-1) - (u * self.model.item_vectors(neg)).sum(-1)
        return -torch.nn.functional.logsigmoid(margin)  # [len(users)]


def _optimizer(model: Recommender, cfg: MFConfig, text_lr: float | None) -> torch.optim.Optimizer:
    """The training loop's optimizer: Adam, the ID parameters at cfg.lr, a hybrid's text projection at
    text_lr, Adam's weight decay on all of them."""
    text = [p for n, p in model.named_parameters() if n.startswith(("text_proj.", "text_norm."))]
    ids = [p for n, p in model.named_parameters() if not n.startswith(("text_proj.", "text_norm."))]
    groups: list[dict[str, Any]] = [{"params": ids, "lr": cfg.lr}]
    if text:
        groups.append({"params": text, "lr": text_lr if text_lr is not None else cfg.lr})
    return torch.optim.Adam(groups, weight_decay=cfg.weight_decay)


def _valid_score(model: Recommender, split: Split, eval_cfg: EvalConfig, device: torch.device) -> dict:
    """The loop's default model selection: validation NDCG@10, the cold-start map refitted first."""
    from rrec_core.evaluation.ranking import evaluate_model

    if isinstance(model, TextHybrid) and model.has_cold_items():
        model.fit_cold_map()
    v = evaluate_model(model, split, "valid", eval_cfg, device)
    return {**v, "score": v["ndcg@10"]}


def train_rank(model: Recommender, split: Split, cfg: MFConfig, rank: int = 0, world_size: int = 1,
               device: torch.device | str = "cpu", eval_cfg: EvalConfig | None = None,
               text_lr: float | None = None, warm_start: bool = False, progress: bool = False) -> TrainResult:
    """One rank's training, in a process group of `world_size` when it is above 1 (DDP), or alone.

    Every rank returns a TrainResult. Only rank 0 validates, so the selection (best epoch, best state,
    early stop) is rank 0's, broadcast to the others each epoch. eval_cfg None: no validation, train
    cfg.epochs epochs and keep the last state. The model's parameters end as those of the selected
    epoch on every rank."""
    if isinstance(model, TextHybrid) and model.text_override is not None:
        raise NotImplementedError("distributed training of tuned LM layers")
    distributed = world_size > 1
    device = torch.device(device)
    gen = torch.Generator().manual_seed(cfg.seed)  # permutation + negatives: identical on every rank
    torch.manual_seed(cfg.seed + rank)  # dropout: independent per rank (rank 0 = the single-process run)
    np.random.seed(cfg.seed + rank)
    model.to(device)
    opt = _optimizer(model, cfg, text_lr)
    mask = getattr(model, "item_id_mask", None)
    candidates = torch.nonzero(mask.cpu() > 0).flatten() if mask is not None and bool((mask == 0).any()) else None
    sampler = NegativeSampler(split.train, split.n_items, gen, candidates)
    train = torch.as_tensor(np.array(split.train, dtype=np.int64))
    step: nn.Module = BPRStep(model)
    if distributed:
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        # buffers (text vectors, item mask, cold map) are constant in training: synced once when DDP is
        # built, not before every forward (torch >= 2.13 names the switch forward_sync_buffers)
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in
                   inspect.signature(DistributedDataParallel).parameters else {"broadcast_buffers": False})
        step = DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None,
                                       **no_sync)
    lead = rank == 0
    validate = lead and eval_cfg is not None
    result = TrainResult(model)
    best_score, best_state, since_best = -1.0, None, 0
    start = time.perf_counter()
    if warm_start and eval_cfg is not None:
        if validate:  # the starting point competes: epoch 0 may be selected
            valid = _valid_score(model, split, eval_cfg, device)
            best_score, result.best_epoch, result.best_valid = valid["score"], 0, valid
            best_state = copy.deepcopy(model.state_dict())
            result.history.append({"epoch": 0, "loss": float("nan"), "train_seconds": 0.0,
                                   **{f"valid_{k}": v for k, v in valid.items()}})
    for epoch in range(1, cfg.epochs + 1):
        t0 = time.perf_counter()
        step.train()
        perm = torch.randperm(len(train), generator=gen)
        loss_sum, pairs = 0.0, 0  # this rank's sum of pair losses and its number of pairs
        for b in range(0, len(perm), cfg.batch_size):
            batch = train[perm[b:b + cfg.batch_size]]
            users, pos = batch[:, 0], batch[:, 1]
            neg = sampler.sample(users)  # the whole global batch's negatives, then this rank's slice
            lo, hi = shard_bounds(len(batch), rank, world_size)
            pair = step(users[lo:hi].to(device), pos[lo:hi].to(device), neg[lo:hi].to(device))
            loss = scaled_shard_loss(pair, world_size, len(batch))
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP: the gradients are averaged over the ranks here
            opt.step()
            loss_sum, pairs = loss_sum + float(pair.detach().sum()), pairs + hi - lo
        total = torch.tensor([loss_sum, pairs], dtype=torch.float64, device=device)  # nccl: on the GPU
        if distributed:
            dist.all_reduce(total)
        row: dict[str, Any] = {"epoch": epoch, "loss": float(total[0] / total[1].clamp(min=1)),
                               "train_seconds": time.perf_counter() - t0}
        stop = torch.zeros(1, device=device)
        if eval_cfg is not None and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            if validate:
                valid = _valid_score(model, split, eval_cfg, device)
                row.update({f"valid_{k}": v for k, v in valid.items()})
                if valid["score"] > best_score:
                    best_score, since_best, result.best_epoch, result.best_valid = valid["score"], 0, epoch, valid
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    since_best += cfg.eval_every
                stop[0] = float(since_best >= cfg.patience)
        if distributed:
            dist.broadcast(stop, src=0)
        result.history.append(row)
        if progress and lead:
            log.info("epoch %d: loss %.4f (%.2fs)%s", epoch, row["loss"], row["train_seconds"],
                     f", valid ndcg@10 {row['valid_ndcg@10']:.4f}" if "valid_ndcg@10" in row else "")
        if bool(stop[0]):
            break
    if eval_cfg is None:
        result.best_epoch = len(result.history)
    elif lead and best_state is not None:
        model.load_state_dict(best_state)
    if distributed and eval_cfg is not None:
        for p in model.parameters():  # the other ranks end on rank 0's selected state
            dist.broadcast(p.data, src=0)
    model.eval()
    result.seconds = time.perf_counter() - start
    model.meta.update({"best_epoch": result.best_epoch, "epochs_run": len(result.history),
                       "train_seconds": result.seconds, "config": cfg.model_dump(mode="json"),
                       "world_size": world_size, "backend": dist.get_backend() if distributed else None})
    return result


def _device_for(backend: str, local_rank: int) -> torch.device:
    return torch.device("cuda", local_rank) if backend == "nccl" else torch.device("cpu")


def _finish(result: TrainResult, out: Path) -> None:
    """Rank 0 writes the trained model (safetensors + JSON) and the run's history."""
    from rrec_core.io import write_json

    save_recommender(result.model, out / "model")
    write_json(out / "history.json", {"history": result.history, "best_epoch": result.best_epoch,
                                      "best_valid": result.best_valid, "seconds": result.seconds})


def _spawned_rank(rank: int, world_size: int, backend: str, port: int, split: Split, cfg: MFConfig,
                  eval_cfg: EvalConfig | None, text_lr: float | None, warm_start: bool, out: str,
                  threads: int, timeout_s: float) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    try:
        if backend == "nccl":
            torch.cuda.set_device(rank)
        model = load_recommender(Path(out) / "init")  # every rank starts from the same saved weights
        result = train_rank(model, split, cfg, rank, world_size, _device_for(backend, rank), eval_cfg, text_lr,
                            warm_start)
        if rank == 0:
            _finish(result, Path(out))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def train_distributed(split: Split, cfg: MFConfig, world_size: int = 2, backend: str = "gloo",
                      kind: str = "mf_bpr", text_features: torch.Tensor | None = None,
                      model: Recommender | None = None, eval_cfg: EvalConfig | None = None,
                      text_lr: float | None = None, warm_start: bool = False, out_dir: str | Path | None = None,
                      threads_per_rank: int | None = None, timeout_s: float = 1800.0) -> TrainResult:
    """Train `model`, or build_model(kind, split, cfg, text_features), data-parallel in `world_size`
    processes; return rank 0's trained model (on CPU) with the per-epoch history.

    world_size=1 trains in this process with the same per-rank code and no process group (the
    reference). backend: gloo (CPU) or nccl (rank r on cuda:r). eval_cfg: validate on rank 0 and stop
    early as train_recommender does; None trains cfg.epochs epochs. text_lr: a hybrid's text projection
    rate (default cfg.text_lr for a HybridConfig). out_dir: keep the saved model (out_dir/model, by
    save_recommender) and out_dir/history.json; default a temporary directory. threads_per_rank: torch
    threads per process (default cores // world_size)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    if model is None:
        model = build_model(kind, split, cfg, text_features)
    if isinstance(model, TextHybrid) and model.text_override is not None:
        raise NotImplementedError("distributed training of tuned LM layers (the saved model would lose them)")
    if text_lr is None and isinstance(cfg, HybridConfig) and isinstance(model, TextHybrid):
        text_lr = cfg.text_lr
    if world_size == 1:
        device = _device_for(backend, 0) if backend == "nccl" else torch.device("cpu")
        result = train_rank(model, split, cfg, 0, 1, device, eval_cfg, text_lr, warm_start)
        result.model.cpu()
        if out_dir is not None:
            _finish(result, Path(out_dir))
        return result
    if not distributed_available(backend):
        raise RuntimeError(f"torch.distributed backend {backend!r} is not available here")
    if backend == "nccl" and torch.cuda.device_count() < world_size:
        raise RuntimeError(f"nccl with {world_size} processes needs {world_size} GPUs, found {torch.cuda.device_count()}")
    import torch.multiprocessing as mp

    threads = threads_per_rank or max(1, (os.cpu_count() or 1) // world_size)
    with tempfile.TemporaryDirectory(prefix="rrec-ddp-") as tmp:
        out = Path(out_dir) if out_dir is not None else Path(tmp)
        save_recommender(model, out / "init")
        start = time.perf_counter()
        mp.spawn(_spawned_rank, args=(world_size, backend, free_port(), split, cfg, eval_cfg, text_lr, warm_start,
                                      str(out), threads, timeout_s), nprocs=world_size, join=True)
        seconds = time.perf_counter() - start
        trained = load_recommender(out / "model")
        with open(out / "history.json") as f:
            saved = json.load(f)
    trained.meta["wall_seconds"] = seconds  # spawn, start-up and training of all ranks
    return TrainResult(trained, saved["history"], saved["best_epoch"], saved["best_valid"], saved["seconds"])


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: every process trains its rank; rank 0 writes the model to --out."""
    from rrec_core.config import EvalConfig, load_params, resolve_config

    ap = argparse.ArgumentParser(prog="python -m rrec_core.training.distributed", description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--split", required=True, help="a saved Split directory (split.parquet + ids.json)")
    ap.add_argument("--out", required=True, help="where rank 0 writes model/ and history.json")
    ap.add_argument("--model", choices=("mf_bpr", "text_hybrid"), default="mf_bpr",
                    help="which pretrain section configures the run")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. pretrain.mf_bpr.epochs=5")
    ap.add_argument("--init", help="a saved recommender to start from (default: a fresh mf_bpr)")
    ap.add_argument("--backend", choices=BACKENDS, default="gloo")
    ap.add_argument("--no-eval", action="store_true", help="no validation, no early stopping")
    args = ap.parse_args(argv)
    import yaml

    overrides = {k: yaml.safe_load(v) for k, _, v in (s.partition("=") for s in args.set)}
    pcfg = resolve_config(load_params(args.params), overrides)
    cfg: MFConfig = pcfg.pretrain.mf_bpr if args.model == "mf_bpr" else pcfg.pretrain.text_hybrid
    split = Split.load(args.split)
    rank, world_size = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if args.init:
        model = load_recommender(args.init)
    elif args.model == "mf_bpr":
        model = build_model("mf_bpr", split, cfg)
    else:
        raise SystemExit("--model text_hybrid needs --init (a saved hybrid holding its text vectors)")
    text_lr = cfg.text_lr if isinstance(cfg, HybridConfig) else None
    eval_cfg = None if args.no_eval else EvalConfig(ks=(10,))
    if world_size > 1:
        dist.init_process_group(args.backend)  # env://, as torchrun sets it
        if args.backend == "nccl":
            torch.cuda.set_device(local_rank)
    try:
        result = train_rank(model, split, cfg, rank, world_size, _device_for(args.backend, local_rank), eval_cfg,
                            text_lr, warm_start=args.init is not None and eval_cfg is not None, progress=True)
        if rank == 0:
            result.model.cpu()
            _finish(result, Path(args.out))
        if world_size > 1:
            dist.barrier()
    finally:
        if world_size > 1:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s rank " + os.environ.get("RANK", "0") + " %(message)s")
    raise SystemExit(main())
