"""Reconstruction and look-up figures (tools/demo.py,
tools/analysis/visualize_reconstruction.py)."""
import os
import os.path as osp
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def center_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to ``size`` (area interpolation), crop the centre."""
    import cv2
    h, w = rgb.shape[:2]
    s = size / min(h, w)
    rgb = cv2.resize(
        rgb, (max(size, round(w * s)), max(size, round(h * s))),
        interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    y, x = (h - size) // 2, (w - size) // 2
    return rgb[y:y + size, x:x + size]


def load_images(paths: Sequence[str], size: int) -> Dict[str, np.ndarray]:
    """RGB uint8 (size, size, 3) centre crops of image files or folders of images.

    Raises:
        FileNotFoundError / ValueError: a path that does not exist, a folder without
            images, or a file that is not a readable image (named in the message).
    """
    import mmcv
    files: List[str] = []
    for path in paths:
        if osp.isdir(path):
            found = sorted(
                osp.join(path, f) for f in os.listdir(path)
                if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise ValueError(f'{path}: no images ({", ".join(IMAGE_EXTENSIONS)})')
            files += found
        elif osp.isfile(path):
            files.append(path)
        else:
            raise FileNotFoundError(f'{path}: no such image file or folder')
    out = {}
    for f in files:
        try:
            img = mmcv.imread(f, channel_order='rgb')
        except Exception as e:  # noqa: BLE001 (named below)
            raise ValueError(f'{f}: not a readable image ({e})') from e
        if img is None:
            raise ValueError(f'{f}: not a readable image')
        out[f] = center_crop(img, size)
    return out


@torch.no_grad()
def masked_reconstruction(model: nn.Module,
                          inputs: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Masked input and reconstruction of an MAE-style model (CMAE, MMPretrain MAE).

    Args:
        model: with ``backbone`` (masked forward ``-> latent, mask, ids_restore``),
            ``neck`` (pixel decoder) and ``head`` (``patchify``, ``unpatchify``,
            ``norm_pix``).
        inputs: Normalised images (B, 3, H, W).

    Returns:
        ``masked`` (B, 3, H, W): the input with masked patches set to 0 (the dataset
        mean colour); ``reconstruction`` (B, 3, H, W): predicted pixels at masked
        patches (with ``norm_pix``, de-normalised with each patch's own mean and std,
        as MAE's visualisation), input pixels at visible ones. Both normalised.
    """
    latent, mask, ids_restore = model.backbone(inputs)
    pred = model.neck(latent, ids_restore)
    if isinstance(pred, (tuple, list)):
        pred = pred[0]
    patches = model.head.patchify(inputs)
    if model.head.norm_pix:
        mean = patches.mean(dim=-1, keepdim=True)
        var = patches.var(dim=-1, keepdim=True)
        pred = pred * (var + 1.e-6)**.5 + mean
    m = mask.unsqueeze(-1)
    masked = model.head.unpatchify(patches * (1 - m))
    recon = model.head.unpatchify(pred * m + patches * (1 - m))
    return masked, recon


def draw_rows(rows: Sequence[np.ndarray], labels: Sequence[str], title: str,
              out_path: str) -> str:
    """Save a grid: one row per entry of ``rows`` (N, S, S, 3) RGB uint8, labelled.

    Images smaller than 96 px are enlarged by an integer factor (nearest pixel)."""
    import cv2
    factor = max(1, 96 // rows[0].shape[1])
    if factor > 1:
        rows = [r.repeat(factor, axis=1).repeat(factor, axis=2) for r in rows]
    n, size = rows[0].shape[0], rows[0].shape[1]
    pad, label_w, title_h = 4, 150, 36
    H = title_h + len(rows) * (size + pad) + pad
    W = max(label_w + n * (size + pad) + pad, 8 + 7 * len(title))
    canvas = np.full((H, W, 3), 255, np.uint8)
    for r, (row, label) in enumerate(zip(rows, labels)):
        y = title_h + pad + r * (size + pad)
        cv2.putText(canvas, label, (8, y + size // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6,
                    (0, 0, 0), 1, cv2.LINE_AA)
        for c in range(n):
            x0 = label_w + pad + c * (size + pad)
            canvas[y:y + size, x0:x0 + size] = row[c]
    cv2.putText(canvas, title, (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1,
                cv2.LINE_AA)
    os.makedirs(osp.dirname(osp.abspath(out_path)), exist_ok=True)
    if not cv2.imwrite(out_path, canvas[..., ::-1]):
        raise ValueError(f'could not write {out_path}: use a .png or .jpg name')
    return out_path


def _normalise(model: nn.Module, imgs: np.ndarray):
    prep = model.data_preprocessor
    mean = prep.mean.cpu() if prep.mean is not None else torch.zeros(3, 1, 1)
    std = prep.std.cpu() if prep.std is not None else torch.ones(3, 1, 1)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float()  # RGB (to_rgb configs)
    return (x - mean) / std, mean, std


def reconstruction_figure(model: nn.Module,
                          images: np.ndarray,
                          out_path: str,
                          title: str,
                          seed: int = 0) -> str:
    """Rows original / masked / reconstruction of RGB uint8 images (N, S, S, 3)."""
    model = model.cpu().eval()
    x, mean, std = _normalise(model, images)
    torch.manual_seed(seed)  # the masks come from the global RNG here
    masked, recon = masked_reconstruction(model, x)

    def to_uint8(t):
        t = (t * std + mean).clamp(0, 255).round().byte()
        return t.permute(0, 2, 3, 1).numpy()

    return draw_rows(
        [images, to_uint8(masked), to_uint8(recon)],
        ['original', 'masked', 'reconstruction'], title, out_path)


@torch.no_grad()
def patch_similarity(vit: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every patch token to every other of the same image.

    Args:
        vit: A pretrained encoder, ``vit(x, mask=None)[-1]`` tokens (B, E + L, C).
        inputs: Normalised images (B, 3, H, W).

    Returns:
        torch.Tensor: (B, L, L) similarities of the L patch tokens.
    """
    tokens = vit(inputs, mask=None)[-1]
    extra = getattr(vit, 'num_extra_tokens', 1)
    patches = F.normalize(tokens[:, extra:], dim=-1)
    return patches @ patches.transpose(1, 2)


def lookup_figure(model: nn.Module,
                  images: np.ndarray,
                  out_path: str,
                  title: str,
                  query: Tuple[int, int] = None,
                  topk: int = 8) -> str:
    """ConMIM's intra-image dictionary look-up, in the spirit of the paper's figure.

    For each image, a query patch (default: the centre one; red box) and the
    ``topk`` patches of the same image most similar to it under the pretrained
    encoder (green boxes), with the similarity map below.
    """
    import cv2
    model = model.cpu().eval()
    x, _, _ = _normalise(model, images)
    vit = model.backbone
    h, w = vit.patch_resolution
    p = images.shape[1] // h
    qy, qx = query if query is not None else (h // 2, w // 2)
    if not (0 <= qy < h and 0 <= qx < w):
        raise ValueError(f'query patch ({qy}, {qx}) outside the {h}x{w} patch grid')
    sim = patch_similarity(vit, x)[:, qy * w + qx]  # (B, L)
    boxed, heat = [], []
    for img, s in zip(images, sim):
        canvas = img.copy()
        order = s.argsort(descending=True).tolist()
        for idx in [i for i in order if i != qy * w + qx][:topk]:
            y, x0 = divmod(idx, w)
            cv2.rectangle(canvas, (x0 * p, y * p), (x0 * p + p - 1, y * p + p - 1),
                          (0, 255, 0), 1)
        cv2.rectangle(canvas, (qx * p, qy * p), (qx * p + p - 1, qy * p + p - 1),
                      (255, 0, 0), 2)
        boxed.append(canvas)
        m = ((s.view(h, w).clamp(-1, 1) + 1) * 127.5).byte().numpy()
        m = cv2.resize(m, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_NEAREST)
        heat.append(cv2.applyColorMap(m, cv2.COLORMAP_VIRIDIS)[..., ::-1])
    return draw_rows([images, np.stack(boxed), np.stack(heat)],
                     ['original', f'query + top-{topk}', 'similarity'], title, out_path)
