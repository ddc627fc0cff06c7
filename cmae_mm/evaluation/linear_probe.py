"""A quick linear probe: multinomial logistic regression on cached frozen features.

Minutes instead of the 90-epoch MAE protocol (He et al., CVPR 2022, Appendix A.2;
``configs/cls/cmae_vit-base-p16_8xb2048-linear-coslr-90e_in1k.py``), in the spirit of
the L-BFGS logistic regression on frozen features of CLIP (Radford et al., 2021,
Sec. 3.2): features standardised with the training set's statistics, full-batch
L-BFGS, the L2 weight chosen on a held-out tenth of the training features.
"""
from typing import Dict, Sequence

import torch
import torch.nn.functional as F

from .knn import topk_accuracy


def fit_logistic_regression(feats: torch.Tensor,
                            labels: torch.Tensor,
                            num_classes: int,
                            weight_decay: float = 1e-4,
                            max_iter: int = 100) -> torch.Tensor:
    """Weights (C + 1, num_classes) minimising mean cross-entropy + wd * |W|^2.

    Args:
        feats (torch.Tensor): Standardised features (N, C).
        labels (torch.Tensor): Labels (N, ).
        num_classes (int): Number of classes.
        weight_decay (float): L2 weight on W (not the bias).
        max_iter (int): L-BFGS iterations.

    Returns:
        torch.Tensor: ``[W; b]``, (C + 1, num_classes).
    """
    x = torch.cat([feats.float(), feats.new_ones(feats.shape[0], 1)], dim=1)
    w = torch.zeros(x.shape[1], num_classes, device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w],
                            lr=1.0,
                            max_iter=max_iter,
                            history_size=20,
                            line_search_fn='strong_wolfe')
    labels = labels.to(x.device).long()

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w, labels) + weight_decay * w[:-1].pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach()


def linear_probe_accuracy(train_feats: torch.Tensor,
                          train_labels: torch.Tensor,
                          test_feats: torch.Tensor,
                          test_labels: torch.Tensor,
                          num_classes: int,
                          weight_decays: Sequence[float] = (1e-5, 1e-4, 1e-3),
                          max_iter: int = 100,
                          topk: Sequence[int] = (1, 5),
                          seed: int = 0) -> Dict[str, float]:
    """Top-k accuracy (percent) of a logistic regression fitted on frozen features.

    The L2 weight is the one of ``weight_decays`` with the best top-1 on a random
    tenth of the training features (fitted on the other nine tenths); the probe is
    then refitted on all of them.

    Returns:
        dict: ``top1``, ``top5``, ... and ``weight_decay`` (the chosen one).
    """
    mean = train_feats.float().mean(0)
    std = train_feats.float().std(0).clamp_min(1e-6)
    train = (train_feats.float() - mean) / std
    test = (test_feats.float() - mean) / std
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(train.shape[0], generator=g).to(train.device)
    n_val = max(1, train.shape[0] // 10)
    val_idx, fit_idx = perm[:n_val], perm[n_val:]
    best, best_wd = -1.0, weight_decays[0]
    if len(weight_decays) > 1:
        for wd in weight_decays:
            w = fit_logistic_regression(train[fit_idx], train_labels[fit_idx],
                                        num_classes, wd, max_iter)
            val = _scores(train[val_idx], w)
            acc = topk_accuracy(val, train_labels[val_idx], (1, ))['top1']
            if acc > best:
                best, best_wd = acc, wd
    w = fit_logistic_regression(train, train_labels, num_classes, best_wd, max_iter)
    result = topk_accuracy(_scores(test, w), test_labels, topk)
    result['weight_decay'] = best_wd
    return result


def _scores(feats: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return torch.cat([feats, feats.new_ones(feats.shape[0], 1)], dim=1) @ w
