"""Crash safety: a training run killed mid-way resumes and ends exactly as an uninterrupted one; a write killed
mid-way leaves the previous artefact (or checkpoint) intact."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT

TRAIN_SCRIPT = textwrap.dedent('''
    import json, sys
    from pathlib import Path
    import torch
    torch.set_num_threads(1)
    from rrec_core.config import DataConfig, EvalConfig, MFConfig, SplitConfig
    from rrec_core.data import load_dataset
    from rrec_core.data.split import split_interactions
    from rrec_core.models import save_recommender
    from rrec_core.training.loop import build_model, train_recommender

    root, out, ckpt = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    ds = load_dataset(DataConfig(path="data/tiny"), root)
    split = split_interactions(ds.interactions, SplitConfig(), ds.items["item_id"].tolist())
    cfg = MFConfig(embedding_dim=16, lr=0.01, batch_size=64, epochs=int(sys.argv[4]), patience=1000, device="cpu")
    model = build_model("mf_bpr", split, cfg)
    result = train_recommender(model, split, cfg, EvalConfig(ks=(10,)), progress=False, checkpoint_dir=ckpt)
    save_recommender(result.model, out)
    (out / "history.json").write_text(json.dumps([{k: v for k, v in h.items() if k != "train_seconds"}
                                                  for h in result.history]))
''')


def _tiny(tmp_path: Path) -> Path:
    from conftest import write_tiny_atomic

    write_tiny_atomic(tmp_path / "data" / "tiny", n_users=200, n_items=150, per_user=20)
    (tmp_path / "train.py").write_text(TRAIN_SCRIPT)
    return tmp_path


def _train(root: Path, out: str, ckpt: str, epochs: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(root / "train.py"), str(root), str(root / out), str(root / ckpt),
                             str(epochs)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _saved(root: Path, out: str) -> tuple[dict, list]:
    from safetensors.torch import load_file

    return load_file(str(next((root / out).glob("*.safetensors")))), json.loads((root / out / "history.json").read_text())


def test_training_killed_with_sigkill_resumes_to_the_same_model(tmp_path):
    root = _tiny(tmp_path)
    epochs = 40
    reference = _train(root, "uninterrupted", "ckpt_a", epochs)
    assert reference.wait(timeout=600) == 0, reference.stderr.read().decode()[-2000:]

    victim = _train(root, "resumed", "ckpt_b", epochs)
    state = root / "ckpt_b" / "state.json"
    deadline = time.time() + 300
    while time.time() < deadline:  # kill -9 once a few epochs are checkpointed, well before the end
        try:
            if json.loads(state.read_text())["epoch"] >= 5:
                break
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            pass
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    killed_at = json.loads(state.read_text())["epoch"] if state.exists() else None
    assert killed_at is not None and killed_at < epochs, "the run finished before it could be killed"
    assert not (root / "resumed").exists()

    again = _train(root, "resumed", "ckpt_b", epochs)
    assert again.wait(timeout=600) == 0, again.stderr.read().decode()[-2000:]
    a, hist_a = _saved(root, "uninterrupted")
    b, hist_b = _saved(root, "resumed")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert hist_a == hist_b and len(hist_b) == epochs
    assert not (root / "ckpt_b").exists()  # removed once training ended


def test_a_checkpoint_of_another_run_is_never_resumed(tmp_path):
    from rrec_core.config import DataConfig, EvalConfig, MFConfig, SplitConfig
    from rrec_core.data import load_dataset
    from rrec_core.data.split import split_interactions
    from rrec_core.training.loop import build_model, train_recommender

    root = _tiny(tmp_path)
    ds = load_dataset(DataConfig(path="data/tiny"), root)
    split = split_interactions(ds.interactions, SplitConfig(), ds.items["item_id"].tolist())
    cfg = MFConfig(embedding_dim=8, lr=0.01, batch_size=256, epochs=3, patience=100, device="cpu")
    ckpt = tmp_path / "ckpt"

    class Stop(Exception):
        pass

    calls = {"n": 0}

    def crash_at_epoch_2(m):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Stop  # a crash after epoch 1's checkpoint
        return {"score": float(calls["n"])}

    with pytest.raises(Stop):
        train_recommender(build_model("mf_bpr", split, cfg), split, cfg, EvalConfig(ks=(10,)), progress=False,
                          checkpoint_dir=ckpt, valid_score=crash_at_epoch_2)
    assert json.loads((ckpt / "state.json").read_text())["epoch"] == 2
    other = cfg.model_copy(update={"lr": 0.02})  # another run: the checkpoint must not be picked up
    res = train_recommender(build_model("mf_bpr", split, other), split, other, EvalConfig(ks=(10,)), progress=False,
                            checkpoint_dir=ckpt)
    assert [h["epoch"] for h in res.history] == [1, 2, 3]


def test_a_write_killed_midway_leaves_the_previous_artefact(tmp_path):
    """A real process killed with SIGKILL while it fills the new artefact directory: the old one is intact."""
    final = tmp_path / "artifacts" / "asset"
    final.mkdir(parents=True)
    (final / "model.json").write_text('{"version": 1}')
    script = textwrap.dedent(f'''
        import time
        from pathlib import Path
        from orchestration.io_manager import _swap_dir

        def fill(tmp):
            (tmp / "model.json").write_text('{{"version": 2}}')
            Path({str(tmp_path / "started")!r}).write_text("x")
            time.sleep(60)

        _swap_dir(Path({str(final)!r}), fill)
    ''')
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 120
    while not (tmp_path / "started").exists() and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert json.loads((final / "model.json").read_text()) == {"version": 1}


def test_a_kill_between_the_two_renames_is_recovered_on_read(tmp_path):
    """_swap_dir moves the old directory aside, then the new one in: killed in between, the reader finds the
    old one under .<name>.old and puts it back."""
    from orchestration.io_manager import recover_dir

    final = tmp_path / "asset"
    old = tmp_path / ".asset.old"
    old.mkdir()
    (old / "model.json").write_text('{"version": 1}')
    assert recover_dir(final) and json.loads((final / "model.json").read_text()) == {"version": 1}
    assert not old.exists()
    assert not recover_dir(tmp_path / "never_written")


def test_resume_with_a_tuned_lm_tower_matches_an_uninterrupted_run(tmp_path, tiny_bert):
    """The text hybrid with LM layers tuned end to end (the tower is a child of the model while it trains):
    crash after epoch 2, resume, and end with the same weights, tower and history as a run never stopped."""
    from conftest import write_tiny_atomic

    from rrec_core.config import DataConfig, EncoderConfig, EvalConfig, HybridConfig, SplitConfig
    from rrec_core.data import load_dataset
    from rrec_core.data.split import split_interactions
    from rrec_core.lm.encoder import item_texts
    from rrec_core.lm.tower import LMTower
    from rrec_core.training.loop import build_model, train_recommender

    write_tiny_atomic(tmp_path / "data" / "tiny")
    ds = load_dataset(DataConfig(path="data/tiny"), tmp_path)
    split = split_interactions(ds.interactions, SplitConfig(), ds.items["item_id"].tolist())
    enc = EncoderConfig(model=str(tiny_bert), device="cpu")
    texts = item_texts(ds.items.set_index("item_id").loc[split.item_ids].reset_index(), enc.text_template)
    cfg = HybridConfig(embedding_dim=8, lr=0.01, batch_size=128, epochs=4, patience=100, device="cpu")

    def run(crash_at=None):
        tower = LMTower(texts, enc, 1)
        feats = torch.randn(split.n_items, 32, generator=torch.Generator().manual_seed(0))
        model = build_model("text_hybrid", split, cfg, feats)
        calls = {"n": 0}

        def score(m):  # a function of the weights alone, so both runs select the same epoch
            calls["n"] += 1
            if calls["n"] == crash_at:
                raise KeyboardInterrupt
            return {"score": -abs(float(m.user_embedding.weight.norm()) - 1.0)}
        res = train_recommender(model, split, cfg, EvalConfig(ks=(10,)), lm_tower=tower, progress=False,
                                valid_score=score, checkpoint_dir=tmp_path / "ckpt", lm_lr=1e-3)
        return res, tower

    reference, ref_tower = run()
    with pytest.raises(KeyboardInterrupt):
        run(crash_at=3)
    assert json.loads((tmp_path / "ckpt" / "state.json").read_text())["epoch"] == 2
    resumed, tower = run()
    a, b = reference.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(v, tower.state_dict()[k]) for k, v in ref_tower.state_dict().items())
    strip = [{k: v for k, v in h.items() if k != "train_seconds"} for h in reference.history]
    assert strip == [{k: v for k, v in h.items() if k != "train_seconds"} for h in resumed.history]
    assert reference.best_epoch == resumed.best_epoch
