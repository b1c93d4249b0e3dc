"""The language model's top layers, fine-tuned inside the text hybrid."""
from __future__ import annotations

import torch

from rrec_core.config import EncoderConfig
from rrec_core.lm.encoder import load_language_model, mean_pool, transformer_layers


class LMTower(torch.nn.Module):
    """The language model's top N transformer layers, fine-tuned inside the recommender (transfer learning).

    The frozen bottom of the LM runs once: its hidden states at the input of the first tuned layer are
    cached for every item ([n_items, T, H], T trimmed to the longest item text), so each training step
    pays only for the N tuned layers on the batch's items.
    """

    def __init__(self, texts: list[str], enc_cfg: EncoderConfig, n_layers: int) -> None:
        super().__init__()
        tokenizer, lm = load_language_model(enc_cfg)
        layers = transformer_layers(lm)
        if not 0 < n_layers <= len(layers):
            raise ValueError(f"lm_finetune_layers={n_layers}: the model has {len(layers)} layers")
        self.normalize = enc_cfg.normalize
        self.layers = torch.nn.ModuleList(list(layers)[len(layers) - n_layers:])
        enc = tokenizer(texts, padding="longest", truncation=True, max_length=enc_cfg.max_length, return_tensors="pt")
        with torch.no_grad():
            hidden = lm(**enc, output_hidden_states=True).hidden_states[len(layers) - n_layers]
        self.register_buffer("hidden", hidden.float(), persistent=False)
        self.register_buffer("mask", enc["attention_mask"], persistent=False)

    def trainable_parameters(self) -> list[torch.nn.Parameter]:
        return list(self.layers.parameters())

    def token_states(self, items: torch.Tensor | None) -> torch.Tensor:
        """[n, T, H] cached token representations entering the first tuned layer."""
        return self.hidden if items is None else self.hidden[items]

    def forward(self, items: torch.Tensor | None, token_states: torch.Tensor | None = None) -> torch.Tensor:
        """Item vectors from the tuned layers; `token_states` replaces the cached input (text-side FGM)."""
        h = self.token_states(items) if token_states is None else token_states
        m = self.mask if items is None else self.mask[items]
        additive = (1.0 - m[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        for layer in self.layers:
            out = layer(h, attention_mask=additive)
            h = out[0] if isinstance(out, tuple) else out
        emb = mean_pool(h, m)
        return torch.nn.functional.normalize(emb, dim=-1) if self.normalize else emb

