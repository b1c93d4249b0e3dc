"""rrec: a text-aware recommender trained and hardened against adversarial attacks.

Import what you need from the submodules; `load_recommender` is re-exported as the public contract.
"""
__version__ = "0.1.0"


def load_recommender(path, device="cpu"):
    """A saved model directory -> Recommender with score(users), embedding tables and raw id maps."""
    from rrec_core.models import load_recommender as _load

    return _load(path, device)
