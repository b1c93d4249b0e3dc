"""What the poisoning explorations share: params.yaml's ML-100K data and split, and the victim — MF-BPR
(params.yaml pretrain.mf_bpr) retrained from scratch on a poisoned split, measured on the real users."""
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from rrec_core.config import EvalConfig, load_params  # noqa: E402
from rrec_core.data.loaders import load_dataset  # noqa: E402
from rrec_core.data.split import split_interactions  # noqa: E402
from rrec_core.evaluation.poisoning import poisoned_split  # noqa: E402
from rrec_core.poisoning import poisoning_metrics  # noqa: E402
from rrec_core.training.loop import build_model, train_recommender  # noqa: E402

torch.set_num_threads(2)
params = load_params(ROOT / "params.yaml")
_ds = load_dataset(params.data, ROOT)
inter = _ds.interactions
split = split_interactions(inter, params.split, _ds.items["item_id"].tolist())
real_users = [str(u) for u in split.user_ids]


def victim_metrics(poisoned, targets: list[str]) -> dict:
    """Target HR@10/50, exposure and percentile on the real users of MF-BPR retrained on `poisoned`'s split."""
    s = poisoned_split(split, poisoned.injected)
    mf = params.pretrain.mf_bpr
    model = train_recommender(build_model("mf_bpr", s, mf), s, mf, EvalConfig(ks=(10,)), progress=False).model
    return poisoning_metrics(model, targets, s, users=real_users)
