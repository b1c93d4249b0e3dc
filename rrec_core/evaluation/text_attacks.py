"""Text tampering evaluation: each attack of rrec_core.attacks.text against each model that reads text.

Targets: 1% of the items, drawn among unpopular ones. Models: the pretrained and the adversarial text
hybrid with the targets as they are (warm: their ID rows were trained), the pretrained hybrid with the
targets served as new items (cold: no ID row, generated from their text by the cold map fitted on the
other items), the same with its cold targets served through a NewItemGuard (the defence for new items;
every attack searches against the guarded serving, so it is judged adaptively), and MF-BPR, which
reads no text (the control: its numbers cannot move). For each model and
attack, every target's title is attacked against that model, and the report gives the targets' HR@10,
HR@50 (exposure@50) and rank percentile over their audiences (real users who never interacted with
them) clean, attacked, and attacked then sanitized (the validation stage's defence), beside the model's
test NDCG@10 with all attacked titles in place, and the attacks' stealth.
"""
from __future__ import annotations

import copy
import logging
import time

import numpy as np
import pandas as pd
import torch

from rrec_core.attacks.text import (
    HotFlip,
    TextAttackSpec,
    WordNeighbours,
    greedy_text_attack,
    imitation_words,
    survives_sanitizer,
)
from rrec_core.config import EncoderConfig, EvalConfig, NewItemGuardConfig, TextAttackConfig
from rrec_core.data.sanitize import sanitize_text
from rrec_core.data.split import Split
from rrec_core.evaluation.ranking import evaluate_model
from rrec_core.models import Recommender, TextHybrid
from rrec_core.results import TargetExposure, TextAttackModel, TextAttackResult, TextAttackRow

log = logging.getLogger(__name__)


def _history(split: Split) -> np.ndarray:
    return np.concatenate([np.asarray(p, dtype=np.int64).reshape(-1, 2) for p in (split.train, split.valid, split.test)])


class Exposure:
    """Each user's 10th and 50th best score among the items it never interacted with, the target left out:
    what a target's score has to beat to enter that user's top 10 / top 50."""

    def __init__(self, U: torch.Tensor, V: torch.Tensor, split: Split, targets: list[int], objective_k: int = 50) -> None:
        hist = _history(split)
        scores = U @ V.T
        scores[torch.as_tensor(hist[:, 0]), torch.as_tensor(hist[:, 1])] = float("-inf")
        self.U = U
        self.audience: dict[int, torch.Tensor] = {}
        self.cut10: dict[int, torch.Tensor] = {}
        self.cut50: dict[int, torch.Tensor] = {}
        self.cut_objective: dict[int, torch.Tensor] = {}
        self.others: dict[int, torch.Tensor] = {}
        for t in targets:
            users = torch.as_tensor(np.setdiff1d(np.arange(split.n_users), hist[hist[:, 1] == t, 0]))
            s = scores[users].clone()
            s[:, t] = float("-inf")
            top = s.topk(max(50, objective_k), dim=1).values
            self.audience[t], self.cut10[t], self.cut50[t] = users, top[:, 9], top[:, 49]
            self.cut_objective[t] = top[:, objective_k - 1]
            self.others[t] = s  # percentile: the share of the user's other candidates the target beats

    def of(self, t: int, v: torch.Tensor) -> dict[str, float]:
        s = self.U[self.audience[t]] @ v
        finite = torch.isfinite(self.others[t])
        beaten = ((self.others[t] < s.unsqueeze(1)) & finite).sum(1).float() / finite.sum(1).clamp_min(1)
        return {"hr10": float((s > self.cut10[t]).float().mean()), "hr50": float((s > self.cut50[t]).float().mean()),
                "percentile": float(beaten.mean())}

    def objective(self, t: int, V: torch.Tensor) -> torch.Tensor:
        """[C] smooth HR@k (k = objective_k) of C candidate vectors of target t (the exact HR@k breaks ties)."""
        s = self.U[self.audience[t]] @ V.T  # [A, C]
        cut = self.cut_objective[t].unsqueeze(1)
        tau = (self.cut_objective[t].std() / 20).clamp_min(1e-6)
        return torch.sigmoid((s - cut) / tau).mean(0) + 1e-3 * (s > cut).float().mean(0)


def vectors_for_features(model: Recommender, item: int, features: torch.Tensor) -> torch.Tensor:
    """[len(features), d]: the item's vector with each row of `features` as its text. A model that reads no
    text (MF-BPR) gives its one vector for every row: an attack on its text can only find nothing."""
    if isinstance(model, TextHybrid):
        return model.item_vectors_for_features(item, features)
    return model.item_vectors(torch.tensor([item])).expand(len(features), -1)


def _mean(rows: list[dict[str, float]]) -> TargetExposure:
    return TargetExposure(**{k: round(float(np.mean([r[k] for r in rows])), 6) for k in ("hr10", "hr50", "percentile")})


def tuned_language_model(lm: torch.nn.Module, tower_state: dict[str, torch.Tensor], n_layers: int) -> torch.nn.Module:
    """A copy of the LM whose top `n_layers` carry a fine-tuned LMTower's weights: how that hybrid reads a new text."""
    from rrec_core.lm.encoder import transformer_layers

    tuned = copy.deepcopy(lm)
    layers = transformer_layers(tuned)
    for i in range(n_layers):
        prefix = f"layers.{i}."
        layers[len(layers) - n_layers + i].load_state_dict({k[len(prefix):]: v for k, v in tower_state.items()
                                                            if k.startswith(prefix)})
    return tuned.eval()


def evaluate_text_attacks(split: Split, items: pd.DataFrame, encoder_config: dict, models: dict[str, Recommender],
                          cfg: TextAttackConfig, template: str, towers: dict[str, dict] | None = None,
                          guard: NewItemGuardConfig | None = None) -> tuple[TextAttackResult, dict[str, float]]:
    """(the result, seconds per model). models: name -> trained model ("pretrained/text_hybrid",
    "adversarial/text_hybrid", "pretrained/mf_bpr", ...); the first text hybrid is also evaluated with its
    targets cold (and, with `guard` enabled, cold through a NewItemGuard). towers: name -> fine-tuned LM
    layers of that model (their text goes through them)."""
    from rrec_core.lm.encoder import encode_texts, item_texts, load_language_model
    from rrec_core.poisoning.shilling import select_targets

    if not cfg.enabled:
        return TextAttackResult(enabled=False), {}
    frame = split.to_frame()
    train = frame[frame["part"] == "train"][["user_id", "item_id"]]
    n_targets = max(1, round(cfg.target_share * split.n_items))
    target_ids = select_targets(train, n_targets, cfg.target_quantiles, cfg.target_min_count, cfg.seed)
    index = {i: k for k, i in enumerate(split.item_ids)}
    targets = [index[t] for t in target_ids]
    enc_cfg = EncoderConfig(**encoder_config)
    tokenizer, lm = load_language_model(enc_cfg)
    lm.eval()
    neighbours = WordNeighbours(tokenizer, lm)
    popular = train["item_id"].value_counts().index[:cfg.imitation_items].map(index).tolist()
    words = imitation_words(items, popular)
    specs = {"char": TextAttackSpec("char", cfg.char_budget, cfg.candidates),
             "word": TextAttackSpec("word", cfg.word_budget, cfg.candidates),
             "imitation": TextAttackSpec("imitation", cfg.imitation_budget, cfg.candidates),
             "hotflip": TextAttackSpec("hotflip", cfg.hotflip_budget, cfg.candidates)}

    def texts_with(t: int, titles: list[str]) -> list[str]:
        rows = pd.DataFrame([items.iloc[t].to_dict()] * len(titles))
        rows["title"] = titles
        return item_texts(rows, template)

    readers: dict[str, torch.nn.Module] = {}
    for name, m in models.items():
        tuned = (towers or {}).get(name)
        layers = m.meta.get("config", {}).get("lm_finetune_layers", 0) if tuned else 0
        readers[name] = tuned_language_model(lm, tuned, layers) if tuned and layers else lm

    settings: list[tuple[str, TextHybrid | Recommender, bool]] = []
    for name, m in models.items():
        settings.append((name, m, False))
    first_hybrid = next((n for n, m in models.items() if isinstance(m, TextHybrid)), None)
    if first_hybrid is not None:
        cold = copy.deepcopy(models[first_hybrid])
        assert isinstance(cold, TextHybrid)
        cold.set_item_id_mask(torch.as_tensor(np.setdiff1d(np.arange(split.n_items), targets)))
        cold.fit_cold_map()  # the ID rows of new items, generated from text, fitted on every other item
        settings.append((f"{first_hybrid} (targets cold)", cold, True))
        readers[f"{first_hybrid} (targets cold)"] = readers[first_hybrid]
        if guard is not None and guard.enabled:
            guarded = copy.deepcopy(cold)
            guarded.fit_new_item_guard(guard.rest_quantile, guard.level_quantile, guard.cap_level)
            settings.append((f"{first_hybrid} (targets cold, guarded)", guarded, True))
            readers[f"{first_hybrid} (targets cold, guarded)"] = readers[first_hybrid]

    result = TextAttackResult(targets=target_ids)
    flippers: dict[int, HotFlip] = {}  # one per reading LM
    encoded: dict[int, dict[str, torch.Tensor]] = {}  # reader -> text -> its LM vector
    seconds: dict[str, float] = {}
    ev = EvalConfig(ks=(10,))
    for name, model, cold_targets in settings:
        t0 = time.perf_counter()
        model.eval()
        reads_text = isinstance(model, TextHybrid)
        with torch.no_grad():  # the attacks search; no gradient reaches the model
            U = model.user_vectors(torch.arange(split.n_users))
            V = model.item_vectors()
            exposure = Exposure(U, V, split, targets, cfg.objective_k)
            clean = [exposure.of(t, V[t]) for t in targets]
            result.mean_audience = float(np.mean([len(exposure.audience[t]) for t in targets]))
            row = TextAttackModel(reads_text=reads_text, targets_cold=cold_targets,
                                  new_item_guard=isinstance(model, TextHybrid) and model.new_item_guard_in_use() is not None,
                                  clean_test_ndcg10=round(evaluate_model(model, split, "test", ev)["ndcg@10"], 6),
                                  clean=_mean(clean))
            reader = readers[name]

            def encode(t: int, titles: list[str], reader: torch.nn.Module = reader) -> torch.Tensor:
                # the settings that read through the same LM search from the same titles (the same first
                # candidates): each text is encoded once per reader
                cache = encoded.setdefault(id(reader), {})
                texts = texts_with(t, titles)
                todo = list(dict.fromkeys(x for x in texts if x not in cache))
                if todo:
                    cache.update(zip(todo, encode_texts(todo, tokenizer, reader, enc_cfg, progress=False)))
                return torch.stack([cache[x] for x in texts])

            if id(reader) not in flippers:
                flippers[id(reader)] = HotFlip(tokenizer, reader, enc_cfg.max_length, enc_cfg.normalize, neighbours)
            flipper = flippers[id(reader)]

            for kind, spec in specs.items():
                attacked, defended, outcomes, sims = [], [], [], []
                new_features = torch.as_tensor(model.text_features).clone() if reads_text else None
                for t in targets:
                    title = str(items.iloc[t]["title"])

                    def objective(titles: list[str], t: int = t, model: Recommender = model,
                                  exposure: Exposure = exposure, reads_text: bool = reads_text) -> torch.Tensor:
                        # a model that reads no text gives every title the same vector: nothing to encode
                        feats = encode(t, titles) if reads_text else torch.zeros(len(titles), 1)
                        return exposure.objective(t, vectors_for_features(model, t, feats))

                    def propose(current: str, n: int, t: int = t, model: Recommender = model, exposure: Exposure = exposure,
                                flipper: HotFlip = flipper, reads_text: bool = reads_text) -> list[str]:
                        if not reads_text:  # no gradient reaches a model that reads no text
                            return []
                        return flipper.propose(current, texts_with(t, [current])[0],
                                               lambda vec: exposure.objective(t, vectors_for_features(model, t, vec))[0],
                                               n)

                    out = greedy_text_attack(title, spec, objective, neighbours, words, seed=cfg.seed + t,
                                             propose=propose)
                    f_att, f_san, f_clean = encode(t, [out.title, sanitize_text(out.title)[0], title])
                    v = vectors_for_features(model, t, torch.stack([f_att, f_san]))
                    attacked.append(exposure.of(t, v[0]))
                    defended.append(exposure.of(t, v[1]))
                    sims.append(float(torch.nn.functional.cosine_similarity(f_att, f_clean, dim=0)))
                    if reads_text and float(torch.nn.functional.cosine_similarity(
                            f_clean, torch.as_tensor(model.text_features)[t], dim=0)) < 0.999:
                        raise AssertionError(f"{name}: re-encoding item {split.item_ids[t]}'s clean text does not give "
                                             "the vector the model was trained on (encoder or template differ)")
                    outcomes.append((title, out))
                    if new_features is not None:
                        new_features[t] = f_att
                # the model's test quality with every attacked title in place
                tampered = copy.deepcopy(model)
                if isinstance(tampered, TextHybrid) and new_features is not None:
                    tampered.set_text_features(new_features)
                und, san = _mean(attacked), _mean(defended)
                row.attacks[kind] = TextAttackRow(
                    budget=spec.budget, undefended=und, sanitized=san,
                    hr50_gain=round(und.hr50 - row.clean.hr50, 6), sanitized_hr50_gain=round(san.hr50 - row.clean.hr50, 6),
                    test_ndcg10=round(evaluate_model(tampered, split, "test", ev)["ndcg@10"], 6),
                    edit_distance=round(float(np.mean([o.edit_distance for _, o in outcomes])), 3),
                    lm_similarity=round(float(np.mean(sims)), 4),
                    survives_sanitizer=round(float(np.mean([survives_sanitizer(c, o.title) for c, o in outcomes])), 4),
                    steps=round(float(np.mean([o.steps for _, o in outcomes])), 3),
                    examples=[{"item_id": split.item_ids[t], "clean": c, "attacked": o.title}
                              for t, (c, o) in list(zip(targets, outcomes))[:3]])
                log.info("text attack %s on %s: HR@50 %.4f -> %.4f (sanitized %.4f)", kind, name, row.clean.hr50,
                         und.hr50, san.hr50)
        result.models[name] = row
        seconds[name] = round(time.perf_counter() - t0, 2)
    return result, seconds
