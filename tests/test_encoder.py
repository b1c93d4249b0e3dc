import pandas as pd
import pytest
import torch

from rrec_core.config import EncoderConfig
from rrec_core.lm.encoder import embed_items, encode_texts, item_texts, load_language_model, mean_pool


def test_mean_pool_ignores_padding():
    h = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    m = torch.tensor([[1, 1, 0]])
    assert torch.allclose(mean_pool(h, m), torch.tensor([[2.0, 2.0]]))


def test_item_texts_template_and_missing_fields():
    items = pd.DataFrame({"item_id": ["1"], "title": ["Heat"], "year": pd.array([pd.NA], dtype="Int64"),
                          "genres": ["Action"]})
    assert item_texts(items, "{title} ({year}). Genres: {genres}.") == ["Heat (). Genres: Action."]
    with pytest.raises(ValueError, match="director"):
        item_texts(items, "{director}")


def test_encode_matches_unbatched_and_is_order_stable(tiny_bert):
    cfg = EncoderConfig(model=str(tiny_bert), batch_size=2, device="cpu", normalize=False)
    tok, lm = load_language_model(cfg)
    texts = ["movie comedy number 3", "drama", "movie horror number 12 genres horror", "sci fi"]
    batched = encode_texts(texts, tok, lm, cfg, progress=False)
    single = torch.cat([encode_texts([t], tok, lm, cfg, progress=False) for t in texts])
    assert batched.shape == (4, 32)
    assert torch.allclose(batched, single, atol=1e-5)


def test_embed_items_caches_by_model_and_text(tiny_bert, tmp_path):
    items = pd.DataFrame({"item_id": ["1", "2"], "title": ["movie comedy", "drama"],
                          "year": pd.array([1995, 1996], dtype="Int64"), "genres": ["Comedy", "Drama"]})
    cfg = EncoderConfig(model=str(tiny_bert), cache_dir=str(tmp_path / "cache"), device="cpu")
    first = embed_items(items, cfg, progress=False)
    again = embed_items(items, cfg, progress=False)
    assert not first.from_cache and again.from_cache
    assert torch.equal(first.embeddings, again.embeddings)
    assert torch.allclose(first.embeddings.norm(dim=-1), torch.ones(2), atol=1e-5)  # normalize=True
    changed = embed_items(items.assign(title=["movie horror", "drama"]), cfg, progress=False)
    assert not changed.from_cache and changed.cache_key != first.cache_key


def test_packaged_model_resolves_offline():
    from rrec_core.lm.encoder import resolve_model_path

    path = resolve_model_path("packaged:all-MiniLM-L6-v2")
    assert (torch.__version__ and __import__("pathlib").Path(path, "config.json").exists())


def test_tuned_tower_on_cached_states_matches_a_full_forward(tiny_bert):
    """The tower runs only the tuned top layer on hidden states cached once; its item vectors and the
    gradients of a loss on them equal those of the whole LM run end to end with the bottom frozen."""
    from rrec_core.lm.encoder import load_language_model, mean_pool
    from rrec_core.lm.tower import LMTower

    texts = ["movie number 1 (1995). genres: comedy.", "movie 7", "movie number 12 (1990). genres: drama | horror."]
    cfg = EncoderConfig(model=str(tiny_bert), device="cpu")
    tower = LMTower(texts, cfg, n_layers=1)
    tok, lm = load_language_model(cfg)
    for p in lm.parameters():
        p.requires_grad_(False)
    top = lm.encoder.layer[-1]
    top.load_state_dict(tower.layers[0].state_dict())
    for p in top.parameters():
        p.requires_grad_(True)
    enc = tok(texts, padding=True, return_tensors="pt")
    full = torch.nn.functional.normalize(mean_pool(lm(**enc).last_hidden_state, enc["attention_mask"]), dim=-1)
    cached = tower(None)
    assert torch.allclose(cached, full, atol=1e-5)
    weights = torch.linspace(-1, 1, full.numel()).reshape(full.shape)
    (full * weights).sum().backward()
    (cached * weights).sum().backward()
    for (name, a), b in zip(top.named_parameters(), tower.layers[0].parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-5), name
    # and a batch of items reads the same rows as the whole catalogue
    assert torch.allclose(tower(torch.tensor([2, 0])), cached[[2, 0]], atol=1e-5)


def test_lagged_tower_gives_the_end_to_end_gradient_and_trains(tiny_bert):
    """Held text vectors + one backward through the tuned layer per window: with a window of 1 the
    tuned layer's gradient is the end-to-end one; with a window of 3 the layer moves once per 3 steps,
    and the vectors the model reads are always the tuned layer's current output."""
    from rrec_core.lm.tower import LaggedTower, LMTower
    from rrec_core.models import TextHybrid

    texts = [f"movie {g} number {i}" for i, g in enumerate(["comedy", "drama", "horror", "romance"] * 3)]
    cfg = EncoderConfig(model=str(tiny_bert), device="cpu")
    torch.manual_seed(0)
    tower = LMTower(texts, cfg, n_layers=1).eval()
    model = TextHybrid(n_users=6, n_items=len(texts), text_dim=32, dim=8, text_dropout=0.0)
    with torch.no_grad():  # a projection that reads the text (the zero init has no text gradient)
        model.text_proj.weight.normal_(0, 0.5)
    g = torch.Generator().manual_seed(1)
    u, p, n = (torch.randint(6, (20,), generator=g), torch.randint(len(texts), (20,), generator=g),
               torch.randint(len(texts), (20,), generator=g))
    model.text_override = tower
    exact = torch.autograd.grad(model.bpr_loss(u, p, n), tower.trainable_parameters())
    lagged = LaggedTower(tower, every=1, lr=1e-2)
    model.set_text_source(lagged)
    model.bpr_loss(u, p, n).backward()
    lagged.backward_into_tower()
    for a, b in zip(exact, tower.trainable_parameters()):
        assert torch.allclose(a, b.grad, atol=1e-6)
    tower.zero_grad(set_to_none=True)

    lagged = LaggedTower(tower, every=3, lr=1e-2)
    model.set_text_source(lagged)
    before = [q.detach().clone() for q in tower.trainable_parameters()]
    for step in range(1, 7):
        model.bpr_loss(u, p, n).backward()
        lagged.step()
        moved = any(not torch.equal(a, b) for a, b in zip(before, tower.trainable_parameters()))
        assert moved == (step >= 3) and lagged.updates == step // 3
        with torch.no_grad():
            assert torch.allclose(lagged(None), tower(None), atol=1e-6)
    with pytest.raises(ValueError, match="end to end"):
        lagged(None, token_states=tower.token_states(None))
