"""The real chain on MovieLens-100K with the packaged MiniLM (minutes; CI runs it)."""
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not (ROOT / "data" / "ml-100k").is_dir(), reason="ML-100K not pulled (make data)")
def test_ml100k_chain_meets_quality_targets(tmp_path, monkeypatch):
    from dagster import AssetKey, AssetSelection, materialize

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["path"] = str(ROOT / "data" / "ml-100k")
    params["encoder"]["cache_dir"] = str(ROOT / "artifacts" / "cache" / "text_embeddings")  # shared with make run
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    from orchestration.definitions import defs

    # only what this test asserts on and its upstream: cold start and distillation (~3 min here) have
    # their own tests (test_pipeline_e2e, test_distillation) and `make run` covers them on ML-100K
    asserted = ("pretrain_evaluation", "robustness_evaluation", "poisoning_evaluation", "text_attack_evaluation")
    result = materialize(list(defs.assets), resources=defs.resources,
                         selection=AssetSelection.assets(*asserted).upstream())
    assert result.success
    done = {e.asset_key for e in result.get_asset_materialization_events()}
    assert AssetKey("gan_samples") in done and AssetKey("cold_start_evaluation") not in done
    from rrec_core.results import PoisoningResult, PretrainResult, RobustnessResult, TextAttackResult

    m = PretrainResult.from_json(Path("metrics/pretrain.json").read_text()).models
    # RecBole 1.2.1 BPR on the same protocol: NDCG@10 0.286 (docs/results.md); within 3%
    assert m["mf_bpr"].test["ndcg@10"] >= 0.97 * 0.286
    assert m["text_hybrid"].test["ndcg@10"] >= m["mf_bpr"].test["ndcg@10"] - 1e-9
    assert m["mf_bpr"].test["hit@10"] > 0.7

    # adversarial fine-tuning: clean quality kept, and robust to PGD-100 at eps=0.5 (absolute, L2)
    r = RobustnessResult.from_json(Path("metrics/robustness.json").read_text()).models

    def pgd100(model):
        return [a for a in model.attacks if a.steps == 100 and a.norm == "l2" and a.scale == "absolute"
                and a.eps == 0.5][0]

    def worst(model, scale, eps):
        return [w for w in model.worst_case if w.norm == "l2" and w.scale == scale and w.eps == eps][0]

    for kind in ("mf_bpr", "text_hybrid"):
        pre, adv = r[f"pretrained/{kind}"], r[f"adversarial/{kind}"]
        assert adv.clean["ndcg@10"] >= 0.98 * pre.clean["ndcg@10"]
        assert pgd100(adv).ndcg_kept >= 0.70 and pgd100(adv).ndcg_kept > pgd100(pre).ndcg_kept
        # the number that matters is the per-user worst case over the whole suite (docs/robustness.md);
        # measured 2026-12-07 with the strong budget at these radii (PGD-100 x 5, margin@1) and each user at
        # its worst iterate: adversarial MF / hybrid 50.2% / 51.2% kept at eps 0.5 abs, 37.3% / 37.5% at 0.25
        # rel; pretrained 13.3% / 15.6% and 7.7% / 8.6% (best iterate per attack, 2026-12-03: 56.6% / 58.6%
        # and 43.4% / 43.2%; the goals, 70% / 60%, are not met)
        for scale, eps, floor in (("absolute", 0.5, 0.46), ("relative", 0.25, 0.33)):
            w_adv, w_pre = worst(adv, scale, eps), worst(pre, scale, eps)
            assert w_adv.ndcg_kept >= floor, (kind, scale, w_adv.ndcg_kept)
            assert w_adv.ndcg_kept > 2 * w_pre.ndcg_kept, (kind, scale)
        # the ranking attacks are stronger than the training adversary: never judged by it alone
        assert worst(adv, "absolute", 0.5).ndcg < pgd100(adv).metrics["ndcg@10"] - 0.03
        # ... in the L-inf ball too (before 2026-12-07 it had only pairwise attacks; bench/attack_strength.py
        # measured the L-inf worst case 28-45 points of NDCG@10 kept too high)
        linf = [w for w in adv.worst_case if w.norm == "linf" and w.scale == "absolute" and w.eps == 0.0625][0]
        pairwise = min(a.metrics["ndcg@10"] for a in adv.attacks if a.objective == "bpr" and a.norm == "linf"
                       and a.scale == "absolute" and a.eps == 0.0625)
        assert linf.ndcg < pairwise - 0.03, (kind, linf.ndcg, pairwise)
        # the per-user attacker (one user at a time, every item row against it): nothing survives the
        # headline radius; the fine-tuning's advantage holds at 0.1 (measured 2026-12-07: 56-61% kept
        # against 35-37%)
        def targeted(model, scale, eps):
            return [t for t in model.per_user if t.norm == "l2" and t.scale == scale and t.eps == eps][0].ndcg_kept

        assert targeted(adv, "absolute", 0.5) < 0.1 and targeted(adv, "absolute", 0.5) < worst(adv, "absolute", 0.5).ndcg_kept
        assert targeted(adv, "absolute", 0.1) > targeted(pre, "absolute", 0.1) + 0.1

    # poisoning (issue 16): one target, 3% fakes, the two optimization-based attacks (bandwagon, which does not
    # promote at 3%, runs in the poisoning grid). Both promote the target into real users' top lists (measured
    # 2026-12-02/03 on this target, item 1386: gradient HR@50 0.125 / HR@10 0.015, the promotion-tuned GAN
    # 0.119 / 0.003 on MF-BPR retrained by bench/poisoning_strength.py; the in-process chain measured the
    # gradient attack at 0.079); the robust arm (VAT-style radii, no detection) lowers the
    # adversarial model's HR@50 against the gradient attack (measured 0.032-0.038) at <= 3% NDCG@10 cost.
    # The screen cannot flag a
    # single target (min_group 3), so nothing is flagged and the defended arm trains on exactly the
    # undefended data: no gate pretends it defends (docs/poisoning.md).
    p = PoisoningResult.from_json(Path("metrics/poisoning.json").read_text())
    assert set(p.attacks) == {"gan_promotion", "gradient"} and len(p.targets) == 1
    for attack, res in p.attacks.items():
        und = res.arms["undefended"]
        assert und.pretrained["prediction_shift"] > 0.1, attack  # the attack works before defence is judged
        assert res.stealth is not None and 0.5 < res.stealth["stealth_auc"] <= 1.0, attack
        if res.screen.flagged == 0:
            assert res.arms["defended"].pretrained == und.pretrained, attack
    # promotion = the target's HR@50 on the poisoned data minus on the clean data, same victim
    for name, floor in (("gradient", 0.04), ("gan_promotion", 0.02)):
        und = p.attacks[name].arms["undefended"].pretrained
        assert und["promotion@50"] >= floor, (name, und["promotion@50"], p.clean["pretrained"]["target_hit@50"])
    # adversarial fine-tuning lowers the promotion-tuned GAN's HR@50, by a share that varies with the run and
    # the target: 0.119 -> 0.022 (2026-12-03), 0.072 -> 0.035 (make repro, 2026-12-07 night), 0.037 -> 0.029 (this
    # test in a fresh clone, same night), 9-52% of HR@50 kept over the poisoning grid's three targets
    # (metrics/poisoning_grid.json); the attack follows float noise (docs/poisoning.md)
    gp = p.attacks["gan_promotion"].arms
    assert gp["undefended"].adversarial["target_hit@50"] < 0.9 * gp["undefended"].pretrained["target_hit@50"]
    grad = p.attacks["gradient"].arms
    assert grad["robust"].adversarial["ndcg@10_change"] >= -0.03
    assert grad["undefended"].pretrained["target_hit@10"] > 0
    # the robust arm removes most of the undefended promotion (grid: keeps 22-23% of the gradient attack's, mean of
    # three targets); whether it also beats the plain fine-tuning on one target follows float noise across CPUs
    # (0.026 against 0.044 on one machine, 0.029 against 0.029 on another, make repro 2026-12-07)
    assert grad["robust"].adversarial["target_hit@50"] < 0.5 * grad["undefended"].pretrained["target_hit@50"]

    # text tampering (issue 11): cold targets are promoted by every attack (measured 2026-12-03: HR@50 0.007 ->
    # 0.066 char, 0.111 word, 0.408 imitation), warm ones barely (<= 0.0006); the sanitizer only dents the char
    # attack; MF-BPR reads no text, so its numbers are the clean ones
    t = TextAttackResult.from_json(Path("metrics/text_attacks.json").read_text())
    assert len(t.targets) == 17
    cold = t.models["pretrained/text_hybrid (targets cold)"]
    assert cold.attacks["imitation"].undefended.hr50 >= max(0.2, 10 * cold.clean.hr50)
    assert all(a.undefended.hr50 > 3 * cold.clean.hr50 for a in cold.attacks.values())
    assert cold.attacks["char"].sanitized.hr50 < cold.attacks["char"].undefended.hr50
    assert max(a.undefended.hr50 for a in t.models["pretrained/text_hybrid"].attacks.values()) < 0.01
    mf = t.models["pretrained/mf_bpr"]
    assert all(a.undefended == mf.clean and a.steps == 0 for a in mf.attacks.values())
    # the white-box HotFlip attack is the strongest on cold targets (measured 2026-12-07: HR@50 0.007 -> 0.441
    # with 3 words); the new-item guard, every attack searching against it: the promotion it leaves of the
    # unguarded one is 32% (char), 7% (word), 8% (imitation), 7% (hotflip); behind the sanitizer too, 21% (char);
    # the attacked titles then cost the test NDCG@10 at most 1.4% (imitation and hotflip unguarded: 36%)
    from rrec_core.reporting.text_attacks import guard_shares

    assert cold.attacks["hotflip"].undefended.hr50 >= cold.attacks["word"].undefended.hr50
    shares = guard_shares(t)
    assert set(shares) == {"char", "word", "imitation", "hotflip"}
    assert all(s["guard+sanitizer"] is not None and s["guard+sanitizer"] <= 1 / 3 for s in shares.values())
    assert max(shares[k]["guard"] for k in ("word", "imitation", "hotflip")) <= 0.15
    guarded = t.models["pretrained/text_hybrid (targets cold, guarded)"]
    # (0.97, not the measured 0.986: the attacks' long searches amplify float differences across CPUs)
    assert min(a.test_ndcg10 for a in guarded.attacks.values()) >= 0.97 * cold.clean_test_ndcg10
    assert min(a.test_ndcg10 for a in cold.attacks.values()) < 0.8 * cold.clean_test_ndcg10  # unguarded: 36%
