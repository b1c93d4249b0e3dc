"""White-box attacks on a recommender's user and item representations.

pairwise: FGSM / PGD maximizing the BPR loss of held-out (positive, sampled negative) pairs - the
          proxy adversarial training optimizes;
ranking:  PGD aimed at the ranked list itself (listwise cross-entropy of the held-out positives over
          all candidates; the margin of each held-out positive to the k-th best candidate), with random
          restarts, best-iterate tracking and a step-size schedule.
"""
from rrec_core.attacks.pairwise import (
           Attack,
           Norm,
           bpr_gradients,
           bpr_loss,
           norm_stats,
           perturbations,
           radius,
           sample_attack_pairs,
)

__all__ = ["Attack", "Norm", "bpr_gradients", "bpr_loss", "norm_stats", "perturbations", "radius",
           "sample_attack_pairs"]
