"""ConMIM: Masked Image Modeling with Denoising Contrast (Yi et al., ICLR 2023)."""
from typing import Dict, List, Optional, Union

import torch
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch import nn

from ..utils import (MomentumTargetSelfSupervisor, release_trunc_normal_init,
                     rescale_block_outputs)


@MODELS.register_module()
class ConMIM(MomentumTargetSelfSupervisor):
    """ConMIM: masked patch prediction as intra-image denoising contrast.

    - ``backbone``: a BEiT-style ViT (``BEiTPretrainViT``, ``out_type='raw'``) that
      replaces masked patches of the online view by a learnable mask token;
    - ``neck``: the per-token projector (``TokenNonLinearNeck``), applied to every
      token as in the released code (cls token included in the BN statistics), the
      cls output is then dropped;
    - ``target_encoder``: the slowly progressing target, a
      :class:`MomentumTarget` of ``nn.Sequential(backbone, neck)``: a copy of the
      online modules at initialisation, then an EMA of their parameters after each
      optimizer step (:class:`~cmae_mm.engine.hooks.TargetUpdateHook`), with its own
      BatchNorm statistics (release ``engine_for_pretraining.py``); it sees the full,
      uncorrupted, strongly augmented view and gets no gradient (construction,
      copy, update and hook contract:
      :class:`~cmae_mm.models.utils.MomentumTargetSelfSupervisor`). Checkpoint keys:
      ``target_encoder.module.0.*`` (encoder) and ``target_encoder.module.1.*``
      (projector), beside the online ``backbone.*`` and ``neck.*``;
    - ``head``: ``MIMHead`` with ``DenoisingContrastiveLoss`` (tau 0.1).

    Args:
        backbone: config of the BEiT-style ViT.
        neck: config of the per-token projector.
        head: config of the head holding the loss.
        base_momentum: ``1 - m`` at the start of training for the target update
            ``theta_t <- m * theta_t + (1 - m) * theta_s``; ConMIM's m goes from
            0.996 to 1.0 (cosine over all iterations), i.e. 0.004. Defaults to 0.004.
        end_momentum: ``1 - m`` at the end of training. Defaults to 0.0 (m = 1.0).
        release_init: initialise backbone and projector as the release
            (``modeling_pretrain.py``: Linear and Conv2d weights from a normal of
            std 0.02 truncated at +-1 std, zero biases, LayerNorm 1 / 0, cls and
            mask tokens likewise, then the block output projections divided by
            sqrt(2 i)), after the modules' own initialisation. Defaults to True.
        pretrained: checkpoint to initialise from. Defaults to None.
        data_preprocessor: defaults to ``SelfSupDataPreprocessor``.
        init_cfg: initialisation config. Defaults to None.
    """

    #: the target tracks the encoder and the per-token projector (release
    #: ``run_conmim_pretraining.py``: ``model_copy``)
    target_modules = ('backbone', 'neck')

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 base_momentum: float = 0.004,
                 end_momentum: float = 0.0,
                 release_init: bool = True,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[Union[List[dict], dict]] = None) -> None:
        super().__init__(
            backbone=backbone,
            neck=neck,
            head=head,
            pretrained=pretrained,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg)
        self.build_target(base_momentum, end_momentum)
        self.release_init = release_init

    def init_online_weights(self) -> None:
        """The release's initialisation on top of the modules' own
        (``release_init``); the base then copies the online modules into the
        target (release ``run_conmim_pretraining.py``:
        ``model_copy.load_state_dict(model.state_dict())``)."""
        if self.release_init:
            std = 0.02  # release init_std
            release_trunc_normal_init(self.backbone, std)
            release_trunc_normal_init(self.neck, std)
            for name in ('cls_token', 'mask_token'):
                token = getattr(self.backbone, name, None)
                if token is not None:
                    nn.init.trunc_normal_(token.data, std=std, a=-std, b=std)
            rescale_block_outputs(self.backbone.layers)

    def extract_feat(self, inputs: torch.Tensor):
        """Online encoder features of unmasked images, (B, 1 + N, C) per out index."""
        return self.backbone(inputs, mask=None)

    def _patch_mask(self, data_samples: List[DataSample],
                    device: torch.device) -> torch.Tensor:
        """Stack the per-image masks into a boolean (B, N) patch mask.

        :class:`~cmae_mm.models.data_preprocessors.MultiViewDataPreprocessor` has
        moved them to the device as one tensor (views of it here); with another
        preprocessor they move here, each on its own."""
        mask = torch.stack([ds.mask for ds in data_samples]).to(device)
        mask = mask.flatten(1).bool()
        num_patches = self.backbone.patch_resolution[0] * \
            self.backbone.patch_resolution[1]
        if mask.shape[1] != num_patches:
            raise ValueError(
                f'The mask has {mask.shape[1]} entries per image but the backbone has '
                f'{num_patches} patches: generate the mask at patch level (e.g. '
                f'SimMIMMaskGenerator(input_size=224, mask_patch_size=32, '
                f'model_patch_size=16) or BEiTMaskGenerator(input_size=(14, 14))).')
        return mask

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Compute the denoising contrastive loss.

        Args:
            inputs: ``[online_view, target_view]``, each (B, 3, H, W): the online view
                is the plain crop (it gets masked here), the target view is the same
                crop with the strong perturbation.
            data_samples: one per image, each holding ``mask`` ((H/p, W/p) or (N,)).

        Returns:
            ``dict(loss=...)``.
        """
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                'ConMIM needs two views per image, [online, target]: build the '
                'pipeline with MultiView(num_views=[1, 1], transforms=[[], '
                '[strong perturbation]]) after the shared crop and flip.')
        online_img, target_img = inputs
        mask = self._patch_mask(data_samples, online_img.device)  # (B, N)

        latent = self.backbone(online_img, mask)[-1]  # (B, 1 + N, C)
        pred = self.neck((latent, ))[0][:, 1:]  # (B, N, D)

        with torch.no_grad():
            target_backbone, target_neck = self.target_encoder.module
            target_latent = target_backbone(target_img, mask=None)[-1]
            target = target_neck((target_latent, ))[0][:, 1:]  # (B, N, D)

        loss = self.head.loss(pred, target, mask)
        return dict(loss=loss)
