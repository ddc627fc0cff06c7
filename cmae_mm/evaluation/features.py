"""Frozen encoder features of a pretraining model, gathered across processes."""
from typing import List, Tuple

import torch
from mmengine.dist import all_gather, get_world_size, is_main_process
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar
from torch import nn

#: the features a pretrained ViT offers for evaluation (``feature`` options)
FEATURES = ('mean', 'cls')
#: the encoders of a pretraining checkpoint (``encoder`` options)
ENCODERS = ('online', 'target')


def get_encoder(model: nn.Module, encoder: str = 'online') -> nn.Module:
    """The online or the momentum-target encoder of a pretraining model.

    Args:
        model (nn.Module): A CMAE, ConMIM or MMPretrain MAE model (or its DDP
            wrapper).
        encoder (str): ``'online'`` (``model.backbone``, the encoder that is
            transferred downstream) or ``'target'`` (CMAE / ConMIM
            ``model.target_encoder.module[0]``, the momentum copy).

    Returns:
        nn.Module: The ViT, callable as ``vit(images, mask=None)``.
    """
    if is_model_wrapper(model):
        model = model.module
    if encoder == 'online':
        return model.backbone
    if encoder == 'target':
        target = getattr(model, 'target_encoder', None)
        if target is None:
            raise ValueError(
                f'{type(model).__name__} has no momentum target encoder: evaluate '
                f"encoder='online' (only CMAE and ConMIM have a target).")
        return target.module[0]
    raise ValueError(f'encoder must be one of {ENCODERS}, got {encoder!r}')


def encoder_features(vit: nn.Module,
                     images: torch.Tensor,
                     feature: str = 'mean') -> torch.Tensor:
    """One feature vector per image from the whole (unmasked) image.

    Args:
        vit (nn.Module): An encoder from :func:`get_encoder` with ``out_type='raw'``
            (all cmae_mm pretraining encoders): ``vit(x, mask=None)[-1]`` are the
            tokens (B, E + L, C) after the final norm, E extra (cls) tokens first.
        images (torch.Tensor): Normalised images (B, 3, H, W).
        feature (str): ``'mean'``: mean of the L patch tokens; ``'cls'``: the
            cls token.

    Returns:
        torch.Tensor: Features (B, C).
    """
    out = vit(images, mask=None)
    tokens = out[-1] if isinstance(out, (tuple, list)) else out
    if tokens.dim() != 3:
        raise ValueError(
            f'{type(vit).__name__} returned {tuple(tokens.shape)}, not tokens (B, N, '
            f"C): evaluate it with out_type='raw' (the pretraining default).")
    extra = getattr(vit, 'num_extra_tokens', 1)
    if feature == 'mean':
        return tokens[:, extra:].mean(dim=1)
    if feature == 'cls':
        if extra < 1:
            raise ValueError(f'{type(vit).__name__} has no cls token: use '
                             f"feature='mean'")
        return tokens[:, 0]
    raise ValueError(f'feature must be one of {FEATURES}, got {feature!r}')


@torch.no_grad()
def extract_features(
        model: nn.Module,
        dataloader,
        encoder: str = 'online',
        feature: str = 'mean',
        desc: str = 'features') -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Features of this process's share of a labelled dataloader.

    The model's own data preprocessor moves and normalises each batch (so features
    come out on the model's device); the encoder runs in eval mode (restored
    afterwards).

    Returns:
        tuple: features (n, C) float32, labels (n, ) int64 and dataset indices
        (n, ) int64 (``sample_idx``) of the samples this process saw.
    """
    vit = get_encoder(model, encoder)
    preprocessor = (model.module
                    if is_model_wrapper(model) else model).data_preprocessor
    was_training = vit.training
    vit.eval()
    feats: List[torch.Tensor] = []
    labels: List[int] = []
    indices: List[int] = []
    bar = ProgressBar(len(dataloader)) if is_main_process() else None
    if bar is not None:
        print(f'\n[k-NN] {desc}: {len(dataloader.dataset)} images', flush=True)
    for data in dataloader:
        data = preprocessor(data, False)
        images = data['inputs']
        if isinstance(images, (list, tuple)):
            images = images[0]
        feats.append(encoder_features(vit, images, feature).float())
        for sample in data['data_samples']:
            if 'gt_label' not in sample:
                raise ValueError(
                    'k-NN / linear-probe evaluation needs labelled data: the '
                    f'dataset {type(dataloader.dataset).__name__} gave a sample '
                    'without gt_label (use a classification dataset).')
            labels.append(int(sample.gt_label[0]))
            indices.append(int(sample.sample_idx))
        if bar is not None:
            bar.update()
    vit.train(was_training)
    device = feats[0].device if feats else torch.device('cpu')
    return (torch.cat(feats) if feats else torch.zeros(0, 0),
            torch.tensor(labels, dtype=torch.long, device=device),
            torch.tensor(indices, dtype=torch.long, device=device))


def gather_in_dataset_order(feats: torch.Tensor, labels: torch.Tensor,
                            indices: torch.Tensor,
                            size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """All processes' features, on every process, in dataset order.

    Shares of different lengths are padded for ``all_gather``; the duplicates
    that distributed samplers add to even out the shares are written to the same
    row, so each of the ``size`` samples appears once.

    Returns:
        tuple: features (size, C) and labels (size, ).
    """
    if get_world_size() > 1:
        n = torch.tensor([feats.shape[0]], device=feats.device)
        sizes = [int(s) for s in all_gather(n)]
        pad = max(sizes) - feats.shape[0]

        def gather(t: torch.Tensor) -> torch.Tensor:
            t = torch.cat([t, t.new_zeros((pad, ) + t.shape[1:])])
            return torch.cat([g[:s] for g, s in zip(all_gather(t), sizes)])

        feats, labels, indices = gather(feats), gather(labels), gather(indices)
    out = feats.new_zeros(size, feats.shape[1])
    out_labels = labels.new_full((size, ), -1)
    out[indices] = feats
    out_labels[indices] = labels
    missing = int((out_labels < 0).sum())
    if missing:
        raise RuntimeError(
            f'{missing} of {size} samples were not seen by any process: evaluate '
            "with a sampler that covers the dataset (type='DefaultSampler', "
            'shuffle=False).')
    return out, out_labels
