"""Attacks on an item's text: a seller edits only the title of the item it wants promoted.

The attacker sees the trained text hybrid's scores (white-box in its scores, as ATR and TextSimu assume)
and the language model that encodes item text, and edits the target's title within a budget:

  char       typos, Cyrillic/Greek look-alike letters and zero-width characters (budget: characters edited);
  word       each word replaced by one of its nearest neighbours in the encoder's own token-embedding
             space (budget: words replaced);
  imitation  words from the titles and genres of the items the target's audience likes most appended
             to the title (budget: words added; popular-item imitation after TextSimu, no external LLM);
  hotflip    white-box, gradient-guided: each word of the title replaced by the whole-word token whose
             first-order gain in the objective (the gradient with respect to the encoder's input token
             embeddings, HotFlip after Ebrahimi et al. 2018) is largest (budget: words replaced).

Every attack is a greedy search: at each of `budget` steps it encodes a batch of single edits of the
current title (for hotflip, the edits the gradient ranks best) with the real encoder, scores each against the audience, and keeps the best (the search
stops early when no edit helps). The objective is a smooth HR@50 over the audience: the mean of
sigmoid((s_target - s_50th) / tau), s_50th each user's 50th best other score, tau the spread of those
cut-offs / 20; the exact HR@50 breaks ties. Stealth is measured on the result: character edit
distance, cosine similarity of the clean and attacked text under the same LM, and whether the
sanitizer of the validation stage restores the clean title.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Literal

import pandas as pd
import torch

from rrec_core.data.sanitize import sanitize_text

Kind = Literal["char", "word", "imitation", "hotflip"]

# Latin letters and the Cyrillic/Greek letters drawn the same (the sanitizer folds these back)
LOOKALIKES = {"a": "а", "c": "с", "e": "е", "i": "і", "o": "о", "p": "р", "x": "х", "y": "у", "A": "А", "B": "В",
              "C": "С", "E": "Е", "H": "Н", "K": "К", "M": "М", "O": "О", "P": "Р", "T": "Т", "X": "Х", "Y": "Υ"}
INVISIBLE = ("\u200b", "\u200c", "\u2060", "\u00ad")
_WORD = re.compile(r"[A-Za-z]{3,}")


@dataclass(frozen=True)
class TextAttackSpec:
    kind: Kind
    budget: int
    candidates: int = 48
    """Single edits tried per greedy step."""


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance in characters (insert, delete, substitute)."""
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_edits(title: str, rng: random.Random, n: int) -> list[str]:
    """`n` titles one character edit away: a look-alike letter, an invisible character, or a typo."""
    out: list[str] = []
    positions = [i for i, c in enumerate(title) if c.isalpha()]
    if not positions:
        return out
    for _ in range(n):
        i = rng.choice(positions)
        c = title[i]
        move = rng.random()
        if move < 0.4 and c in LOOKALIKES:
            out.append(title[:i] + LOOKALIKES[c] + title[i + 1:])
        elif move < 0.7:
            out.append(title[:i] + rng.choice(INVISIBLE) + title[i:])
        elif move < 0.85 and i + 1 < len(title):
            out.append(title[:i] + title[i + 1] + title[i] + title[i + 2:])  # swap neighbours
        else:
            out.append(title[:i] + title[i + 1:] if rng.random() < 0.5 else title[:i] + c + title[i:])
    return list(dict.fromkeys(out))


class WordNeighbours:
    """Nearest whole-word tokens of a word in the encoder's input embedding space (cosine)."""

    def __init__(self, tokenizer, lm, k: int = 8) -> None:
        vocab = tokenizer.get_vocab()
        self.words = [w for w, _ in sorted(vocab.items(), key=lambda x: x[1]) if w.isalpha() and len(w) >= 3]
        self.ids = torch.as_tensor([vocab[w] for w in self.words])
        table = lm.get_input_embeddings().weight.detach()[self.ids]
        self.table = torch.nn.functional.normalize(table.float(), dim=1)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.k = k

    def __call__(self, word: str) -> list[str]:
        i = self.index.get(word.lower())
        if i is None:
            return []
        sims = self.table @ self.table[i]
        sims[i] = -1
        best = sims.topk(self.k).indices.tolist()
        return [self.words[j].capitalize() if word[0].isupper() else self.words[j] for j in best]


def word_edits(title: str, neighbours: WordNeighbours, n: int, rng: random.Random) -> list[str]:
    out = []
    for m in _WORD.finditer(title):
        for alt in neighbours(m.group()):
            out.append(title[:m.start()] + alt + title[m.end():])
    rng.shuffle(out)
    return list(dict.fromkeys(out))[:n]


def imitation_words(items: pd.DataFrame, liked: list[int], limit: int = 64) -> list[str]:
    """Title and genre words of the `liked` items (internal indices into `items`), most frequent first."""
    counts: dict[str, int] = {}
    for i in liked:
        row = items.iloc[i]
        for w in _WORD.findall(f"{row['title']} {row.get('genres', '')}"):
            counts[w] = counts.get(w, 0) + 1
    return [w for w, _ in sorted(counts.items(), key=lambda x: -x[1])][:limit]


def imitation_edits(title: str, words: list[str], n: int) -> list[str]:
    present = set(title.split())
    return [f"{title} {w}" for w in words if w not in present][:n]


class HotFlip:
    """Candidate word substitutions ranked by the gradient of an objective with respect to the encoder's input
    token embeddings (white-box): replacing the word whose first token is t at position p by the whole-word
    token w changes the objective by about (E[w] - E[t]) . grad_p (HotFlip's first-order estimate; the greedy
    search then scores the best of them exactly). Only words of the title are edited; the rest of the item
    text (year, genres) is the template's."""

    def __init__(self, tokenizer, lm, max_length: int, normalize: bool, words: WordNeighbours) -> None:
        self.tokenizer, self.lm, self.max_length, self.normalize = tokenizer, lm, max_length, normalize
        self.words = words.words
        self.ids = words.ids
        self.table = lm.get_input_embeddings().weight.detach()[self.ids].float()  # [V, H]

    def propose(self, title: str, text: str, score: Callable[[torch.Tensor], torch.Tensor], n: int) -> list[str]:
        """The `n` single-word substitutions of `title` with the largest first-order gain. text: the item text
        rendered with `title` (it must contain it); score([1, H] text vector) -> a scalar to maximize."""
        from rrec_core.lm.encoder import mean_pool

        start = text.find(title)
        if start < 0:  # the template collapses runs of whitespace; such a title is left as it is
            return []
        enc = self.tokenizer([text], truncation=True, max_length=self.max_length, return_tensors="pt",
                             return_offsets_mapping=True)
        offsets = enc.pop("offset_mapping")[0].tolist()
        device = next(self.lm.parameters()).device
        enc = enc.to(device)
        embedding = self.lm.get_input_embeddings()
        with torch.enable_grad():
            states = embedding(enc["input_ids"]).detach().requires_grad_(True)
            hidden = self.lm(inputs_embeds=states, attention_mask=enc["attention_mask"]).last_hidden_state
            vec = mean_pool(hidden, enc["attention_mask"]).float()
            if self.normalize:
                vec = torch.nn.functional.normalize(vec, dim=-1)
            value = score(vec)
            if not value.requires_grad:  # a model that reads no text: no edit can move its score
                return []
            grad, = torch.autograd.grad(value, states, allow_unused=True)
        if grad is None:
            return []
        grad = grad[0].float().cpu()
        spans, positions = [], []
        for m in _WORD.finditer(title):
            a, b = start + m.start(), start + m.end()
            first = next((i for i, (s, e) in enumerate(offsets) if e > s and s >= a and e <= b), None)
            if first is not None:
                spans.append((m.start(), m.end()))
                positions.append(first)
        if not positions:
            return []
        g = grad[positions]  # [P, H]
        current = embedding.weight.detach()[enc["input_ids"][0, positions].cpu()].float()
        gain = g @ self.table.to(g).T - (current * g).sum(1, keepdim=True)  # [P, V]
        out: list[str] = []
        for flat in gain.flatten().argsort(descending=True).tolist():
            p, w = divmod(flat, len(self.words))
            a, b = spans[p]
            word = self.words[w]
            if word.lower() == title[a:b].lower():
                continue
            if title[a].isupper():
                word = word.capitalize()
            out.append(title[:a] + word + title[b:])
            if len(dict.fromkeys(out)) >= n:
                break
        return list(dict.fromkeys(out))[:n]


@dataclass
class TextAttackOutcome:
    title: str
    objective: float
    steps: int
    edit_distance: int


def greedy_text_attack(title: str, spec: TextAttackSpec, objective: Callable[[list[str]], torch.Tensor],
                       neighbours: WordNeighbours | None = None, imitation: list[str] | None = None,
                       seed: int = 0, propose: Callable[[str, int], list[str]] | None = None) -> TextAttackOutcome:
    """The best title the greedy search finds within the budget; objective(titles) -> [len(titles)] scores.
    propose(title, n): the hotflip attack's candidate edits of the current title."""
    rng = random.Random(seed)
    current = title
    best = float(objective([title])[0])
    steps = 0
    for _ in range(spec.budget):
        if spec.kind == "char":
            cands = char_edits(current, rng, spec.candidates)
        elif spec.kind == "word":
            assert neighbours is not None
            cands = word_edits(current, neighbours, spec.candidates, rng)
        elif spec.kind == "hotflip":
            assert propose is not None
            cands = propose(current, spec.candidates)
        else:
            cands = imitation_edits(current, imitation or [], spec.candidates)
        if not cands:
            break
        values = objective(cands)
        i = int(values.argmax())
        if float(values[i]) <= best + 1e-7:  # float noise of a batched matmul is no improvement
            break
        current, best, steps = cands[i], float(values[i]), steps + 1
    return TextAttackOutcome(current, best, steps, edit_distance(title, current))


def survives_sanitizer(clean: str, attacked: str) -> bool:
    """True when the validation stage's sanitizer does not restore the clean title."""
    return sanitize_text(attacked)[0] != sanitize_text(clean)[0]
