"""Data-parallel training (rrec_core.training.distributed): 2 gloo processes train the model 1 process
trains on the same global batches, and the 1-process path is the training loop's own run.

Tolerance: atol 1e-5 on the embedding tables and rel 1e-5 on the epoch losses. The ranks' all-reduce
adds the shard gradients in another order than one process sums the batch, so the tables differ in
the last bits (about 1e-8 after 4 epochs here). The tests use weight decay because Adam is nearly
blind to a constant factor on the gradient, and a wrong loss scaling is such a factor; the decay term
is not scaled with it and exposes it. test_scaled_shard_loss_gives_the_global_mean_gradient checks the
scaling on the gradients themselves.
"""
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT

from rrec_core.config import EvalConfig, HybridConfig, MFConfig
from rrec_core.data.split import Split
from rrec_core.models import MFBPR, load_recommender
from rrec_core.training.distributed import (
    BPRStep,
    distributed_available,
    scaled_shard_loss,
    shard_bounds,
    train_distributed,
)
from rrec_core.training.loop import build_model, train_recommender

needs_gloo = pytest.mark.skipif(not distributed_available("gloo"), reason="torch.distributed with gloo unavailable")
TABLES = ("user_embedding.weight", "item_embedding.weight")


def _split(n_users=30, n_items=25, per_user=7, n_train=97, cold_item: int | None = None, seed=0) -> Split:
    """97 training pairs: with batch 16 the last global batch holds 1 pair, so one of 2 ranks gets an
    empty shard. cold_item: that item keeps no training pair (the cold-start path)."""
    rng = np.random.default_rng(seed)
    pairs = np.asarray([(u, i) for u in range(n_users) for i in rng.choice(n_items, per_user, replace=False)])
    train, rest = pairs[:n_train], pairs[n_train:]
    if cold_item is not None:
        rest = np.concatenate([rest, train[train[:, 1] == cold_item]])
        train = train[train[:, 1] != cold_item]
    return Split([str(u) for u in range(n_users)], [f"movie {i}" for i in range(n_items)], train, rest[::2], rest[1::2])


def _cfg(**kw) -> MFConfig:
    return MFConfig(**{"embedding_dim": 8, "lr": 0.05, "weight_decay": 0.01, "batch_size": 16, "epochs": 4,
                       "patience": 10, "device": "cpu", **kw})


def _assert_same_run(a, b, atol=1e-5, rel=1e-5):
    assert [h["epoch"] for h in a.history] == [h["epoch"] for h in b.history]
    assert [h["loss"] for h in a.history] == pytest.approx([h["loss"] for h in b.history], rel=rel)
    assert a.best_epoch == b.best_epoch
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=atol, rtol=0, msg=lambda m, k=k: f"{k}: {m}")


def test_shards_partition_the_global_batch():
    for world in (1, 2, 3, 4):
        for n in range(0, 21):
            bounds = [shard_bounds(n, r, world) for r in range(world)]
            assert bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(bounds[r][1] == bounds[r + 1][0] for r in range(world - 1))  # disjoint, contiguous
            sizes = [hi - lo for lo, hi in bounds]
            assert max(sizes) - min(sizes) <= 1


def test_scaled_shard_loss_gives_the_global_mean_gradient():
    """What DDP computes (the mean over ranks of each shard's gradient) is the gradient of the mean loss
    over the global batch, with unequal and empty shards too. Exact up to float rounding, and
    independent of the optimizer."""
    torch.manual_seed(0)
    model = MFBPR(12, 9, 4)
    step = BPRStep(model)
    for n, world in ((16, 2), (5, 2), (1, 2), (7, 3)):
        users, pos, neg = torch.randint(12, (n,)), torch.randint(9, (n,)), torch.randint(9, (n,))
        model.zero_grad()
        model.bpr_loss(users, pos, neg).backward()
        want = [p.grad.clone() for p in model.parameters()]
        got = [torch.zeros_like(p) for p in model.parameters()]
        for r in range(world):
            lo, hi = shard_bounds(n, r, world)
            model.zero_grad()
            scaled_shard_loss(step(users[lo:hi], pos[lo:hi], neg[lo:hi]), world, n).backward()
            for g, p in zip(got, model.parameters()):
                g += p.grad / world  # DDP's all-reduce: the mean over ranks
        for g, w in zip(got, want):
            torch.testing.assert_close(g, w, atol=1e-7, rtol=1e-6)


def test_one_process_is_the_training_loop():
    """world_size=1 (no process group, the per-rank code) trains what train_recommender trains:
    same negatives, optimizer, losses, validation and early stopping."""
    split = _split()
    cfg = _cfg(epochs=8, patience=2)
    eval_cfg = EvalConfig(ks=(10,))
    ref = train_distributed(split, cfg, world_size=1, eval_cfg=eval_cfg)
    loop = train_recommender(build_model("mf_bpr", split, cfg), split, cfg, eval_cfg, progress=False)
    _assert_same_run(ref, loop, atol=1e-6, rel=1e-6)
    assert ref.best_valid["ndcg@10"] == pytest.approx(loop.best_valid["ndcg@10"])
    assert [h.get("valid_ndcg@10") for h in ref.history] == pytest.approx([h.get("valid_ndcg@10") for h in loop.history])


@needs_gloo
@pytest.mark.parametrize("kind", ["mf_bpr", "text_hybrid"])
def test_two_gloo_processes_train_the_one_process_model(kind, tmp_path):
    """2 DDP processes, each on half of every global batch, end with the tables 1 process trains on the
    whole batch (same seed), epoch for epoch the same loss. The hybrid has a cold item (never a negative,
    its ID row generated on rank 0) and no dropout (per-rank dropout masks would differ); it stops early
    (rank 0's decision, broadcast), and every rank ends on the selected epoch's state."""
    if kind == "mf_bpr":
        split, cfg, feats = _split(), _cfg(), None
    else:
        split = _split(cold_item=3)
        cfg = HybridConfig(**_cfg(epochs=8, patience=2).model_dump(), text_dropout=0.0, text_lr=0.01, cold_start=True)
        feats = torch.randn(split.n_items, 16, generator=torch.Generator().manual_seed(1))
    eval_cfg = EvalConfig(ks=(10,))
    init = build_model(kind, split, cfg, feats)
    one = train_distributed(split, cfg, world_size=1, kind=kind, text_features=feats, eval_cfg=eval_cfg)
    two = train_distributed(split, cfg, world_size=2, kind=kind, text_features=feats, eval_cfg=eval_cfg,
                            out_dir=tmp_path / "ddp")
    _assert_same_run(two, one)
    moved = (two.model.user_embedding.weight - init.user_embedding.weight).abs().max()
    assert moved > 1e-2, "the tables barely trained: the comparison would prove nothing"
    assert two.model.meta["world_size"] == 2 and two.model.meta["backend"] == "gloo"
    assert two.best_valid["ndcg@10"] == pytest.approx(one.best_valid["ndcg@10"], abs=1e-6)
    # rank 0 saved it the project's way (safetensors + JSON); the returned model is that file's
    saved = tmp_path / "ddp" / "model"
    assert (saved / "model.safetensors").exists() and (saved / "config.json").exists()
    torch.testing.assert_close(load_recommender(saved).item_embedding.weight, two.model.item_embedding.weight)
    if kind == "text_hybrid":
        assert len(two.history) < cfg.epochs, "meant to stop early"
        assert two.model.has_cold_items() and bool(two.model.cold_map.abs().sum() > 0)
        torch.testing.assert_close(two.model.text_proj.weight, one.model.text_proj.weight, atol=1e-5, rtol=0)


@needs_gloo
def test_torchrun_entry_point(tmp_path):
    """`torchrun -m rrec_core.training.distributed` (2 processes) trains the in-process reference's model."""
    split = _split()
    split.save(tmp_path / "split")
    sets = {"epochs": 3, "batch_size": 16, "embedding_dim": 8, "lr": 0.05, "weight_decay": 0.01, "device": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "rrec_core.training.distributed", "--split", str(tmp_path / "split"), "--out", str(tmp_path / "out"),
           "--params", str(tmp_path / "none.yaml"), "--no-eval"]
    for k, v in sets.items():
        cmd += ["--set", f"pretrain.mf_bpr.{k}={v}"]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    trained = load_recommender(tmp_path / "out" / "model")
    assert trained.meta["world_size"] == 2
    ref = train_distributed(Split.load(tmp_path / "split"), MFConfig(**sets), world_size=1)
    for k in TABLES:
        torch.testing.assert_close(trained.state_dict()[k], ref.model.state_dict()[k], atol=1e-5, rtol=0)


@needs_gloo
def test_pretraining_with_world_size_2_gives_the_one_process_models(tiny_data, caplog):
    """The pipeline's pretrain stage with pretrain.*.world_size: 2 trains MF-BPR and the warm-started hybrid
    in two processes and gets the one-process models (params.yaml is how a user turns it on)."""
    from rrec_core import pipeline
    from rrec_core.artifacts import ItemTextEmbeddings
    from rrec_core.config import DataConfig, PretrainConfig, SplitConfig, ValidationConfig
    from rrec_core.lm.encoder import TextEmbeddings

    raw = pipeline.load_raw_data(DataConfig(path=str(tiny_data)), root=".")
    data = pipeline.validate_and_split(raw, ValidationConfig(), SplitConfig())
    emb = torch.randn(data.split.n_items, 16, generator=torch.Generator().manual_seed(0))
    text = ItemTextEmbeddings(TextEmbeddings(list(data.split.item_ids), emb, "random", "t", False,
                                             [""] * data.split.n_items, {}))

    def run(world_size: int):
        loop = {"epochs": 4, "patience": 10, "batch_size": 64, "weight_decay": 0.01, "world_size": world_size,
                "checkpoint": False}
        cfg = PretrainConfig(models=["mf_bpr", "text_hybrid"], mf_bpr=MFConfig(**loop),
                             text_hybrid=HybridConfig(**loop, text_dropout=0.0))
        return pipeline.pretrain(data, text, cfg, progress=False)

    one = run(1)
    with caplog.at_level("INFO", logger="rrec_core.pipeline"):
        two = run(2)
    assert sum("(2 processes)" in r.getMessage() for r in caplog.records) == 2  # both models went through DDP
    for kind in ("mf_bpr", "text_hybrid"):
        a, b = one.models[kind].state_dict(), two.models[kind].state_dict()
        for name in TABLES:
            torch.testing.assert_close(b[name], a[name], atol=1e-5, rtol=0)
        assert [h["loss"] for h in two.histories[kind]] == pytest.approx([h["loss"] for h in one.histories[kind]],
                                                                           rel=1e-5, nan_ok=True)  # epoch 0: warm start
