"""The CMAE online / target encoder: MAE's ViT with masking over units of patches."""
from typing import Optional, Tuple

import torch
from mmpretrain.models import MAEViT, VisionTransformer
from mmpretrain.models.utils import resize_pos_embed
from mmpretrain.registry import MODELS


@MODELS.register_module()
class CMAEViT(MAEViT):
    """ViT encoder of CMAE (Huang et al., TPAMI 2024, arXiv 2207.13532).

    MMPretrain's :class:`MAEViT` (masked patches are dropped, not replaced by a
    token) with two changes:

    - masking is drawn over square **units** of ``mask_unit_size`` x
      ``mask_unit_size`` patches. The released CMAE code masks 65 % of 2x2-patch
      units: at 224 px / patch 16 it keeps ``int(49 * 0.35) = 17`` units, i.e. 68
      visible patches. ``mask_unit_size=1, mask_ratio=0.75`` is MAE's per-patch
      masking (the paper text's variant). The number of kept units is
      ``int(num_units * (1 - mask_ratio))`` as in MAE.
    - :meth:`forward_target` is the target branch: the whole view, no final
      norm, mean of the patch tokens (cls token excluded).

    Args:
        mask_ratio (float): Fraction of units to mask. Defaults to 0.65.
        mask_unit_size (int): Side of a masking unit, in patches. Defaults to 2.
        **kwargs: Other arguments of :class:`MAEViT` (``arch``, ``img_size``,
            ``patch_size``, ...).
    """

    def __init__(self,
                 mask_ratio: float = 0.65,
                 mask_unit_size: int = 2,
                 **kwargs) -> None:
        super().__init__(mask_ratio=mask_ratio, **kwargs)
        h, w = self.patch_resolution
        if mask_unit_size < 1 or h % mask_unit_size or w % mask_unit_size:
            raise ValueError(
                f'mask_unit_size={mask_unit_size} must divide the patch grid '
                f'{h}x{w} (img_size / patch_size); choose a divisor of both, '
                f'e.g. 1 for per-patch masking.')
        self.mask_unit_size = mask_unit_size
        kept = int(self.num_units * (1 - mask_ratio))
        if not 0 < kept < self.num_units:
            raise ValueError(
                f'model.backbone.mask_ratio={mask_ratio} keeps {kept} of '
                f'{self.num_units} masking units ({mask_unit_size}x{mask_unit_size} '
                f'patches): it must leave at least one unit visible and one masked '
                f'(the reconstruction loss averages over masked patches). Choose a '
                f'ratio in ({1 / self.num_units:.4f}, '
                f'{1 - 1 / self.num_units:.4f}].')

    @property
    def num_units(self) -> int:
        """Number of masking units in the patch grid."""
        h, w = self.patch_resolution
        return (h // self.mask_unit_size) * (w // self.mask_unit_size)

    @property
    def num_visible(self) -> int:
        """Number of visible (kept) patches per image."""
        len_keep_units = int(self.num_units * (1 - self.mask_ratio))
        return len_keep_units * self.mask_unit_size**2

    def random_masking(
        self,
        x: torch.Tensor,
        mask_ratio: float = 0.65,
        generator: Optional[torch.Generator] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Drop a random subset of patch units.

        Args:
            x (torch.Tensor): Patch tokens (B, L, C), L = h * w in raster order.
            mask_ratio (float): Fraction of units to mask.
            generator (torch.Generator, optional): Generator of the mask noise, on
                any device (the noise is drawn there, then moved to ``x``'s); None
                draws from the global RNG on ``x``'s device, as MAE.

        Returns:
            Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:

            - ``x_masked`` (B, L_vis, C): visible tokens, kept units first;
            - ``mask`` (B, L): 0 visible, 1 masked, in raster order;
            - ``ids_restore`` (B, L): the permutation that MAE's decoder uses to
              put visible tokens and mask tokens back in raster order.
        """
        N, L, D = x.shape
        h, w = self.patch_resolution
        u = self.mask_unit_size
        if L != h * w:
            raise ValueError(f'Expected {h * w} patch tokens ({h}x{w}), got {L}: '
                             f'feed images of img_size={self.img_size}.')
        hu, wu = h // u, w // u
        len_keep = int(hu * wu * (1 - mask_ratio)) * u * u

        # one noise value per unit, expanded to its u x u patches
        noise = torch.rand(
            N,
            hu * wu,
            generator=generator,
            device=generator.device if generator is not None else x.device).to(x.device)
        noise = noise.view(N, hu, 1, wu, 1).expand(N, hu, u, wu, u)
        noise = noise.reshape(N, L)
        # stable sort: the patches of one unit stay together, so the first
        # len_keep indices are exactly the patches of the kept units
        ids_shuffle = torch.argsort(noise, dim=1, stable=True)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_masked = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, D))

        mask = torch.ones(N, L, device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)
        return x_masked, mask, ids_restore

    def forward(self,
                x: torch.Tensor,
                mask: Optional[bool] = True,
                generator: Optional[torch.Generator] = None):
        """Online forward (masked) or plain ViT forward.

        Args:
            x (torch.Tensor): Images (B, 3, H, W).
            mask (bool, optional): True: drop masked units and return
              ``(latent (B, 1 + L_vis, C) incl. cls, mask (B, L), ids_restore
              (B, L))`` as :class:`MAEViT`; None / False: the whole image through
              :class:`VisionTransformer` (``out_type``, final norm).
            generator (torch.Generator, optional): Generator of the mask noise (on
              any device); None uses the global RNG.
        """
        if mask is None or mask is False:
            return VisionTransformer.forward(self, x)
        # MAEViT.forward with the generator handed to random_masking
        B = x.shape[0]
        x = self.patch_embed(x)[0]
        x = x + self.pos_embed[:, 1:, :]  # position embedding without cls
        x, mask, ids_restore = self.random_masking(x, self.mask_ratio, generator)
        cls_token = self.cls_token + self.pos_embed[:, :1, :]
        x = torch.cat((cls_token.expand(B, -1, -1), x), dim=1)
        for layer in self.layers:
            x = layer(x)
        x = self.norm1(x)
        return x, mask, ids_restore

    def forward_target(self, x: torch.Tensor, use_cls: bool = True) -> torch.Tensor:
        """Target-branch representation: whole view, no final norm.

        Args:
            x (torch.Tensor): Images (B, 3, H, W).
            use_cls (bool): Run the blocks with the cls token (released default) or
                over the patch tokens alone (release option ``target_cls=False``).

        Returns:
            torch.Tensor: Mean of the last layer's patch tokens (B, C).
        """
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        pos_embed = resize_pos_embed(
            self.pos_embed,
            self.patch_resolution,
            patch_resolution,
            mode=self.interpolate_mode,
            num_extra_tokens=self.num_extra_tokens)
        x = x + pos_embed[:, self.num_extra_tokens:]
        if use_cls:
            cls_token = self.cls_token + pos_embed[:, :self.num_extra_tokens]
            x = torch.cat((cls_token.expand(B, -1, -1), x), dim=1)
        x = self.drop_after_pos(x)
        x = self.pre_norm(x)
        for layer in self.layers:
            x = layer(x)
        return x[:, self.num_extra_tokens if use_cls else 0:].mean(dim=1)
