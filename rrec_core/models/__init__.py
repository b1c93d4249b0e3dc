"""Recommenders behind one interface: `score(users) -> [B, n_items]`, embedding tables for attacks."""
from rrec_core.models.base import Recommender, load_recommender, save_recommender
from rrec_core.models.hybrid import TextHybrid
from rrec_core.models.mf import MFBPR

MODEL_TYPES = {"mf_bpr": MFBPR, "text_hybrid": TextHybrid}

__all__ = ["MODEL_TYPES", "MFBPR", "Recommender", "TextHybrid", "load_recommender", "save_recommender"]
