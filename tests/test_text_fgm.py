"""Text-side FGM of adversarial fine-tuning: the LM's token states are really perturbed, along the
loss gradient (the end-to-end test only shows that the tuned tower is carried over)."""
import pytest
import torch

from rrec_core.attacks import bpr_loss
from rrec_core.config import AdversarialConfig, EncoderConfig
from rrec_core.lm.tower import LMTower
from rrec_core.models import TextHybrid
from rrec_core.training.adversarial import AdversarialLoss

TEXTS = [f"movie {g} number {i}" for i, g in enumerate(["comedy", "drama", "horror", "romance", "action"] * 4)]


@pytest.fixture()
def hybrid_with_tower(tiny_bert):
    torch.manual_seed(0)
    tower = LMTower(TEXTS, EncoderConfig(model=str(tiny_bert), device="cpu"), n_layers=1)
    model = TextHybrid(n_users=8, n_items=len(TEXTS), text_dim=32, dim=16, text_dropout=0.0)
    with torch.no_grad():  # a trained hybrid reads its text: a zero projection (the init) has no text gradient
        model.text_proj.weight.normal_(0, 0.5)
    model.text_override = tower
    model.eval()
    g = torch.Generator().manual_seed(1)
    u = torch.randint(8, (64,), generator=g)
    p = torch.randint(len(TEXTS), (64,), generator=g)
    n = torch.randint(len(TEXTS), (64,), generator=g)
    return model, tower, u, p, n


def _loss(model, text_eps):
    # eps 0: no embedding perturbation, so the only adversary is the text-side FGM
    return AdversarialLoss(AdversarialConfig(eps=0.0, text_eps=text_eps, clean_weight=0.0))


def test_text_fgm_raises_the_loss_more_than_random_noise(hybrid_with_tower):
    model, tower, u, p, n = hybrid_with_tower
    clean = model.bpr_loss(u, p, n).item()
    assert _loss(model, 0.0)(model, u, p, n).item() == pytest.approx(clean, rel=1e-6)
    attacked = _loss(model, 0.5)(model, u, p, n).item()
    assert attacked > clean + 1e-3
    # same per-token L2 radius, random direction: FGM must beat it (first-order worst case)
    items = torch.unique(torch.cat([p, n]))
    tokens = tower.token_states(items)
    noise = torch.randn(tokens.shape, generator=torch.Generator().manual_seed(2))
    noise = 0.5 * noise / noise.norm(dim=-1, keepdim=True)
    V = model.item_embedding(items) + model.text_vectors(items, token_states=tokens + noise)
    pos, neg = torch.searchsorted(items, p), torch.searchsorted(items, n)
    with torch.no_grad():
        random = bpr_loss(model.user_vectors(u), V[pos], V[neg]).item()
    assert attacked > random


def test_text_fgm_grows_with_its_radius(hybrid_with_tower):
    model, _, u, p, n = hybrid_with_tower
    losses = [_loss(model, r)(model, u, p, n).item() for r in (0.0, 0.1, 0.3, 0.6)]
    assert losses == sorted(losses) and losses[-1] > losses[0] + 1e-3
