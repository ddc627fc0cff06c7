"""Views made on the training device: the data preprocessor of device-side
augmentation (docs/performance.md, "Augmentation on the device")."""
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub, print_log
from mmpretrain.models import SelfSupDataPreprocessor
from mmpretrain.registry import BATCH_AUGMENTS, MODELS

from ...engine.randomness import derive_seed, seeded_generator
from .view_augments import BatchShiftedCrop


@MODELS.register_module()
class MultiViewDataPreprocessor(SelfSupDataPreprocessor):
    """MMPretrain's ``MultiView`` transform, batched on the training device.

    The DataLoader workers do what must happen per file (decode, the shared random
    crop and resize, ``PackInputs``) and deliver one uint8 image per sample. In
    training, this preprocessor moves the batch to the device once (non-blocking,
    from the DataLoader's pinned memory), converts it to float RGB in [0, 255],
    applies ``shared_augments`` (e.g. the flip), then makes one view per entry of
    ``view_augments``, each a list of batched augmentations with per-sample random
    parameters (:mod:`~cmae_mm.models.data_preprocessors.view_augments`), and
    normalises every view. CMAE: ``[[top-left crop], [shifted crop, jitter,
    grayscale, blur]]``; ConMIM: ``[[], [jitter, grayscale, blur, solarize]]``.

    A batch whose ``inputs`` are already a list of views (the all-CPU pipelines,
    ``cpu_train_pipeline`` in the dataset configs) and every batch outside training
    are only moved, converted and normalised, as by :class:`SelfSupDataPreprocessor`.

    Masks of the pipeline (ConMIM's ``mask`` in each ``DataSample``) are stacked on
    the host and moved as one (B, ...) tensor; each sample's ``mask`` is then a view
    of it on the device.

    Randomness: the ``d``-th training batch of rank ``r`` draws its parameters with a
    generator on the device seeded with ``derive_seed(seed, r, d)``; ``d`` is the
    Runner's iteration (message-hub info ``'iter'``), so a resume with the same seed
    continues the draws exactly, else a count of the calls. ``seed`` defaults to a
    draw from the global RNG at construction (the run's ``randomness.seed``).

    Args:
        view_augments (Sequence[Sequence[dict]]): One list of ``BATCH_AUGMENTS``
            configs per output view, applied in order.
        shared_augments (Sequence[dict]): Applied to the image before the views are
            made. Defaults to none.
        seed (int, optional): Base seed of the parameter draws.
        non_blocking (bool): Asynchronous host-to-device copies. Defaults to True.
        mean, std, to_rgb, ...: as :class:`SelfSupDataPreprocessor`.

    Returns (``forward``, training, one image per sample): ``dict(inputs=[view_0,
    view_1, ...], data_samples=...)``, each view (B, 3, h, w) float, normalised.
    """

    def __init__(self,
                 view_augments: Sequence[Sequence[dict]],
                 shared_augments: Sequence[dict] = (),
                 seed: Optional[int] = None,
                 non_blocking: bool = True,
                 **kwargs) -> None:
        super().__init__(non_blocking=non_blocking, **kwargs)
        if not view_augments:
            raise ValueError(
                'MultiViewDataPreprocessor needs view_augments, one list per view '
                '(e.g. [[], [dict(type=\'BatchSolarize\')]] for an unchanged and a '
                'perturbed view); use SelfSupDataPreprocessor for no views.')
        self.shared_augments = [BATCH_AUGMENTS.build(a) for a in shared_augments]
        self.view_augments = [[BATCH_AUGMENTS.build(a) for a in view]
                              for view in view_augments]
        self.seed = int(torch.randint(0, 2**62,
                                      (1, ), device='cpu')) if seed is None else seed
        self.draws = 0
        self._generators: Dict[str, torch.Generator] = {}
        self._logged = False

    def view_sizes(self, size: Tuple[int, int]) -> List[Tuple[int, int]]:
        """The (h, w) of each view made from pipeline images of ``size`` (h, w);
        ``ValueError`` naming the options when a crop does not fit."""
        sizes = []
        for view in self.view_augments:
            h, w = size
            for a in view:
                if isinstance(a, BatchShiftedCrop):
                    need = a.size + a.max_shift
                    if h < need or w < need:
                        raise ValueError(
                            f'model.data_preprocessor: a {a.size}px view shifted by '
                            f'up to {a.max_shift}px needs pipeline images of at least '
                            f'{need}x{need}, the pipeline makes {h}x{w}: raise the '
                            f"pipeline's RandomResizedCrop scale or lower "
                            f'BatchShiftedCrop size / max_shift.')
                    h = w = a.size
            sizes.append((h, w))
        return sizes

    def _generator(self, device: torch.device) -> torch.Generator:
        """The generator of this batch's draws, on ``device`` (seeded on the host:
        no synchronisation)."""
        draw = MessageHub.get_current_instance().get_info('iter')
        draw = self.draws if draw is None else draw
        self.draws += 1
        return seeded_generator(self._generators, device,
                                derive_seed(self.seed, get_rank(), draw))

    def _stack_masks(self, data: dict) -> None:
        """Replace the samples' masks by views of one stacked tensor on the device
        (one copy instead of one per sample)."""
        samples = data.get('data_samples')
        if not samples or 'mask' not in samples[0]:
            return
        masks = torch.stack([s.mask for s in samples])  # (B, ...) on the host
        for s in samples:
            del s.mask
        if masks.device.type == 'cpu' and self.device.type != 'cpu':
            masks = masks.pin_memory()
        masks = masks.to(self.device, non_blocking=self._non_blocking)
        for s, m in zip(samples, masks):
            s.set_mask(m)

    def forward(self, data: dict, training: bool = False) -> dict:
        inputs = data['inputs']
        self._stack_masks(data)
        if not training or isinstance(inputs, (list, tuple)):
            return super().forward(data, training)
        if not self._logged:
            print_log(
                f'MultiViewDataPreprocessor: {len(self.view_augments)} views made on '
                f'{self.device} from one image per sample '
                f'({tuple(inputs.shape)}, {inputs.dtype}).',
                logger='current')
            self._logged = True
        data = self.cast_data(data)
        imgs = data['inputs']
        if self._channel_conversion:
            imgs = imgs[:, [2, 1, 0]]
        imgs = imgs.float()  # (B, 3, H, W) RGB in [0, 255]
        generator = self._generator(imgs.device)
        for augment in self.shared_augments:
            imgs = augment(imgs, generator)
        views = []
        for augments in self.view_augments:
            view = imgs
            for augment in augments:
                view = augment(view, generator)
            if self._enable_normalize:
                view = (view - self.mean) / self.std
            views.append(view)
        return dict(inputs=views, data_samples=data['data_samples'])


def select_train_pipeline(cfg, where: str) -> None:
    """Where the augmentation runs (``tools/train.py --augment-on``): ``'device'``
    names the config's ``train_pipeline`` (decode, crop, resize; the rest in the
    model's :class:`MultiViewDataPreprocessor`), ``'cpu'`` its ``cpu_train_pipeline``
    (everything in the workers), as ``train_dataloader.dataset.pipeline``."""
    name = {'device': 'train_pipeline', 'cpu': 'cpu_train_pipeline'}.get(where)
    if name is None:
        raise ValueError(f"--augment-on must be 'device' or 'cpu', got {where!r}.")
    dataset = cfg.train_dataloader.get('dataset', {})
    if name not in cfg or 'pipeline' not in dataset:
        raise ValueError(
            f'--augment-on {where} needs the config to define `{name}` and a '
            f'train_dataloader.dataset with a pipeline (the pretraining configs of '
            f'cmae_mm define train_pipeline and cpu_train_pipeline); set '
            f'train_dataloader.dataset.pipeline in the config instead.')
    preprocessor = cfg.model.get('data_preprocessor') or {}
    if where == 'device' and preprocessor.get('type') != 'MultiViewDataPreprocessor':
        raise ValueError(
            f"--augment-on device needs model.data_preprocessor of type "
            f"'MultiViewDataPreprocessor' to make the views on the device; this "
            f"config has {preprocessor.get('type')!r}.")
    dataset.pipeline = cfg[name]
