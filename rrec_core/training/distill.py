"""Ranking distillation: a student learns the teacher's soft ranking beside the data (docs/distillation.md).

The teacher's user and item vectors are materialized once (a trained recommender scores by a dot
product), so each training step costs the teacher one gather, never a language-model forward. Per
batch user the student matches the teacher's softmax over a candidate list: the teacher's top-k items
(training history masked: what the teacher would recommend) and random items (where the rest ranks),
with KL(teacher || student) at temperature tau, scaled by tau^2 (Hinton et al. 2015) so the weight
means the same at any temperature. The data loss stays: loss = BPR + weight * KD.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rrec_core.models import Recommender


@dataclass
class TeacherRanking:
    """What the student learns from: the teacher's materialized vectors and each user's top-k."""

    users: torch.Tensor  # [n_users, d] teacher user vectors
    items: torch.Tensor  # [n_items, d] teacher item vectors
    top: torch.Tensor  # [n_users, k] the teacher's best items per user, training history masked

    def to(self, device: torch.device | str) -> "TeacherRanking":
        return TeacherRanking(self.users.to(device), self.items.to(device), self.top.to(device))

    def scores(self, users: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """[B, C] teacher scores of each user's candidates."""
        return (self.users[users].unsqueeze(1) * self.items[candidates]).sum(-1)


@torch.no_grad()
def teacher_ranking(teacher: Recommender, train: np.ndarray, k: int, batch_users: int = 1024) -> TeacherRanking:
    """Materialize the teacher and take its top-k of every user, the user's training items excluded."""
    teacher.eval()
    device = next(teacher.parameters()).device
    users = teacher.user_vectors(torch.arange(teacher.n_users, device=device)).detach().float().cpu()
    items = teacher.item_vectors().detach().float().cpu()
    k = min(k, teacher.n_items)
    pairs = torch.as_tensor(np.asarray(train, dtype=np.int64)).reshape(-1, 2)
    top = torch.empty(teacher.n_users, k, dtype=torch.long)
    for start in range(0, teacher.n_users, batch_users):
        block = users[start:start + batch_users] @ items.T
        in_block = (pairs[:, 0] >= start) & (pairs[:, 0] < start + len(block))
        block[pairs[in_block, 0] - start, pairs[in_block, 1]] = float("-inf")
        top[start:start + len(block)] = torch.topk(block, k, dim=1).indices
    return TeacherRanking(users, items, top)


def ranking_distillation(student: Recommender, users: torch.Tensor, teacher: TeacherRanking, n_random: int,
                         temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """tau^2 * mean over the distinct `users` of KL(softmax(teacher / tau) || softmax(student / tau)) over
    each user's candidates: the teacher's top-k and `n_random` uniform items."""
    users = torch.unique(users)
    cand = teacher.top[users]
    if n_random > 0:
        rand = torch.randint(0, teacher.items.shape[0], (len(users), n_random), generator=generator)
        cand = torch.cat([cand, rand.to(cand.device)], 1)
    with torch.no_grad():
        p_teacher = torch.softmax(teacher.scores(users, cand) / temperature, dim=1)
    u = student.user_vectors(users)
    # each distinct candidate item once (a batch's lists share most of the catalogue): 1 row per item, not
    # per (user, candidate), which made the hybrid's text projection the step's main cost
    items, where = torch.unique(cand, return_inverse=True)
    v = student.item_vectors(items)[where]
    log_p_student = torch.log_softmax((u.unsqueeze(1) * v).sum(-1) / temperature, dim=1)
    kl = (p_teacher * (torch.log(p_teacher.clamp_min(1e-12)) - log_p_student)).sum(1)
    return temperature ** 2 * kl.mean()


class DistillationLoss:
    """The student's batch loss for training.loop.train_recommender: BPR + weight * ranking distillation."""

    def __init__(self, teacher: TeacherRanking, weight: float, n_random: int, temperature: float, seed: int) -> None:
        if temperature <= 0:
            raise ValueError(f"distillation.temperature must be positive, got {temperature}")
        self.teacher, self.weight, self.n_random, self.temperature = teacher, weight, n_random, temperature
        self.generator = torch.Generator().manual_seed(seed)
        self._device: torch.device | None = None

    def __call__(self, model: Recommender, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
        loss = model.bpr_loss(users, pos, neg)
        if self.weight == 0:
            return loss
        if self._device != users.device:
            self.teacher, self._device = self.teacher.to(users.device), users.device
        return loss + self.weight * ranking_distillation(model, users, self.teacher, self.n_random, self.temperature,
                                                         self.generator)
