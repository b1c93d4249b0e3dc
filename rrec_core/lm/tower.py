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
        # the cache is padded to the catalogue's longest text; these items need only their own longest
        t = int(m.nonzero()[:, 1].max()) + 1 if m.numel() and bool(m.any()) else m.shape[1]
        h, m = h[:, :t], m[:, :t]
        additive = (1.0 - m[:, None, None, :].to(h.dtype)) * torch.finfo(h.dtype).min
        for layer in self.layers:
            out = layer(h, attention_mask=additive)
            h = out[0] if isinstance(out, tuple) else out
        emb = mean_pool(h, m)
        return torch.nn.functional.normalize(emb, dim=-1) if self.normalize else emb



class LaggedTower:
    """The tuned layers trained from summed feature gradients: one catalogue pass per `every` steps.

    Running the tuned layers end to end on every batch costs two passes over ~4k items per step on
    ML-100K (about 1.3 TFLOP, a quarter of an hour per epoch on 2 cores; docs/cold_start.md). Here the
    catalogue's text vectors are computed once and held fixed for `every` steps as a leaf tensor; each
    step's backward sums the loss gradient into it; then one backward through the tuned layers turns
    the mean of those gradients into the layers' gradient, they take one Adam step, and the vectors are
    recomputed. With every=1 that is exactly the end-to-end gradient (tests/test_encoder.py); larger
    windows see vectors up to `every - 1` steps stale, in exchange for `every` times fewer passes. The
    layers run without dropout, so the recomputed forward is the one whose gradient was summed.
    """

    def __init__(self, tower: LMTower, every: int, lr: float, weight_decay: float = 0.0, chunk: int = 256) -> None:
        if every < 1:
            raise ValueError(f"lm_update_every={every}: a lagged tower updates every 1 or more steps")
        self.tower, self.every, self.chunk = tower.eval(), every, chunk
        self.opt = torch.optim.Adam(tower.trainable_parameters(), lr=lr, weight_decay=weight_decay)
        self.pending = 0
        self.updates = 0
        self.features = self._encode()

    def _encode(self) -> torch.Tensor:
        with torch.no_grad():
            n = self.tower.hidden.shape[0]
            parts = [self.tower(torch.arange(s, min(s + self.chunk, n), device=self.tower.hidden.device))
                     for s in range(0, n, self.chunk)]
        return torch.cat(parts).requires_grad_(True)

    def __call__(self, items: torch.Tensor | None, token_states: torch.Tensor | None = None) -> torch.Tensor:
        if token_states is not None:
            raise ValueError("text-side attacks need the tuned layers end to end (lm_update_every: 0)")
        return self.features if items is None else self.features[items]

    def backward_into_tower(self) -> None:
        """The tuned layers' gradient of the mean loss of the pending steps (held vectors)."""
        grad = self.features.grad
        if grad is None:
            return
        grad = grad / max(self.pending, 1)
        n = grad.shape[0]
        for s in range(0, n, self.chunk):
            rows = torch.arange(s, min(s + self.chunk, n), device=grad.device)
            if bool(grad[rows].any()):
                self.tower(rows).backward(grad[rows])

    def step(self) -> None:
        """Call after each training step: every `every` steps the tuned layers move."""
        self.pending += 1
        if self.pending >= self.every:
            self.flush()

    def flush(self) -> None:
        if self.pending == 0:
            return
        self.backward_into_tower()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.pending, self.updates = 0, self.updates + 1
        self.features = self._encode()
