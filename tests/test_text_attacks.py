"""Text tampering: budgets, stealth measures, promotion on a small trained hybrid, the text-blind control."""
import random

import pytest
import torch

from rrec_core.attacks.text import (
    TextAttackSpec,
    char_edits,
    edit_distance,
    greedy_text_attack,
    imitation_edits,
    survives_sanitizer,
)


def test_edit_distance():
    assert edit_distance("kitten", "sitting") == 3 and edit_distance("", "abc") == 3 and edit_distance("ab", "ab") == 0


def test_char_edits_are_one_edit_and_the_sanitizer_undoes_lookalikes_and_invisibles():
    title = "Toy Story"
    edits = char_edits(title, random.Random(0), 200)
    assert edits and all(edit_distance(title, e) <= 2 for e in edits)  # a neighbour swap is two substitutions
    lookalike = "T\u043ey Story"  # Cyrillic o
    invisible = "Toy\u200b Story"
    assert lookalike in edits or invisible in edits or any(edit_distance(title, e) == 1 for e in edits)
    assert not survives_sanitizer(title, lookalike) and not survives_sanitizer(title, invisible)
    assert survives_sanitizer(title, "Toy Stroy") and survives_sanitizer(title, "Toy Story Drama")


@pytest.mark.parametrize("kind,budget", [("char", 3), ("imitation", 2)])
def test_greedy_attack_respects_its_budget_and_never_lowers_the_objective(kind, budget):
    # a toy objective: the number of 'x' / appended words the title holds
    def objective(titles):
        return torch.tensor([float(t.count("\u200b") + t.count("\u0445") + len(t.split())) for t in titles])

    out = greedy_text_attack("Max Payne", TextAttackSpec(kind, budget, 64), objective, imitation=["Love", "War", "Star"])
    assert out.steps <= budget and out.objective >= float(objective(["Max Payne"])[0])
    if kind == "imitation":
        assert len(out.title.split()) - 2 == out.steps == budget
    else:
        assert out.edit_distance <= 2 * budget
    assert imitation_edits("Max Payne", ["Max", "War"], 5) == ["Max Payne War"]  # a word already there is skipped


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, tiny_bert):
    import yaml
    from conftest import write_tiny_atomic
    from dagster import materialize
    from test_pipeline_e2e import tiny_params

    from orchestration.definitions import defs
    from rrec_core.artifacts import TextAttackEvaluation

    root = tmp_path_factory.mktemp("text_attacks")
    write_tiny_atomic(root / "data" / "tiny")
    params = tiny_params("data/tiny", tiny_bert)
    # 60 items: every target is in every top 50 already, so the attacks aim at the top 10
    params["text_attacks"].update({"target_share": 0.05, "candidates": 16, "objective_k": 10})
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    cwd = __import__("os").getcwd()
    __import__("os").chdir(root)
    try:
        assert materialize(list(defs.assets), resources=defs.resources, selection="*text_attack_evaluation").success
        ev = TextAttackEvaluation.load(root / "artifacts" / "text_attack_evaluation")
    finally:
        __import__("os").chdir(cwd)
    return root, ev.result


def test_text_attacks_promote_cold_targets_and_leave_the_control_alone(evaluated):
    root, r = evaluated
    assert len(r.targets) == 3 and set(r.models) == {"pretrained/text_hybrid", "adversarial/text_hybrid",
                                                     "pretrained/mf_bpr", "pretrained/text_hybrid (targets cold)",
                                                     "pretrained/text_hybrid (targets cold, guarded)"}
    cold = r.models["pretrained/text_hybrid (targets cold)"]
    assert cold.targets_cold and set(cold.attacks) == {"char", "word", "imitation", "hotflip"} and not cold.new_item_guard
    guarded = r.models["pretrained/text_hybrid (targets cold, guarded)"]
    assert guarded.targets_cold and guarded.new_item_guard and set(guarded.attacks) == set(cold.attacks)
    # the guard only changes how the cold targets are served, so the warm rows are the unguarded ones
    assert not any(m.new_item_guard for n, m in r.models.items() if not n.endswith("guarded)"))
    # every attack takes at least one improving step on a model that reads text, none lowers the target's
    # top-10 exposure, and the strongest raises it
    for row in cold.attacks.values():
        assert row.steps > 0 and row.undefended.hr10 >= cold.clean.hr10 - 1e-9
    assert max(a.undefended.hr10 - cold.clean.hr10 for a in cold.attacks.values()) > 0
    # budgets: imitation adds at most its budget of words
    for ex in cold.attacks["imitation"].examples:
        assert 0 < len(ex["attacked"].split()) - len(ex["clean"].split()) <= 5
    # the sanitizer undoes the character attack's look-alikes and invisibles, not the word-level attacks
    assert cold.attacks["imitation"].survives_sanitizer == 1.0
    # the text-blind control: MF-BPR's numbers are the clean ones under every attack, to the bit
    mf = r.models["pretrained/mf_bpr"]
    assert not mf.reads_text
    for row in mf.attacks.values():
        assert row.undefended == mf.clean and row.test_ndcg10 == mf.clean_test_ndcg10
    assert (root / "metrics" / "text_attacks.json").exists()


def test_hotflip_proposes_single_title_word_swaps_ranked_by_the_first_order_gain(tiny_bert):
    from rrec_core.attacks.text import HotFlip, WordNeighbours
    from rrec_core.config import EncoderConfig
    from rrec_core.lm.encoder import encode_texts, load_language_model

    cfg = EncoderConfig(model=str(tiny_bert), device="cpu")
    tokenizer, lm = load_language_model(cfg)
    lm.eval()
    flip = HotFlip(tokenizer, lm, cfg.max_length, cfg.normalize, WordNeighbours(tokenizer, lm))
    direction = torch.randn(lm.config.hidden_size, generator=torch.Generator().manual_seed(0))
    title = "Return of the Jedi"
    render = "{} (1983). Genres: Action.".format
    out = flip.propose(title, render(title), lambda vec: vec[0] @ direction, 12)
    assert 0 < len(out) <= 12 and len(set(out)) == len(out)
    for cand in out:
        old, new = title.split(), cand.split()
        assert len(old) == len(new) and sum(a != b for a, b in zip(old, new)) == 1  # one word swapped
        swapped = next(b for a, b in zip(old, new) if a != b)
        assert swapped.lower() in flip.words and len(swapped) >= 3
    # the first-order ranking means something: the best-ranked swaps raise the score more than the
    # worst-ranked ones, measured by encoding the candidates for real
    worst = flip.propose(title, render(title), lambda vec: -(vec[0] @ direction), 12)
    gain = lambda titles: encode_texts([render(t) for t in titles], tokenizer, lm, cfg, progress=False) @ direction  # noqa: E731
    assert float(gain(out).mean()) > float(gain(worst).mean())
    assert flip.propose("  Spaced   Title ", render("Spaced Title"), lambda vec: vec[0] @ direction, 5) == []
