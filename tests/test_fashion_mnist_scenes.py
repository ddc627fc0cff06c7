"""The Fashion-MNIST scenes of the transfer study (tools/study/fashion_mnist_scenes.py):
COCO JSON and label PNGs that agree, that MMDetection and MMSegmentation read, and
whose splits keep to their own items."""
import importlib.util
import json
import os
import os.path as osp

import numpy as np
import pytest
from PIL import Image

from cmae_mm.testing import build_tiny_fashion_mnist
from cmae_mm.testing.idx import write_idx

NUM_TRAIN, NUM_TEST = 180, 90
#: pixel range of the items of each split in ``source`` (the splits tell apart)
RANGES = {'training': ('train', 20, 120), 'validation': ('t10k', 140, 250)}
NUM_SCENES = {'training': 24, 'validation': 12}


def load_tool(repo_root: str, name: str):
    spec = importlib.util.spec_from_file_location(
        name, osp.join(repo_root, 'tools', 'study', name + '.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tool(repo_root):
    return load_tool(repo_root, 'fashion_mnist_scenes')


@pytest.fixture(scope='module')
def source(tmp_path_factory, repo_root):
    """The tiny IDX set, its training items rescaled to pixels 20-120 and its test
    items to 140-250, each with a black 8x8 corner (a non-square silhouette)."""
    read_idx = load_tool(repo_root, 'fashion_mnist_data').read_idx
    root = str(tmp_path_factory.mktemp('fmnist'))
    build_tiny_fashion_mnist(root, num_train=NUM_TRAIN, num_test=NUM_TEST)
    data = {}
    for split, (prefix, lo, hi) in RANGES.items():
        path = osp.join(root, f'{prefix}-images-idx3-ubyte')
        items = lo + read_idx(path).astype(int) * (hi - lo) // 255
        items[:, :8, :8] = 0
        write_idx(path, items)
        data[split] = (read_idx(path),
                       read_idx(osp.join(root, f'{prefix}-labels-idx1-ubyte')))
    return root, data


@pytest.fixture(scope='module')
def scenes(tool, source, tmp_path_factory):
    out = str(tmp_path_factory.mktemp('scenes'))
    return out, tool.prepare_scenes(
        source[0], out, NUM_SCENES['training'], NUM_SCENES['validation'], seed=0)


def read_split(out: str, split: str):
    """pycocotools' COCO of a split and ``{image id: (image, label PNG)}``."""
    from pycocotools.coco import COCO
    coco = COCO(osp.join(out, 'annotations', f'instances_{split}.json'))
    pngs = {}
    for img in coco.dataset['images']:
        image = Image.open(osp.join(out, 'images', split, img['file_name']))
        label = Image.open(osp.join(out, 'annotations', split, img['file_name']))
        assert image.mode == label.mode == 'L'
        assert image.size == label.size == (img['width'], img['height']) == (96, 96)
        pngs[img['id']] = (np.asarray(image), np.asarray(label))
    return coco, pngs


def test_make_scene_pastes_in_order_and_keeps_the_visible_pixels(tool):
    # constant items: a pixel's value names the item that shows there; item 0 is
    # black (below the silhouette threshold), so it never shows
    values = np.array([5] + [30 + 20 * i for i in range(1, 10)], np.uint8)
    items = np.repeat(values[:, None, None], 28 * 28, 1).reshape(10, 28, 28)
    rng = np.random.default_rng(0)
    occluded = dropped = 0
    for _ in range(150):
        image, instances = tool.make_scene(items, np.arange(10), rng)
        assert image.shape == (96, 96) and image.dtype == np.uint8
        assert 1 <= len(instances) <= 4 and 5 not in image
        masks = np.stack([inst['mask'] for inst in instances])
        assert masks.sum(0).max() == 1  # disjoint
        for inst in instances:
            assert inst['label'] == inst['index'] != 0
            assert (image[inst['mask']] == values[inst['index']]).all()
            ys, xs = np.nonzero(inst['mask'])
            box = (np.ptp(ys) + 1) * (np.ptp(xs) + 1)
            assert inst['mask'].sum() >= max(16, 0.3 * 24 * 24)
            occluded += inst['mask'].sum() < box
        # the last pasted item is whole: a square of 24-48 px
        ys, xs = np.nonzero(instances[-1]['mask'])
        assert np.ptp(ys) == np.ptp(xs) and 24 <= np.ptp(ys) + 1 <= 48
        assert instances[-1]['mask'].sum() == (np.ptp(ys) + 1)**2
        dropped += ((image > 0) & ~masks.any(0)).any()
    assert occluded > 10 and dropped > 0  # both cases are exercised


@pytest.mark.parametrize('split', ['training', 'validation'])
def test_coco_json_and_label_pngs_agree(scenes, tool, split):
    out, done = scenes
    coco, pngs = read_split(out, split)
    assert [(c['id'], c['name']) for c in coco.dataset['categories']] == \
        list(enumerate(tool.CLASSES, 1))
    assert len(pngs) == done['counts'][split]['images'] == NUM_SCENES[split]
    assert len(coco.anns) == done['counts'][split]['instances'] >= len(pngs)
    for img_id, (image, label) in pngs.items():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert anns and set(np.unique(label)) <= set(range(11))
        masks = np.stack([coco.annToMask(a) for a in anns]).astype(bool)
        assert masks.sum(0).max() == 1  # disjoint
        for c in range(1, 11):
            of_c = [m for m, a in zip(masks, anns) if a['category_id'] == c]
            np.testing.assert_array_equal(
                np.any(of_c, 0) if of_c else np.zeros_like(label, bool), label == c)
        for m, a in zip(masks, anns):
            ys, xs = np.nonzero(m)
            assert a['bbox'] == [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1]
            assert a['area'] == m.sum() and a['iscrowd'] == 0
        assert (image[label > 0] > tool.THRESHOLD).all()


def test_each_split_uses_its_own_items(scenes, source, tool):
    out, _ = scenes
    data = source[1]
    for split, (_, lo, hi) in RANGES.items():
        coco, pngs = read_split(out, split)
        items, labels = data[split]
        for a in coco.anns.values():
            assert a['category_id'] == labels[a['fmnist_index']] + 1
            pixels = pngs[a['image_id']][0][coco.annToMask(a).astype(bool)]
            if split == 'training':  # training items have no pixel above 120
                assert pixels.max() <= hi
            else:  # mostly above 140 (below only at the edge of the black corner)
                assert np.median(pixels) >= lo
    # the documented generator, fed the test items, makes the validation scenes again
    coco, pngs = read_split(out, 'validation')
    rng = np.random.default_rng([0, 1])
    for img_id, (image, label) in pngs.items():
        again, instances = tool.make_scene(*data['validation'], rng, size=96)
        np.testing.assert_array_equal(again, image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert [a['fmnist_index'] for a in anns] == [i['index'] for i in instances]


def test_mmdetection_coco_dataset_reads_the_masks(scenes, tool):
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations
    out, _ = scenes
    coco, pngs = read_split(out, 'validation')
    dataset = CocoDataset(
        data_root=out,
        ann_file='annotations/instances_validation.json',
        data_prefix=dict(img='images/validation/'),
        metainfo=dict(classes=tool.CLASSES),
        test_mode=True,
        pipeline=[LoadImageFromFile(),
                  LoadAnnotations(with_bbox=True, with_mask=True)])
    assert len(dataset) == NUM_SCENES['validation']
    for i in range(len(dataset)):
        sample = dataset[i]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[sample['img_id']]))
        np.testing.assert_array_equal(sample['img'][..., 0], pngs[sample['img_id']][0])
        np.testing.assert_array_equal(sample['gt_masks'].masks,
                                      [coco.annToMask(a) for a in anns])
        assert sample['gt_bboxes_labels'].tolist() == [
            a['category_id'] - 1 for a in anns
        ]
        assert sample['gt_bboxes'].tensor.tolist() == [[x, y, x + w, y + h]
                                                       for x, y, w, h in (a['bbox']
                                                                          for a in anns)
                                                       ]
        assert not sample['gt_ignore_flags'].any()


def test_mmsegmentation_reads_the_label_pngs_as_ade20k(scenes, tool):
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations
    out, _ = scenes
    dataset = BaseSegDataset(
        data_root=out,
        data_prefix=dict(
            img_path='images/validation', seg_map_path='annotations/validation'),
        img_suffix='.png',
        seg_map_suffix='.png',
        reduce_zero_label=True,
        metainfo=dict(classes=tool.CLASSES),
        pipeline=[LoadImageFromFile(), LoadAnnotations()])
    assert dataset.metainfo['classes'] == tool.CLASSES
    assert len(dataset) == NUM_SCENES['validation']
    for i in range(len(dataset)):
        sample = dataset[i]
        png = np.asarray(Image.open(sample['seg_map_path']))
        assert osp.basename(sample['seg_map_path']) == osp.basename(sample['img_path'])
        expected = np.where(png == 0, 255, png.astype(int) - 1)
        np.testing.assert_array_equal(sample['gt_seg_map'], expected)


def test_prepare_scenes_skips_complete_output_and_redoes_changed(
        tool, source, tmp_path, run_tool):
    out = str(tmp_path / 'scenes')
    run_tool([
        'tools/study/fashion_mnist_scenes.py', source[0], out, '--num-train', '4',
        '--num-val', '2', '--size', '64'
    ])

    def stamps():
        return {
            osp.join(d, f): os.stat(osp.join(d, f)).st_mtime_ns
            for d, _, files in os.walk(out)
            for f in files
        }

    before = stamps()
    assert len(before) == 2 * 6 + 2 + 1  # PNGs, JSONs, scenes.json
    done = tool.prepare_scenes(source[0], out, num_train=4, num_val=2, size=64)
    assert stamps() == before and done['counts']['training']['images'] == 4
    done = tool.prepare_scenes(source[0], out, num_train=2, num_val=2, size=64, seed=1)
    with open(osp.join(out, 'scenes.json')) as f:
        assert json.load(f) == done and done['params']['seed'] == 1
    after = stamps()
    assert sorted(os.listdir(osp.join(out, 'images', 'training'))) == [
        '000000.png', '000001.png'
    ]  # no stale scenes of the earlier run
    assert all(after[p] != before[p] for p in after)
