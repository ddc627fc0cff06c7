"""k-NN (and quick linear-probe) evaluation as an MMEngine validation loop."""
import copy
import time
from typing import Dict, Optional, Sequence, Union

import torch
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.registry import LOOPS
from mmengine.runner import ValLoop
from torch.utils.data import DataLoader

from .features import extract_features, gather_in_dataset_order
from .knn import knn_class_scores
from .linear_probe import linear_probe_accuracy


@LOOPS.register_module()
class KNNValLoop(ValLoop):
    """Weighted k-NN accuracy of the frozen pretraining encoder, as validation.

    Each run extracts the features of a labelled *bank* (training images, no
    augmentation) and of the validation images with the online or target encoder
    (:func:`~cmae_mm.evaluation.features.extract_features`), gathers the bank on
    every process, and scores each validation image by the weighted vote of its
    ``k`` nearest bank features (:func:`~cmae_mm.evaluation.knn.knn_class_scores`).
    The scores go to ``val_evaluator`` (MMPretrain's ``Accuracy``, top-1 / top-5,
    ``prefix='knn'``), so the metrics are gathered, logged and written to the
    visualisation backends (TensorBoard, W&B) exactly as MMPretrain's validation
    metrics, at the train loop's ``val_interval`` (epochs or iterations), and can
    drive ``save_best``. With ``linear_probe`` set, a logistic regression fitted on
    the bank features (:func:`~cmae_mm.evaluation.linear_probe.linear_probe_accuracy`)
    adds ``linear/top1`` and ``linear/top5``.

    Config (see ``configs/_base_/datasets/*_knn.py``)::

        val_dataloader = dict(...)  # labelled validation images, DefaultSampler
        val_evaluator = dict(type='Accuracy', topk=(1, 5), prefix='knn')
        val_cfg = dict(type='KNNValLoop', bank_dataloader=dict(...), k=20,
                       temperature=0.07, feature='mean', encoder='online')
        train_cfg = dict(val_interval=10)  # epochs (or iterations)

    Args:
        runner: The runner.
        dataloader (DataLoader or dict): Validation images.
        evaluator (Evaluator or dict or list): Metrics of the k-NN scores.
        bank_dataloader (DataLoader or dict): Labelled bank images (training set,
            evaluation pipeline, ``shuffle=False``).
        bank_per_class (int, optional): Keep only the first ``bank_per_class``
            images of each class of the bank dataset (a class-balanced subset for
            monitoring an ImageNet run). None: all.
        k (int): Neighbours. Defaults to 20 (InstDisc, DINO).
        temperature (float): Vote temperature. Defaults to 0.07 (InstDisc, DINO).
        feature (str): ``'mean'`` of the patch tokens (default: the cls token gets
            no direct training signal in MAE, CMAE or ConMIM, whose losses act on
            patch tokens or, for CMAE's contrast, on their mean) or ``'cls'``.
        encoder (str): ``'online'`` (default, the encoder transferred downstream)
            or ``'target'``.
        chunk_size (int): Validation images per similarity block (memory bound
            ``chunk_size x bank size``). Defaults to 1024.
        linear_probe (bool): Also fit and report the quick linear probe.
        fp16 (bool): As :class:`ValLoop` (unused: features are computed in the
            model's precision).
    """

    def __init__(self,
                 runner,
                 dataloader: Union[DataLoader, Dict],
                 evaluator: Union[Evaluator, Dict, list],
                 bank_dataloader: Union[DataLoader, Dict],
                 bank_per_class: Optional[int] = None,
                 k: int = 20,
                 temperature: float = 0.07,
                 feature: str = 'mean',
                 encoder: str = 'online',
                 chunk_size: int = 1024,
                 linear_probe: bool = False,
                 topk: Sequence[int] = (1, 5),
                 fp16: bool = False) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        if isinstance(bank_dataloader, dict):
            bank_dataloader = copy.deepcopy(bank_dataloader)
            if bank_per_class is not None:
                bank_dataloader['dataset'] = self._balanced_subset(
                    bank_dataloader['dataset'], bank_per_class)
            diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
            bank_dataloader = runner.build_dataloader(
                bank_dataloader, seed=runner.seed, diff_rank_seed=diff_rank_seed)
        self.bank_dataloader = bank_dataloader
        self.k, self.temperature, self.chunk_size = k, temperature, chunk_size
        self.feature, self.encoder = feature, encoder
        self.linear_probe, self.topk = linear_probe, tuple(topk)
        self.num_classes = len(self.bank_dataloader.dataset.metainfo['classes'])

    @staticmethod
    def _balanced_subset(dataset_cfg, per_class: int):
        """The first ``per_class`` samples of each class of the dataset."""
        from mmpretrain.registry import DATASETS
        dataset = DATASETS.build(dataset_cfg) if isinstance(dataset_cfg,
                                                            dict) else dataset_cfg
        labels = torch.as_tensor(dataset.get_gt_labels())
        keep = []
        for c in labels.unique():
            keep += torch.nonzero(labels == c)[:per_class, 0].tolist()
        return dataset.get_subset(sorted(keep))

    def run(self) -> dict:
        """Extract the bank, score the validation images, report the metrics."""
        self.runner.call_hook('before_val')
        self.runner.call_hook('before_val_epoch')
        model = self.runner.model
        model.eval()
        start = time.time()
        bank, bank_labels = gather_in_dataset_order(
            *extract_features(model, self.bank_dataloader, self.encoder, self.feature,
                              'bank'), len(self.bank_dataloader.dataset))
        local = extract_features(model, self.dataloader, self.encoder, self.feature,
                                 'queries')
        feats, labels, _ = local
        # score this process's queries batch by batch (the evaluator gathers)
        batch = self.dataloader.batch_size or 1
        scores = knn_class_scores(bank, bank_labels, feats, self.num_classes, self.k,
                                  self.temperature, self.chunk_size)
        self._process(scores, labels, batch)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        if self.linear_probe:
            queries, query_labels = gather_in_dataset_order(
                *local, len(self.dataloader.dataset))
            probe = linear_probe_accuracy(
                bank,
                bank_labels,
                queries,
                query_labels,
                self.num_classes,
                topk=self.topk)
            metrics.update({f'linear/{k}': v for k, v in probe.items()})
        print_log(
            f'k-NN evaluation ({self.encoder} encoder, {self.feature} feature, '
            f'bank {bank.shape[0]}, queries {len(self.dataloader.dataset)}) took '
            f'{time.time() - start:.1f} s',
            logger='current')
        self.runner.call_hook('after_val_epoch', metrics=metrics)
        self.runner.call_hook('after_val')
        return metrics

    def _process(self, scores: torch.Tensor, labels: torch.Tensor, batch: int) -> None:
        from mmpretrain.structures import DataSample
        for start in range(0, scores.shape[0], batch):
            samples = [
                DataSample().set_gt_label(label).set_pred_score(score)
                for score, label in zip(scores[start:start +
                                               batch], labels[start:start + batch])
            ]
            self.evaluator.process(samples)
