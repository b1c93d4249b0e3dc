"""Exploration (one run per cell, not a benchmark): how much cold-item NDCG@10 an operating point on the
treated hybrid buys for each point of warm NDCG@10, on the cold_start stage's split (docs/cold_start.md).

The treated hybrid's scores of cold items get an offset b (in units of each user's warm-score standard
deviation); b = -99 ranks every cold item last (the untreated ranking), b = 0 is the stage's. The
operating point is chosen on validation: the largest b that keeps validation warm NDCG@10 within 1%.

    .venv/bin/python bench/explore/cold_offset_frontier.py 3 0.0,0.2      # cold-item seeds, id dropouts

Needs artifacts/ (make run). The log docs/cold_start.md cites is in bench/results/raw/.
"""
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from rrec_core.artifacts import ItemTextEmbeddings, ValidatedData  # noqa: E402
from rrec_core.config import EvalConfig, load_params  # noqa: E402
from rrec_core.data.cold import hold_out_items  # noqa: E402
from rrec_core.evaluation.ranking import evaluate_full_ranking  # noqa: E402
from rrec_core.training.loop import build_model, train_recommender, warm_start_from  # noqa: E402

torch.set_num_threads(2)
art = ROOT / 'artifacts'
data = ValidatedData.load(art / 'validated_interactions')
text = ItemTextEmbeddings.load(art / 'item_text_embeddings').emb.embeddings
params = load_params(ROOT / 'params.yaml')
seeds = [int(s) for s in sys.argv[1].split(',')] if len(sys.argv) > 1 else [3]
dropouts = [float(s) for s in sys.argv[2].split(',')] if len(sys.argv) > 2 else [0.0]
ev10 = EvalConfig(ks=(10,))
for seed in seeds:
    cs = hold_out_items(data.split, 0.1, seed)
    sp = cs.split
    mf = train_recommender(build_model('mf_bpr', sp, params.pretrain.mf_bpr), sp, params.pretrain.mf_bpr, ev10)
    base = params.pretrain.text_hybrid
    def scores_of(model):
        model.eval()
        with torch.no_grad():
            return model.user_vectors(torch.arange(sp.n_users)) @ model.item_vectors().T
    def run(hcfg):
        m = build_model('text_hybrid', sp, hcfg, text); warm_start_from(m, mf.model)
        return train_recommender(m, sp, hcfg, ev10, warm_start=True, text_lr=hcfg.text_lr).model
    untreated = scores_of(run(base.model_copy(update={'cold_start': False, 'id_dropout': 0.0})))
    cold = torch.zeros(sp.n_items, dtype=torch.bool); cold[torch.as_tensor(cs.cold_items)] = True
    def ev(S, target, exclude):
        return evaluate_full_ranking(lambda u: S[u], sp.n_users, sp.n_items, target, exclude, (10, 20), 1024)
    vc = np.isin(sp.valid[:, 1], cs.cold_valid); tc = np.isin(sp.test[:, 1], cs.cold_test)
    def all_metrics(S):
        return {'v_warm': ev(S, sp.valid[~vc], [sp.train])['ndcg@10'], 'v_cold': ev(S, sp.valid[vc], [sp.train])['ndcg@10'],
                't_warm': ev(S, sp.test[~tc], [sp.train, sp.valid])['ndcg@10'], 't_cold': ev(S, sp.test[tc], [sp.train, sp.valid])['ndcg@10'],
                't_cold_r20': ev(S, sp.test[tc], [sp.train, sp.valid])['recall@20'],
                't_all': ev(S, sp.test, [sp.train, sp.valid])['ndcg@10']}
    u = all_metrics(untreated)
    from rrec_core.evaluation.cold_start import text_knn_scorer
    knn = text_knn_scorer(sp, text)(torch.arange(sp.n_users))
    print(f'seed {seed} text_knn', {k: round(v, 4) for k, v in all_metrics(knn).items()}, flush=True)
    print(f'seed {seed} untreated', {k: round(v, 4) for k, v in u.items()}, flush=True)
    for d in dropouts:
        S = scores_of(run(base.model_copy(update={'cold_start': True, 'id_dropout': d})))
        sd = S[:, ~cold].std(1, keepdim=True)
        rows = []
        for b in [-99, -3, -2, -1.5, -1.25, -1, -0.75, -0.5, -0.25, 0]:
            m = all_metrics(S + b * sd * cold.float())   # offset in units of the user's warm-score sd
            rows.append((b, m))
            print(f'  d={d} b={b:+.2f}', {k: round(v, 4) for k, v in m.items()}, flush=True)
        ref = rows[0][1]['v_warm']
        ok = [r for r in rows if r[1]['v_warm'] >= 0.99 * ref]
        b, m = max(ok, key=lambda r: r[0])
        print(f'  SELECTED d={d} b={b}: test warm {m["t_warm"]:.4f} (untreated {u["t_warm"]:.4f}, {m["t_warm"]/u["t_warm"]-1:+.1%}), cold {m["t_cold"]:.4f}', flush=True)
