"""The new-item guard: what text can and cannot set of a new item's vector, and how the hybrid serves it."""
import torch

from rrec_core.models import TextHybrid, load_recommender, save_recommender
from rrec_core.models.new_items import NewItemGuard


def _fitted(seed: int = 0, quantile: float | None = 0.9) -> tuple[NewItemGuard, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    users = torch.randn(50, 8, generator=g) + 1.0  # a mean direction every user shares
    items = torch.randn(40, 8, generator=g) * torch.rand(40, 1, generator=g) * 3
    return NewItemGuard.fit(users, items, quantile), users, items


def test_no_text_can_move_the_audience_wide_component_or_exceed_the_cap():
    guard, users, items = _fitted()
    d = users.mean(0) / users.mean(0).norm()
    assert torch.allclose(guard.direction, d)
    v = torch.randn(30, 8, generator=torch.Generator().manual_seed(1)) * 10
    out = guard(v)
    # every new item is served at one level along the users' mean direction, whatever its text asked for
    assert torch.allclose(out @ d, torch.full((30,), guard.level), atol=1e-5)
    assert torch.allclose(guard(v + 7.0 * d), out, atol=1e-5)
    rest = out - (out @ d)[:, None] * d
    assert float(rest.norm(dim=1).max()) <= guard.max_rest_norm + 1e-5
    # the level is the trained items' median along d, the cap their 90th percentile of the rest
    along = items @ d
    assert abs(guard.level - float(torch.quantile(along, 0.5))) < 1e-6
    assert abs(guard.max_rest_norm - float(torch.quantile((items - along[:, None] * d).norm(dim=1), 0.9))) < 1e-5


def test_a_level_ceiling_lets_text_lower_a_new_item_but_not_raise_it_above():
    g = torch.Generator().manual_seed(3)
    users = torch.randn(50, 8, generator=g) + 1.0
    items = torch.randn(40, 8, generator=g) * 2
    guard = NewItemGuard.fit(users, items, None, level_quantile=0.75, cap_level=True)
    d = guard.direction
    assert abs(guard.level - float(torch.quantile(items @ d, 0.75))) < 1e-6
    v = torch.randn(20, 8, generator=g) * 3
    out = guard(v)
    assert torch.allclose(out @ d, (v @ d).clamp(max=guard.level), atol=1e-5)
    assert torch.allclose(guard(v + 50.0 * d) @ d, torch.full((20,), guard.level), atol=1e-4)


def test_a_taste_part_under_the_cap_keeps_its_direction_and_size():
    guard, _, _ = _fitted(quantile=None)
    assert guard.max_rest_norm is None
    d = guard.direction
    v = torch.randn(5, 8, generator=torch.Generator().manual_seed(2)) * 100
    out = guard(v)
    assert torch.allclose(out - (out @ d)[:, None] * d, v - (v @ d)[:, None] * d, atol=1e-4)


def test_the_hybrid_guards_only_its_cold_items_and_keeps_the_guard_when_saved(tmp_path):
    torch.manual_seed(0)
    m = TextHybrid(20, 12, text_dim=6, dim=4)
    m.set_text_features(torch.randn(12, 6))
    with torch.no_grad():
        m.text_proj.weight.normal_()
    m.eval()
    m.set_item_id_mask(torch.arange(9))  # items 9, 10, 11 are new
    m.fit_cold_map()
    before = m.item_vectors().detach().clone()
    guard = NewItemGuard.fit(m.user_vectors(torch.arange(20)).detach(), before[:9], 0.5)
    m.set_new_item_guard(guard)
    after = m.item_vectors().detach()
    assert torch.equal(after[:9], before[:9])  # warm items: bit for bit
    assert torch.allclose(after[9:], guard(before[9:]), atol=1e-6) and not torch.allclose(after[9:], before[9:])
    feats = torch.randn(3, 6)
    assert torch.allclose(m.item_vectors_for_features(10, feats), guard(_unguarded(m, 10, feats)), atol=1e-6)
    assert torch.equal(m.item_vectors_for_features(2, feats), _unguarded(m, 2, feats))  # a warm item
    save_recommender(m, tmp_path / "m")
    loaded = load_recommender(tmp_path / "m")
    assert torch.allclose(loaded.item_vectors(), after, atol=1e-6)
    m.fit_new_item_guard(None, 0.9, cap_level=True)  # the ceiling mode survives saving too
    save_recommender(m, tmp_path / "c")
    restored = load_recommender(tmp_path / "c").new_item_guard_in_use()
    assert restored is not None and restored.cap_level and restored.max_rest_norm is None
    m.set_new_item_guard(None)
    assert m.new_item_guard_in_use() is None and torch.allclose(m.item_vectors(), before, atol=1e-6)


def _unguarded(m: TextHybrid, item: int, feats: torch.Tensor) -> torch.Tensor:
    saved = m.new_item_guard.clone()
    m.set_new_item_guard(None)
    try:
        return m.item_vectors_for_features(item, feats).detach()
    finally:
        m.new_item_guard.copy_(saved)
