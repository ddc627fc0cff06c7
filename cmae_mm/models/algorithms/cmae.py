"""CMAE: Contrastive Masked Autoencoders (Huang et al., TPAMI 2024, arXiv
2207.13532)."""
import hashlib
import logging
from typing import Dict, List, Optional, Union

import torch
from mmengine.dist import broadcast, get_rank, is_distributed
from mmengine.logging import print_log
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from ...engine.randomness import derive_seed, seeded_generator
from ..utils import (MomentumTargetSelfSupervisor, autocast_disabled,
                     release_xavier_init, route_attention, upcast_half)


@MODELS.register_module()
class CMAE(MomentumTargetSelfSupervisor):
    """CMAE pretraining: a masked autoencoder plus a contrastive branch.

    Online branch (trained by gradient), on the online view:
    ``backbone`` (:class:`CMAEViT`, visible units only) -> ``neck`` (pixel
    decoder, :class:`MAEPretrainDecoder`) -> ``head`` (:class:`MAEPretrainHead`,
    MSE on masked patches, ``norm_pix`` switch) gives ``loss_rc``; the same latent
    -> ``feature_decoder`` (:class:`CMAEFeatureDecoder`) -> mean over all tokens
    -> ``projector`` (:class:`NonLinearNeck`) -> ``contrastive_head``
    (:class:`MoCoV3Head`: predictor, L2 normalisation, InfoNCE against keys
    gathered from all processes, ``loss_weight = 2 * tau``) gives ``loss_ct``.

    Target branch (no gradient), on the shifted target view:
    ``target_encoder = MomentumTarget(nn.Sequential(backbone, projector))`` -- the
    whole view, no final norm, mean of patch tokens -> target projector -> keys.
    As released, it starts as a copy of the online modules (:meth:`init_weights`)
    and :class:`~cmae_mm.engine.hooks.TargetUpdateHook` updates its parameters after
    each optimizer step, ``theta_t <- m theta_t + (1 - m) theta_s``
    (:meth:`update_target`); all of this is
    :class:`~cmae_mm.models.utils.MomentumTargetSelfSupervisor`'s, with
    ``target_modules = ('backbone', 'projector')``.
    ``loss()`` has no side effect. Decoders and predictor have no copy.

    Mixed precision (:class:`~cmae_mm.engine.optimizers.MixedPrecisionOptimWrapper`):
    the contrastive head (predictor, logits, cross-entropy) runs with autocast off,
    in float32; ``loss_rc``'s MSE is float32 under autocast anyway (``mse_loss`` is on
    the CPU and CUDA float32 lists).

    Masks: the ``d``-th mask draw of rank ``r`` uses a generator on the input's
    device seeded with ``derive_seed(mask_seed, r, d)``
    (:func:`~cmae_mm.engine.randomness.derive_seed`), so each rank draws its own
    masks and a resumed run, on any number of ranks, continues the draws exactly.
    ``mask_seed`` is rank 0's draw from the global RNG at construction (i.e. from the
    run's seed), shared with the other ranks at the first draw (one broadcast);
    ``d`` counts the calls of :meth:`loss` (the same on every rank). Both are
    checkpointed as ``_extra_state`` (int64 ``[mask_seed, d]``), so no per-rank
    state has to be saved and ``randomness.seed=None`` resumes exactly too. A
    checkpoint of an older version holds one generator state (uint8, rank 0's):
    it loads, with a logged warning, and the masks continue from a seed derived
    from it. The masks differ from those of versions that drew from one
    continuing CPU generator.

    Checkpoint keys: ``backbone.*`` (online encoder), ``target_encoder.module.0.*``
    (target encoder), ``target_encoder.module.1.*`` (target projector), and
    ``_extra_state`` (the mask seed and draw count above).

    Args:
        backbone (dict): Online encoder, :class:`CMAEViT`.
        neck (dict): Pixel decoder, :class:`MAEPretrainDecoder`.
        head (dict): Reconstruction head, :class:`MAEPretrainHead`.
        feature_decoder (dict): :class:`CMAEFeatureDecoder`.
        projector (dict): Projector, :class:`NonLinearNeck`.
        contrastive_head (dict): :class:`MoCoV3Head` with the predictor.
        base_momentum (float): ``1 - m`` at the start of training; CMAE: m =
            0.996, so 0.004. Defaults to 0.004.
        end_momentum (float, optional): ``1 - m`` at the end (cosine schedule of
            :class:`MomentumTarget`); None keeps m constant. Defaults to None.
        loss_rc_weight (float): Weight of ``loss_rc``. Defaults to 1.0.
        loss_ct_weight (float): Weight of ``loss_ct`` (lambda_c). Defaults to 1.0.
        target_cls (bool): Whether the target encoder runs with the cls token (its
            representation is the mean of the patch tokens either way), the
            release's ``target_cls`` option. Defaults to True (released configs).
        release_init (bool): Initialise as the release: backbone, pixel decoder and
            feature decoder with Xavier-uniform Linear weights, zero biases and
            LayerNorm 1 / 0 after their own initialisation; projector and predictor
            keep PyTorch's default Linear initialisation (see
            :func:`~cmae_mm.models.utils.release_xavier_init`). False leaves the
            modules' (and ``init_cfg``'s) initialisation. Defaults to True.
        pretrained, data_preprocessor, init_cfg: as :class:`BaseSelfSupervisor`.
    """

    #: the projector and predictor normalise with BatchNorm over the per-GPU batch:
    #: training needs at least two samples per GPU (checked by CheckedRunner)
    min_batch_size = 2
    #: the target tracks the encoder and the projector (release ``CMAE.__init__``)
    target_modules = ('backbone', 'projector')

    def __init__(self,
                 backbone: dict,
                 neck: dict,
                 head: dict,
                 feature_decoder: dict,
                 projector: dict,
                 contrastive_head: dict,
                 base_momentum: float = 0.004,
                 end_momentum: Optional[float] = None,
                 loss_rc_weight: float = 1.0,
                 loss_ct_weight: float = 1.0,
                 target_cls: bool = True,
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
        self.feature_decoder = MODELS.build(feature_decoder)
        self.projector = MODELS.build(projector)
        self.contrastive_head = MODELS.build(contrastive_head)
        patches = self.backbone.num_patches
        for name in ('neck', 'feature_decoder'):
            decoder_patches = getattr(getattr(self, name), 'num_patches', patches)
            if decoder_patches != patches:
                raise ValueError(
                    f'model.{name}.num_patches={decoder_patches} but the encoder has '
                    f'{patches} patches (model.backbone.img_size / patch_size): set '
                    f'model.{name}.num_patches={patches}.')
        self.build_target(base_momentum, end_momentum)
        # MMPretrain attention, float32 on CPUs under bfloat16 (models/utils/precision)
        route_attention(self)
        self.loss_rc_weight = loss_rc_weight
        self.loss_ct_weight = loss_ct_weight
        self.target_cls = target_cls
        self.release_init = release_init
        # mask seed from the global RNG (the run's seed); rank 0's is shared with
        # the other ranks at the first draw (or set by a checkpoint)
        self._mask_seed = int(torch.randint(0, 2**62, (1, ), device='cpu'))
        self._mask_seed_shared = False
        self.mask_draws = 0
        self._mask_generators: Dict[str, torch.Generator] = {}

    # -- initialisation (the target then copies the online modules, release
    # ``CMAE.init_weights``: MomentumTargetSelfSupervisor.init_weights) ----------
    def init_online_weights(self) -> None:
        """The release's initialisation on top of the modules' own
        (``release_init``)."""
        if self.release_init:
            for module in (self.backbone, self.neck, self.feature_decoder):
                release_xavier_init(module)

    # -- masks: derived from (mask seed, rank, draw), checkpointed -------------
    @property
    def mask_seed(self) -> int:
        """The run's mask seed, shared by all ranks (rank 0's, see the class doc)."""
        if not self._mask_seed_shared:
            if is_distributed():  # once: no collective at save time or per draw
                seed = torch.tensor([self._mask_seed], dtype=torch.int64)
                broadcast(seed, src=0)
                self._mask_seed = int(seed.item())
            self._mask_seed_shared = True
        return self._mask_seed

    def mask_draw_seed(self, draw: int, rank: Optional[int] = None) -> int:
        """Seed of the ``draw``-th mask draw of ``rank`` (default: this rank)."""
        return derive_seed(self.mask_seed, get_rank() if rank is None else rank, draw)

    def next_mask_generator(self, device: torch.device) -> torch.Generator:
        """The generator of the next mask draw, on ``device`` (host-side seeding, no
        device synchronisation); counts the draw."""
        seed = self.mask_draw_seed(self.mask_draws)
        self.mask_draws += 1
        return seeded_generator(self._mask_generators, device, seed)

    @staticmethod
    def mask_state(seed: int, draws: int = 0) -> torch.Tensor:
        """The ``_extra_state`` tensor of a mask seed and draw count."""
        return torch.tensor([seed, draws], dtype=torch.int64)

    def get_extra_state(self) -> torch.Tensor:
        """int64 ``[mask_seed, mask_draws]``, saved with the weights."""
        return self.mask_state(self._mask_seed, self.mask_draws)

    def set_extra_state(self, state: torch.Tensor) -> None:
        state = state.cpu()
        if state.dtype == torch.int64 and state.shape == (2, ):
            self._mask_seed, self.mask_draws = (int(v) for v in state)
        elif state.dtype == torch.uint8:  # older versions: one CPU generator's state
            digest = hashlib.blake2b(state.numpy().tobytes(), digest_size=8).digest()
            self._mask_seed = int.from_bytes(digest, 'little') >> 2
            self.mask_draws = 0
            print_log(
                'CMAE: the checkpoint\'s _extra_state is the single mask generator '
                'state of an older cmae_mm (rank 0\'s only), which cannot give each '
                'rank its own masks; the masks continue from a seed derived from it '
                '(per rank and draw), not as that version would have drawn them.',
                logger='current',
                level=logging.WARNING)
        else:
            raise ValueError(
                f'CMAE _extra_state must be the int64 [mask_seed, mask_draws] of '
                f'this version (or an older uint8 generator state), got '
                f'{state.dtype} of shape {tuple(state.shape)}: the checkpoint is not '
                f'one of a cmae_mm CMAE. Delete its state_dict entry '
                f"'_extra_state' to load the weights (the masks then follow this "
                f"run's seed).")
        self._mask_seed_shared = True

    # -- forward modes ----------------------------------------------------------
    def extract_feat(self, inputs: Union[torch.Tensor, List[torch.Tensor]]):
        """Online encoder features of the whole image (``mode='tensor'``).

        Args:
            inputs: Images (B, 3, H, W), or the pipeline's [online, target]
                views, of which the online view is used.

        Returns:
            tuple[torch.Tensor]: The backbone's output for its ``out_type``; for
            the default ``'raw'``, (B, 1 + L, C) tokens after the final norm.
        """
        if isinstance(inputs, (list, tuple)):
            inputs = inputs[0]
        return self.backbone(inputs, mask=None)

    def loss(self, inputs: List[torch.Tensor], data_samples: List[DataSample],
             **kwargs) -> Dict[str, torch.Tensor]:
        """Compute ``loss_rc`` and ``loss_ct`` (each already weighted).

        Args:
            inputs (List[torch.Tensor]): ``[online view, target view]``, each
                (B, 3, H, W), as produced by :class:`PixelShift` + PackInputs.
            data_samples (List[DataSample]): Unused.

        Returns:
            Dict[str, torch.Tensor]: ``loss_rc`` and ``loss_ct``.
        """
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError(
                'CMAE needs two views per image, [online, target]: put '
                "dict(type='PixelShift', ...) before PackInputs in the training "
                f'pipeline. Got {type(inputs).__name__} of length '
                f'{len(inputs) if isinstance(inputs, (list, tuple)) else 1}.')
        online, target = inputs

        # online branch: reconstruction
        latent, mask, ids_restore = self.backbone(
            online, generator=self.next_mask_generator(online.device))
        pred = self.neck(latent, ids_restore)  # (B, L, p*p*3)
        loss_rc = self.head.loss(pred, online, mask)

        # online branch: contrastive query (before the predictor)
        feat = self.feature_decoder(latent, ids_restore).mean(dim=1)  # (B, C)
        query = self.projector([feat])[0]  # (B, D)

        # target branch: keys, no gradient
        with torch.no_grad():
            target_encoder, target_projector = self.target_encoder.module
            key = target_projector(
                [target_encoder.forward_target(target, use_cls=self.target_cls)])[0]

        # predictor, logits and cross-entropy in float32 under mixed precision
        # (half inputs raised to float32; a float64 model stays float64)
        with autocast_disabled(query.device):
            loss_ct = self.contrastive_head.loss(upcast_half(query), upcast_half(key))
        return dict(
            loss_rc=self.loss_rc_weight * loss_rc,
            loss_ct=self.loss_ct_weight * loss_ct)
