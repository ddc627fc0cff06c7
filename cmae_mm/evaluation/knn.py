"""Weighted k-nearest-neighbour classification of frozen features.

The protocol of Wu et al., "Unsupervised Feature Learning via Non-Parametric Instance
Discrimination" (CVPR 2018, InstDisc, Sec. 3.4), as used by DINO (Caron et al., ICCV
2021, Sec. 4.1 and ``eval_knn.py``): features are L2-normalised; each query takes its
``k`` most cosine-similar bank features, each neighbour votes for its class with weight
``exp(s / T)``; the class scores are these summed votes.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F


def knn_class_scores(bank: torch.Tensor,
                     bank_labels: torch.Tensor,
                     queries: torch.Tensor,
                     num_classes: int,
                     k: int = 20,
                     temperature: float = 0.07,
                     chunk_size: int = 1024) -> torch.Tensor:
    """Weighted k-NN class scores of ``queries`` against a labelled ``bank``.

    Memory is bounded by ``chunk_size x N`` similarities: the queries are processed
    in chunks, so an ImageNet-sized bank (N = 1.28 M) needs ``chunk_size * N`` floats
    at a time besides the bank itself.

    Args:
        bank (torch.Tensor): Bank features (N, C), any scale (L2-normalised here).
        bank_labels (torch.Tensor): Their labels (N, ), int64 in [0, num_classes).
        queries (torch.Tensor): Query features (M, C), on the bank's device.
        num_classes (int): Number of classes.
        k (int): Neighbours per query (capped at N). Defaults to 20.
        temperature (float): T of the vote weight ``exp(s / T)``. Defaults to 0.07.
        chunk_size (int): Queries per similarity block. Defaults to 1024.

    Returns:
        torch.Tensor: Class scores (M, num_classes), float32; each row sums the
        weights of its ``k`` neighbours.
    """
    if bank.shape[0] != bank_labels.shape[0]:
        raise ValueError(f'bank has {bank.shape[0]} features but '
                         f'{bank_labels.shape[0]} labels')
    if k < 1 or temperature <= 0:
        raise ValueError(f'k-NN needs k >= 1 and temperature > 0, got k={k}, '
                         f'temperature={temperature}')
    k = min(k, bank.shape[0])
    bank = F.normalize(bank.float(), dim=1)
    labels = bank_labels.to(bank.device).long()
    scores = []
    for start in range(0, queries.shape[0], chunk_size):
        q = F.normalize(queries[start:start + chunk_size].float(), dim=1)
        sim, idx = (q @ bank.t()).topk(k, dim=1)  # (m, k)
        weight = (sim / temperature).exp()
        votes = torch.zeros(q.shape[0], num_classes, device=q.device)
        votes.scatter_add_(1, labels[idx], weight)
        scores.append(votes)
    return torch.cat(scores) if scores else queries.new_zeros(0, num_classes)


def topk_accuracy(scores: torch.Tensor,
                  labels: torch.Tensor,
                  topk: Sequence[int] = (1, 5)) -> Dict[str, float]:  # yapf: disable
    """Top-k accuracies in percent, as MMPretrain's ``Accuracy`` names them.

    Args:
        scores (torch.Tensor): Class scores (M, num_classes).
        labels (torch.Tensor): Ground truth (M, ).

    Returns:
        dict: ``{'top1': ..., 'top5': ...}`` (percent).
    """
    labels = labels.to(scores.device).long()
    maxk = min(max(topk), scores.shape[1])
    pred = scores.topk(maxk, dim=1).indices  # (M, maxk)
    hit = pred == labels[:, None]
    return {
        f'top{k}': 100.0 * hit[:, :min(k, maxk)].any(1).float().mean().item()
        for k in topk
    }


def knn_accuracy(bank: torch.Tensor,
                 bank_labels: torch.Tensor,
                 queries: torch.Tensor,
                 query_labels: torch.Tensor,
                 num_classes: Optional[int] = None,
                 k: int = 20,
                 temperature: float = 0.07,
                 topk: Sequence[int] = (1, 5),
                 chunk_size: int = 1024) -> Dict[str, float]:
    """Weighted k-NN top-k accuracy (percent) of ``queries`` against ``bank``."""
    if num_classes is None:
        num_classes = int(max(bank_labels.max(), query_labels.max())) + 1
    scores = knn_class_scores(bank, bank_labels, queries, num_classes, k, temperature,
                              chunk_size)
    return topk_accuracy(scores, query_labels, topk)
