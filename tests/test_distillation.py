"""Knowledge distillation: the student's encoder is the first layers of the teacher's LM (with its own
cache entry), the distillation loss reads the teacher's ranking, weight 0 is plain BPR, training on it
pulls the student's ranking to the teacher's, and the stage's artefact round-trips."""
import numpy as np
import pandas as pd
import pytest
import torch

from rrec_core.config import EncoderConfig
from rrec_core.data.split import Split
from rrec_core.lm.encoder import embed_items, load_language_model, transformer_layers
from rrec_core.models import MFBPR
from rrec_core.training.distill import DistillationLoss, ranking_distillation, teacher_ranking


def _split(n_users=30, n_items=40, per_user=8, seed=0) -> Split:
    rng = np.random.default_rng(seed)
    pairs = np.asarray([(u, i) for u in range(n_users) for i in rng.choice(n_items, per_user, replace=False)])
    return Split([str(u) for u in range(n_users)], [str(i) for i in range(n_items)], pairs[::2], pairs[1::4],
                 pairs[3::4])


def _mf(split: Split, seed: int) -> MFBPR:
    torch.manual_seed(seed)
    m = MFBPR(split.n_users, split.n_items, 8)
    with torch.no_grad():  # scores of a trained model's scale, so softmaxes are not flat
        m.user_embedding.weight.mul_(10)
        m.item_embedding.weight.mul_(10)
    return m


def test_truncated_encoder_is_the_first_layers_and_caches_apart(tiny_bert, tmp_path):
    full_cfg = EncoderConfig(model=str(tiny_bert), device="cpu", cache_dir="cache")
    tok, full = load_language_model(full_cfg)
    _, short = load_language_model(full_cfg.model_copy(update={"layers": 1}))
    assert len(transformer_layers(full)) == 2 and len(transformer_layers(short)) == 1
    enc = tok(["movie number 3 (1995). genres: comedy."], return_tensors="pt")
    with torch.no_grad():  # the same bottom layer, not a re-initialized one
        expected = full(**enc, output_hidden_states=True).hidden_states[1]
        assert torch.allclose(short(**enc).last_hidden_state, expected, atol=1e-5)
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["movie number 1", "movie number 2"], "year": [1995, 1996],
                          "genres": ["comedy", "drama"]})
    a = embed_items(items, full_cfg, root=tmp_path, progress=False)
    b = embed_items(items, full_cfg.model_copy(update={"layers": 1}), root=tmp_path, progress=False)
    assert a.cache_key != b.cache_key and not torch.allclose(a.embeddings, b.embeddings)
    assert embed_items(items, full_cfg.model_copy(update={"layers": 1}), root=tmp_path, progress=False).from_cache
    _, static = load_language_model(full_cfg.model_copy(update={"layers": 0}))
    with torch.no_grad():  # no layer at all: the token + position embeddings the first layer reads
        assert torch.allclose(static(**enc).last_hidden_state, full(**enc, output_hidden_states=True).hidden_states[0],
                              atol=1e-5)
    with pytest.raises(ValueError, match="2 transformer layers"):
        load_language_model(full_cfg.model_copy(update={"layers": 3}))


def test_teacher_top_k_never_holds_a_training_item():
    split = _split()
    ranking = teacher_ranking(_mf(split, 0), split.train, k=10)
    assert ranking.top.shape == (split.n_users, 10)
    held = {tuple(p) for p in split.train.tolist()}
    assert not any((u, int(i)) in held for u in range(split.n_users) for i in ranking.top[u])


def test_distillation_loss_reads_the_teacher_and_weight_zero_is_bpr():
    split = _split()
    teacher, student = _mf(split, 0), _mf(split, 1)
    users, pos, neg = (torch.as_tensor(split.train[:16, 0]), torch.as_tensor(split.train[:16, 1]),
                       torch.randint(0, split.n_items, (16,)))
    ranking = teacher_ranking(teacher, split.train, k=10)
    # the student that is the teacher has nothing left to learn on the teacher's own candidates
    assert ranking_distillation(teacher, users, ranking, 0, 1.0).item() == pytest.approx(0.0, abs=1e-6)
    kd = ranking_distillation(student, users, ranking, 5, 1.0, torch.Generator().manual_seed(0))
    other = teacher_ranking(_mf(split, 2), split.train, k=10)
    kd_other = ranking_distillation(student, users, other, 5, 1.0, torch.Generator().manual_seed(0))
    assert kd.item() > 0 and abs(kd.item() - kd_other.item()) > 1e-3
    g = torch.autograd.grad(kd, student.user_embedding.weight)[0]
    g_other = torch.autograd.grad(ranking_distillation(student, users, other, 5, 1.0, torch.Generator().manual_seed(0)),
                                  student.user_embedding.weight)[0]
    assert not torch.allclose(g, g_other)
    plain = DistillationLoss(ranking, 0.0, 5, 1.0, seed=0)(student, users, pos, neg)
    assert torch.equal(plain, student.bpr_loss(users, pos, neg))
    full = DistillationLoss(ranking, 2.0, 0, 1.0, seed=0)(student, users, pos, neg)
    assert full.item() == pytest.approx(student.bpr_loss(users, pos, neg).item()
                                        + 2 * ranking_distillation(student, users, ranking, 0, 1.0).item(), rel=1e-5)
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(ranking, 1.0, 0, 0.0, seed=0)


def test_training_on_the_distillation_loss_moves_the_student_to_the_teachers_ranking():
    split = _split()
    teacher, student = _mf(split, 0), _mf(split, 1)
    ranking = teacher_ranking(teacher, split.train, k=5)

    def overlap(model) -> float:
        mine = teacher_ranking(model, split.train, k=5).top
        return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / 5 for a, b in zip(mine, ranking.top)]))

    before = overlap(student)
    opt = torch.optim.Adam(student.parameters(), lr=0.05)
    users = torch.arange(split.n_users)
    gen = torch.Generator().manual_seed(0)
    for _ in range(200):
        loss = ranking_distillation(student, users, ranking, 30, 1.0, gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert overlap(student) > before + 0.3


def test_distillation_artefact_round_trips(tmp_path):
    from rrec_core.artifacts import DistillationEvaluation
    from rrec_core.results import DistillationResult, DistilledModel

    split = _split()
    model = _mf(split, 0)
    model.user_ids, model.item_ids = split.user_ids, split.item_ids
    result = DistillationResult(teacher="text_hybrid", teacher_layers=6, student_layers=1, top_k=50, n_random=50,
                                temperature=1.0, weight=1.0,
                                models={"student": DistilledModel(test={"ndcg@10": 0.3}, valid={"ndcg@10": 0.2},
                                                                  best_epoch=3, encoder_layers=1, ndcg_retained=0.99)})
    DistillationEvaluation(result, {"student": model}, {"student/encode": 0.5}).save(tmp_path)
    back = DistillationEvaluation.load(tmp_path)
    assert back.result == result and back.timings == {"student/encode": 0.5}
    assert torch.equal(back.models["student"].score(torch.tensor([0])), model.score(torch.tensor([0])))
    assert not list(tmp_path.rglob("*.pt")) and not list(tmp_path.rglob("*.pkl"))
