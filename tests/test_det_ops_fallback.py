"""NMS and RoIAlign through torchvision (cmae_mm/transfer/det/ops_fallback.py) equal
MMCV's own CPU ops; the forced fallback trains the tiny ViTDet Mask R-CNN.

The fallback is forced here (on CPU) with ``torchvision_ops()``, which
restores MMCV's ``ext_module`` when the block ends; the training run forces it in a
subprocess. An autouse fixture checks that no test leaves it enabled.
"""
import contextlib
import importlib
import logging
import os.path as osp
import re
import sys

import numpy as np
import pytest
import torch

from cmae_mm.transfer.det import ops_fallback
from cmae_mm.transfer.det.ops_fallback import (ENV_VAR, FALLBACK_CALLS,
                                               prepare_detection_ops, torchvision_ops,
                                               torchvision_ops_enabled)

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(autouse=True)
def isolated():
    """Each test starts and must end with MMCV's own ops (the patch is per process)."""
    originals = {
        name: importlib.import_module(name).ext_module
        for name in ops_fallback.PATCHED_MODULES
    }
    assert not torchvision_ops_enabled()
    yield
    leaked = torchvision_ops_enabled()
    ops_fallback.disable_torchvision_ops()
    assert not leaked, 'a test left the torchvision fallback enabled'
    for name, ext in originals.items():
        assert importlib.import_module(name).ext_module is ext


@pytest.fixture
def log_lines():
    """Messages logged through MMEngine's current logger during the test."""
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def _boxes(seed: int, n: int = 300, clusters: int = 12):
    """``n`` boxes (x1, y1, x2, y2) jittered around a few centres (many overlaps),
    distinct scores (no ties)."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(20, 200, size=(clusters, 2))
    sizes = rng.uniform(10, 60, size=(clusters, 2))
    k = rng.integers(clusters, size=n)
    xy = centres[k] + rng.normal(0, 6, size=(n, 2))
    wh = sizes[k] * rng.uniform(0.7, 1.3, size=(n, 2))
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n + 1e-3
    assert len(np.unique(scores)) == n
    return torch.from_numpy(boxes), torch.from_numpy(scores)


def test_mmcv_cuda_ops_status_matches_the_build():
    from mmcv.ops import get_compiling_cuda_version
    usable, reason = ops_fallback.mmcv_cuda_ops_status()
    if get_compiling_cuda_version() == 'not available':  # this project's CPU build
        assert (usable, reason) == (False, 'MMCV was built without CUDA ops')
        assert not ops_fallback.mmcv_cuda_ops_available()
    else:
        assert usable or 'fails on' in reason or 'keeps boxes' in reason


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
@pytest.mark.parametrize('iou', [0.3, 0.5, 0.7])
def test_nms_keeps_the_same_boxes(seed, iou):
    from mmcv.ops import nms
    boxes, scores = _boxes(seed)
    dets, keep = nms(boxes, scores, iou)
    calls = FALLBACK_CALLS['nms']
    with torchvision_ops():
        tv_dets, tv_keep = nms(boxes, scores, iou)
    assert FALLBACK_CALLS['nms'] == calls + 1  # really torchvision's kernel
    assert 20 < len(keep) < 280  # the case suppresses a lot, keeps a lot
    assert tv_keep.dtype == keep.dtype and tv_keep.tolist() == keep.tolist()
    assert torch.equal(tv_dets, dets)


@pytest.mark.parametrize('seed', [0, 1])
def test_nms_offset_score_threshold_and_max_num(seed):
    from mmcv.ops import nms
    boxes, scores = _boxes(seed)
    boxes = boxes.round()  # offset=1 is for integer pixel boxes
    for kwargs in (dict(offset=1), dict(score_threshold=0.4),
                   dict(score_threshold=0.2, max_num=10, offset=1)):
        ref = nms(boxes, scores, 0.5, **kwargs)[1]
        with torchvision_ops():
            got = nms(boxes, scores, 0.5, **kwargs)[1]
        assert got.tolist() == ref.tolist(), kwargs
    # offset changes the result on these boxes, so it was really applied
    assert nms(boxes, scores, 0.5, offset=1)[1].tolist() != \
        nms(boxes, scores, 0.5)[1].tolist()


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_batched_nms_keeps_the_same_boxes(seed):
    """mmcv.ops.batched_nms, as MMDetection's RPN head and multiclass_nms call it:
    per class (coordinate offset trick) and, above split_thr boxes, per class loop."""
    from mmcv.ops import batched_nms
    boxes, scores = _boxes(seed, n=400)
    idxs = torch.from_numpy(np.random.default_rng(seed).integers(5, size=400))
    for cfg in (dict(type='nms', iou_threshold=0.7),
                dict(type='nms', iou_threshold=0.5, split_thr=100)):
        dets, keep = batched_nms(boxes, scores, idxs, dict(cfg))
        with torchvision_ops():
            tv_dets, tv_keep = batched_nms(boxes, scores, idxs, dict(cfg))
        assert tv_keep.tolist() == keep.tolist() and torch.equal(tv_dets, dets)
        assert len(keep) < 400


def _rois(rng, n, img_size, batch):
    x1y1 = rng.uniform(-0.1 * img_size, img_size, size=(n, 2))
    wh = rng.uniform(0.5, 0.6 * img_size, size=(n, 2))
    idx = rng.integers(batch, size=(n, 1))
    return torch.from_numpy(
        np.concatenate([idx, x1y1, x1y1 + wh], 1).astype(np.float32))


@pytest.mark.parametrize('aligned', [True, False])
@pytest.mark.parametrize('output_size,spatial_scale', [((7, 7), 0.25),
                                                       ((14, 14), 0.125),
                                                       ((5, 3), 1 / 16), ((2, 2), 1.0)])
def test_roi_align_and_its_gradient_equal_mmcv(output_size, spatial_scale, aligned):
    """The module (RoI extractors) and the function (mask targets), forward and
    backward, sampling_ratio 0 (adaptive, MMDetection's setting) and 2."""
    from mmcv.ops import RoIAlign, roi_align
    rng = np.random.default_rng(int(spatial_scale * 1000) + output_size[0])
    batch, channels, h, w = 2, 6, 24, 32
    img_size = int(max(h, w) / spatial_scale)
    feat = torch.from_numpy(rng.normal(size=(batch, channels, h, w)).astype(np.float32))
    rois = _rois(rng, 40, img_size, batch)
    weight = torch.from_numpy(
        rng.normal(size=(40, channels, *output_size)).astype(np.float32))
    for sampling_ratio in (0, 2):
        op = RoIAlign(output_size, spatial_scale, sampling_ratio, aligned=aligned)
        results = []
        for fallback in (False, True):
            x = feat.clone().requires_grad_()
            calls = dict(FALLBACK_CALLS)
            with torchvision_ops() if fallback else contextlib.nullcontext():
                out = op(x, rois)
                fn_out = roi_align(x, rois, output_size, spatial_scale, sampling_ratio,
                                   'avg', aligned)
                (out * weight).sum().backward()
            torch.testing.assert_close(fn_out, out, rtol=0, atol=0)
            if fallback:
                assert FALLBACK_CALLS['roi_align_forward'] == \
                    calls.get('roi_align_forward', 0) + 2
                assert FALLBACK_CALLS['roi_align_backward'] == \
                    calls.get('roi_align_backward', 0) + 1
            results.append((out.detach(), x.grad))
        (ref, ref_grad), (got, got_grad) = results
        assert ref.abs().sum() > 0 and ref_grad.abs().sum() > 0
        torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
        torch.testing.assert_close(got_grad, ref_grad, rtol=0, atol=1e-5)


def test_mmcv_use_torchvision_switch_equals_mmcv_for_aligned():
    """MMCV's own ``RoIAlign(use_torchvision=True)`` (the module only) agrees too for
    aligned=True; it ignores pool_mode, which is why it is not the fallback."""
    from mmcv.ops import RoIAlign
    rng = np.random.default_rng(0)
    feat = torch.from_numpy(rng.normal(size=(2, 4, 20, 20)).astype(np.float32))
    rois = _rois(rng, 30, 80, 2)
    ref = RoIAlign(7, 0.25, 0, aligned=True)(feat, rois)
    got = RoIAlign(7, 0.25, 0, aligned=True, use_torchvision=True)(feat, rois)
    torch.testing.assert_close(got, ref, rtol=0, atol=1e-5)
    got_max = RoIAlign(
        7, 0.25, 0, pool_mode='max', aligned=True, use_torchvision=True)(feat, rois)
    assert torch.equal(got_max, got)  # 'max' silently averaged by the switch


def test_max_pool_mode_is_refused_with_the_fix():
    from mmcv.ops import RoIAlign
    feat = torch.zeros(1, 2, 8, 8)
    rois = torch.tensor([[0., 1., 1., 6., 6.]])
    with torchvision_ops():
        with pytest.raises(
                NotImplementedError,
                match=r"pool_mode='max' has no "
                r'torchvision kernel.*tools/setup_env.sh --force'):
            RoIAlign(2, pool_mode='max')(feat, rois)


def test_mask_targets_are_the_same():
    """MMDetection's mask targets (mask_target -> BitmapMasks.crop_and_resize ->
    mmcv.ops.roi_align): the same binary 28x28 targets through torchvision."""
    from mmdet.structures.mask import BitmapMasks, mask_target
    from mmengine.config import ConfigDict
    rng = np.random.default_rng(0)
    h, w, n_gt = 96, 128, 4
    yy, xx = np.mgrid[:h, :w]
    masks = np.stack([((yy - rng.uniform(20, 80))**2 / rng.uniform(100, 600) +
                       (xx - rng.uniform(20, 110))**2 / rng.uniform(100, 900)) < 1
                      for _ in range(n_gt)]).astype(np.uint8)
    gt_masks = BitmapMasks(masks, h, w)
    x1y1 = rng.uniform(0, 90, size=(32, 2))
    proposals = torch.from_numpy(
        np.concatenate([x1y1, x1y1 + rng.uniform(8, 40, size=(32, 2))],
                       1).astype(np.float32))
    assigned = torch.from_numpy(rng.integers(n_gt, size=32))
    cfg = ConfigDict(mask_size=28)
    ref = mask_target([proposals], [assigned], [gt_masks], cfg)
    calls = FALLBACK_CALLS['roi_align_forward']
    with torchvision_ops():
        got = mask_target([proposals], [assigned], [gt_masks], cfg)
        resized = gt_masks.crop_and_resize(proposals, (28, 28), assigned)
    assert FALLBACK_CALLS['roi_align_forward'] >= calls + 2
    assert ref.shape == (32, 28, 28) and 0 < ref.mean() < 1
    assert torch.equal(got, ref)
    np.testing.assert_array_equal(resized.masks, ref.numpy())


def _cfg(scope, **optim_wrapper):
    from mmengine.config import Config
    return Config(dict(default_scope=scope, optim_wrapper=optim_wrapper))


def _no_cuda_ops(monkeypatch):
    """Simulate an MMCV without CUDA ops (this machine's build is one, a GPU
    machine's may not be)."""
    monkeypatch.setattr(ops_fallback, 'mmcv_cuda_ops_status', lambda:
                        (False, 'MMCV was built without CUDA ops'))


FP32 = dict(type='OptimWrapper')
AMP = dict(type='MixedPrecisionOptimWrapper')  # dtype 'auto': bf16 on CPU


def test_prepare_enables_the_fallback_on_cuda_and_logs(monkeypatch, log_lines):
    _no_cuda_ops(monkeypatch)
    monkeypatch.delenv(ENV_VAR, raising=False)
    prepare_detection_ops(_cfg('mmdet', **FP32), 'cpu')  # MMCV's CPU kernels
    prepare_detection_ops(_cfg('mmseg', **AMP), 'cuda')  # not a detection config
    assert not torchvision_ops_enabled()
    prepare_detection_ops(_cfg('mmdet', **AMP), 'cuda:0')
    assert ops_fallback._state['scope'] == 'cuda'
    prepare_detection_ops(_cfg('mmdet', **AMP), 'cuda:0')  # logged once only
    assert log_lines == [
        "MMCV was built without CUDA ops; NMS and RoIAlign run through torchvision's "
        "kernels (CUDA tensors and bfloat16 ones; CPU ones through MMCV's CPU "
        'kernels).'
    ]
    # float32 CPU tensors still use MMCV's kernel
    from mmcv.ops import nms
    calls = FALLBACK_CALLS['nms']
    nms(*_boxes(0), 0.5)
    assert FALLBACK_CALLS['nms'] == calls
    ops_fallback.disable_torchvision_ops()


def test_prepare_refuses_when_the_fallback_is_disabled(monkeypatch):
    _no_cuda_ops(monkeypatch)
    monkeypatch.setenv(ENV_VAR, '0')
    with pytest.raises(RuntimeError) as err:
        prepare_detection_ops(_cfg('mmdet', **AMP), 'cuda')
    msg = str(err.value)
    print(f'\n[{ENV_VAR}=0 on cuda without MMCV CUDA ops] {msg}')
    assert msg.startswith('MMCV was built without CUDA ops')
    assert f'fallback is disabled ({ENV_VAR}=0)' in msg
    assert 'bash tools/setup_env.sh --force' in msg and f'unset {ENV_VAR}' in msg
    with pytest.raises(RuntimeError) as err:
        prepare_detection_ops(_cfg('mmdet', **AMP), 'cpu')  # bfloat16 on CPU
    msg = str(err.value)
    print(f'[{ENV_VAR}=0, bfloat16 on cpu] {msg}')
    assert msg.startswith("MMCV's NMS and RoIAlign have no bfloat16 kernels and this "
                          'config trains in bfloat16 on cpu')
    assert '--precision fp32' in msg
    assert not torchvision_ops_enabled()
    prepare_detection_ops(_cfg('mmdet', **FP32), 'cpu')  # float32 on CPU: fine
    assert not torchvision_ops_enabled()


def test_prepare_routes_bfloat16_training(monkeypatch, log_lines):
    """Mixed precision on a CPU ('auto' = bfloat16) or dtype='bfloat16': MMCV has no
    bfloat16 kernel, so those tensors go through torchvision (in float32)."""
    monkeypatch.delenv(ENV_VAR, raising=False)
    for wrapper in (FP32, dict(AMP, dtype='float32'),
                    dict(type='AmpOptimWrapper', dtype='float16')):
        prepare_detection_ops(_cfg('mmdet', **wrapper), 'cpu')
        assert not torchvision_ops_enabled(), wrapper
    prepare_detection_ops(_cfg('mmdet', **AMP), 'cpu')
    assert ops_fallback._state['scope'] == 'bfloat16'
    assert log_lines == [
        "MMCV's NMS and RoIAlign have no bfloat16 kernels and this config trains in "
        "bfloat16 on cpu; NMS and RoIAlign run through torchvision's kernels "
        '(bfloat16 tensors, computed in float32; the others through MMCV).'
    ]
    ops_fallback.disable_torchvision_ops()
    prepare_detection_ops(_cfg('mmdet', **dict(AMP, dtype='bfloat16')), 'cpu')
    assert ops_fallback._state['scope'] == 'bfloat16'
    ops_fallback.disable_torchvision_ops()


def test_bfloat16_roi_align_and_nms_through_the_fallback():
    """MMCV's own kernels refuse bfloat16; routed, they give MMCV's float32 result
    on the same (bfloat16-rounded) values, in bfloat16, with a gradient."""
    from mmcv.ops import RoIAlign, nms
    rng = np.random.default_rng(0)
    feat = torch.from_numpy(rng.normal(size=(2, 4, 20, 20)).astype(np.float32))
    feat = feat.bfloat16().float()  # exactly representable in bfloat16
    rois = _rois(rng, 30, 80, 2).bfloat16().float()
    op = RoIAlign(7, 0.25, 0)
    with pytest.raises(RuntimeError, match='BFloat16'):
        op(feat.bfloat16(), rois.bfloat16())  # MMCV alone
    ref = op(feat, rois)
    x = feat.bfloat16().requires_grad_()
    with torchvision_ops('bfloat16', force=False):
        got = op(x, rois.bfloat16())
        got.float().sum().backward()
        assert FALLBACK_CALLS['roi_align_backward'] > 0
        boxes, _ = _boxes(1, n=200)
        # distinct scores exact in bfloat16 (no ties: integers below 256 / 256)
        scores = torch.randperm(200, generator=torch.Generator().manual_seed(0)) / 256
        keep = nms(boxes.bfloat16(), scores.bfloat16(), 0.5)[1]
    assert got.dtype == x.grad.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), ref, rtol=1e-2, atol=1e-2)
    xf = feat.clone().requires_grad_()
    op(xf, rois).sum().backward()
    torch.testing.assert_close(x.grad.float(), xf.grad, rtol=1e-2, atol=1e-2)
    ref_keep = nms(boxes.bfloat16().float(), scores.bfloat16().float(), 0.5)[1]
    assert len(keep) > 20 and keep.tolist() == ref_keep.tolist()


def test_prepare_force_and_bad_values(monkeypatch):
    monkeypatch.setenv(ENV_VAR, 'yes')
    with pytest.raises(ValueError, match=f'{ENV_VAR}=.yes.: expected 1'):
        prepare_detection_ops(_cfg('mmdet', **FP32), 'cpu')
    monkeypatch.setenv(ENV_VAR, '1')
    prepare_detection_ops(_cfg('mmdet', **FP32), 'cpu')
    assert ops_fallback._state['scope'] == 'all'
    ops_fallback.disable_torchvision_ops()


@pytest.mark.e2e
def test_tiny_vitdet_trains_with_the_forced_fallback(cmae_pretrain_ckpt, photos,
                                                     run_tool, tmp_path):
    """tools/train.py on the ViTDet Mask R-CNN recipe shrunk by cmae_mm.testing's
    tiny-COCO options, 3 iterations (one optimizer step each) + validation, in a
    subprocess in which CMAE_MM_TORCHVISION_OPS=1 and prepare_detection_ops force
    the fallback."""
    from cmae_mm.testing import build_tiny_coco, det_tiny_options
    coco = build_tiny_coco(str(tmp_path / 'coco'), photos=photos)
    config = osp.join(REPO, 'configs', 'det',
                      'cmae_vit-base-p16_vitdet-mask-rcnn_8xb4-amp-lsj-100e_coco.py')
    argv = [
        'tools/train.py', config, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options',
        *det_tiny_options(cmae_pretrain_ckpt, coco['data_root'], iters=3),
        'optim_wrapper.accumulative_counts=1'
    ]
    driver = ('import runpy, sys\n'
              'from mmengine.config import Config\n'
              'from cmae_mm.transfer.det import ops_fallback as f\n'
              f'f.prepare_detection_ops(Config.fromfile({config!r}), "cpu")\n'
              f'sys.argv = {argv!r}\n'
              'try:\n'
              '    runpy.run_path("tools/train.py", run_name="__main__")\n'
              'finally:\n'
              '    print("FALLBACK_CALLS", dict(f.FALLBACK_CALLS))\n')
    proc, seconds = run_tool([sys.executable, '-c', driver],
                             env={ENV_VAR: '1'},
                             timeout=900)
    out = proc.stdout + proc.stderr
    assert ("forced (CMAE_MM_TORCHVISION_OPS=1 or scope=all); NMS and RoIAlign run "
            "through torchvision's kernels (all tensors).") in out
    calls = eval(re.search(r'FALLBACK_CALLS (\{.*\})', out).group(1))
    # RPN proposals (NMS), box and mask RoI features (RoIAlign) with their gradient,
    # mask targets (RoIAlign), and the validation's NMS and RoIAlign
    assert calls['nms'] >= 3 * 2 and calls["roi_align_forward"] >= 3 * 4
    assert calls['roi_align_backward'] >= 3 * 2
    losses = [float(v) for v in re.findall(r'\bloss: ([0-9.naif]+)', out)]
    assert len(losses) == 3 and all(np.isfinite(losses)), losses
    assert re.search(r'coco/segm_mAP: [0-9.]+', out), out[-3000:]
    print(f'\n[det fallback] 3 it + val: {seconds:.1f}s, calls {calls}, '
          f'losses {losses}')
