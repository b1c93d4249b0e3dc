"""Data poisoning: heuristic shilling attacks, a pre-training screen that flags fake users, and
metrics for both the screen (precision / recall) and the attack's effect on a trained recommender.

See docs/poisoning.md for the definitions and measured numbers.
"""
from rrec_core.poisoning.gan import (
                                     GanResult,
                                     gan_attack,
                                     generate_profiles,
                                     load_generator,
                                     save_generator,
                                     stealth_stats,
                                     train_gan,
)
from rrec_core.poisoning.metrics import detection_metrics, poisoning_metrics, prediction_shift, target_ranks
from rrec_core.poisoning.screen import ScreenConfig, ScreenResult, profile_features, robust_z, screen_users
from rrec_core.poisoning.shilling import (
                                     ATTACKS,
                                     PoisonedData,
                                     ShillingConfig,
                                     inject_attack,
                                     item_popularity,
                                     select_targets,
)

__all__ = ["GanResult", "gan_attack", "generate_profiles", "load_generator", "save_generator", "stealth_stats",
           "train_gan", "ATTACKS", "PoisonedData", "ScreenConfig", "ScreenResult", "ShillingConfig", "detection_metrics",
           "inject_attack", "item_popularity", "poisoning_metrics", "prediction_shift", "profile_features",
           "robust_z", "screen_users", "select_targets", "target_ranks"]
