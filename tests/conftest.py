"""Shared fixtures: a tiny generated dataset in RecBole atomic format and a tiny BERT built from a config."""
import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
GENRES = ["Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi"]


def write_tiny_atomic(path: Path, n_users: int = 40, n_items: int = 60, per_user: int = 12, seed: int = 0) -> Path:
    """A dataset with structure to learn: users prefer items of 'their' genre cluster."""
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    item_genre = rng.integers(0, len(GENRES), n_items)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for u in range(1, n_users + 1):
        fav = u % len(GENRES)
        liked = np.flatnonzero(item_genre == fav)
        others = np.flatnonzero(item_genre != fav)
        n_fav = min(len(liked), int(per_user * 0.75))
        chosen = list(rng.choice(liked, n_fav, replace=False)) + list(rng.choice(others, per_user - n_fav, replace=False))
        for k, i in enumerate(chosen):
            lines.append(f"{u}\t{i + 1}\t{rng.integers(1, 6)}\t{880000000 + u * 1000 + k}")
    (path / f"{path.name}.inter").write_text("\n".join(lines) + "\n")
    items = ["item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq"]
    for i in range(n_items):
        items.append(f"{i + 1}\tmovie {GENRES[item_genre[i]].lower()} number {i + 1}\t{1990 + i % 10}\t{GENRES[item_genre[i]]}")
    (path / f"{path.name}.item").write_text("\n".join(items) + "\n")
    return path


def write_tiny_bert(path: Path) -> Path:
    """A 2-layer, 32-wide BERT with a word-level vocabulary, saved as a Hugging Face directory."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "movie", "number", "genres", ".", "(", ")", ":"]
    words += [g.lower() for g in GENRES] + ["-", "sci", "fi"] + [str(i) for i in range(0, 200)] + [str(y) for y in range(1990, 2000)]
    path.mkdir(parents=True, exist_ok=True)
    (path / "vocab.txt").write_text("\n".join(dict.fromkeys(words)) + "\n")
    tok = BertTokenizerFast(vocab=str(path / "vocab.txt"), do_lower_case=True)  # transformers 5 API
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(dict.fromkeys(words)), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=64)
    BertModel(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("bert") / "tiny-bert")


@pytest.fixture()
def tiny_data(tmp_path) -> Path:
    return write_tiny_atomic(tmp_path / "data" / "tiny")


@pytest.fixture(autouse=True, scope="session")
def _quiet_threads():
    import torch

    torch.set_num_threads(min(2, os.cpu_count() or 1))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
