"""Connects the bad-image handling of the data pipeline to the run."""
import math
import os.path as osp

from mmengine.dist import get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS


def find_transforms(dataset, cls) -> list:
    """Instances of ``cls`` in the pipeline of ``dataset`` (wrappers followed)."""
    found, seen = [], set()
    stack = [dataset]
    while stack:
        obj = stack.pop()
        if id(obj) in seen or obj is None:
            continue
        seen.add(id(obj))
        pipeline = getattr(obj, 'pipeline', None)
        for t in getattr(pipeline, 'transforms', []) or []:
            if isinstance(t, cls) and id(t) not in seen:  # a wrapper may forward
                seen.add(id(t))  # its dataset's pipeline (SeededDataset)
                found.append(t)
        stack.extend(getattr(obj, 'datasets', []) or [])
        stack.append(getattr(obj, 'dataset', None))
    return found


@HOOKS.register_module()
class DataFaultHook(Hook):
    """Watches the bad images that
    :class:`~cmae_mm.datasets.transforms.SafeLoadImageFromFile` skipped.

    After every iteration it compares their running count (shared with the
    DataLoader workers) with ``max_bad_fraction`` of the images this process reads
    (the dataset divided by the number of processes); beyond it the run stops with an
    error listing the files (from ``bad_images.txt`` in the work dir, which
    :class:`~cmae_mm.engine.runner.CheckedRunner` sets up). After every epoch it
    reports how many were skipped.
    """

    priority = 'NORMAL'

    def before_train(self, runner) -> None:
        from cmae_mm.datasets.transforms import SafeLoadImageFromFile
        dataset = runner.train_dataloader.dataset
        self.transforms = find_transforms(dataset, SafeLoadImageFromFile)
        self.per_process = math.ceil(len(dataset) / get_world_size())
        self.reported = 0

    @staticmethod
    def _bad_files(transform) -> list:
        """Distinct ``path<TAB>reason`` lines of the transform's log."""
        if not (transform.bad_image_log and osp.isfile(transform.bad_image_log)):
            return []
        with open(transform.bad_image_log) as f:
            return list(dict.fromkeys(f.read().splitlines()))

    def _distinct(self) -> int:
        return sum(len(self._bad_files(t)) or t.bad_count for t in self.transforms)

    def after_train_iter(self,
                         runner,
                         batch_idx,
                         data_batch=None,
                         outputs=None) -> None:
        for t in getattr(self, 'transforms', []):
            limit = max(1, int(t.max_bad_fraction * self.per_process))
            if t.bad_count <= limit:
                continue  # reports >= distinct files: nothing to check
            files = self._bad_files(t)
            if len(files) <= limit:
                continue
            listed = '\n  '.join(
                files[:100]) + (f'\n  ... ({len(files)} in {t.bad_image_log})'
                                if len(files) > 100 else '')
            raise RuntimeError(
                f'{len(files)} bad images, more than max_bad_fraction='
                f'{t.max_bad_fraction} of the {self.per_process} images this process '
                f'reads: the dataset is broken. Repair it (tools/analysis/'
                f'check_dataset.py CONFIG lists every bad file), or raise '
                f'max_bad_fraction of SafeLoadImageFromFile. The bad images:\n  '
                f'{listed}')

    def after_train_epoch(self, runner) -> None:
        count = self._distinct()
        if count > self.reported:
            logs = sorted({t.bad_image_log for t in self.transforms if t.bad_image_log})
            runner.logger.warning(
                f'{count - self.reported} bad image(s) were skipped in epoch '
                f'{runner.epoch} ({count} in all); listed in {", ".join(logs)}.')
            self.reported = count
