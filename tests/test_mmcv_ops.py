"""The compiled mmcv ops (mmcv._ext) give correct values on CPU."""
import numpy as np
import pytest
import torch


def test_ops_are_compiled():
    import mmcv
    from mmcv.utils import ext_loader
    assert mmcv.__version__ == '2.1.0'
    ext = ext_loader.load_ext('_ext', ['nms', 'roi_align_forward'])
    assert callable(ext.nms) and callable(ext.roi_align_forward)


def _reference_nms(boxes: np.ndarray, scores: np.ndarray, thr: float) -> list:
    """Greedy NMS written out by hand (boxes x1, y1, x2, y2; mmcv's +0 offset)."""
    order = list(np.argsort(-scores))
    keep = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            xx1, yy1 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            xx2, yy2 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(0., xx2 - xx1) * max(0., yy2 - yy1)
            area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
            iou = inter / (area(boxes[i]) + area(boxes[j]) - inter)
            if iou <= thr:
                rest.append(j)
        order = rest
    return keep


def test_nms_matches_reference():
    from mmcv.ops import nms
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, size=(60, 2))
    wh = rng.uniform(5, 30, size=(60, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.uniform(size=60).astype(np.float32)
    dets, keep = nms(torch.from_numpy(boxes), torch.from_numpy(scores), 0.5)
    expected = _reference_nms(boxes, scores, 0.5)
    assert keep.tolist() == expected
    assert 1 < len(expected) < 60  # the case really suppresses some boxes
    np.testing.assert_allclose(dets[:, 4].numpy(), scores[expected])


@pytest.mark.parametrize('aligned', [True, False])
def test_roi_align_on_linear_feature_map(aligned):
    """On f(x, y) = a x + b y + c bilinear sampling is exact, so every output bin equals
    f at the bin centre (the average of symmetric sample points of a linear
    function)."""
    from mmcv.ops import RoIAlign
    a, b, c = 0.5, -2.0, 3.0
    H, W = 32, 40
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float32),
        torch.arange(W, dtype=torch.float32),
        indexing='ij')
    feat = torch.stack([a * xs + b * ys + c, 2 * (a * xs + b * ys + c)])[None]
    scale, out = 0.5, (3, 4)
    rois = torch.tensor([[0, 10., 12., 50., 40.], [0, 20., 6., 60., 30.]])
    op = RoIAlign(
        out, spatial_scale=scale, sampling_ratio=2, pool_mode='avg', aligned=aligned)
    got = op(feat, rois)
    offset = 0.5 if aligned else 0.0
    for r, (_, x1, y1, x2, y2) in enumerate(rois.tolist()):
        x1, y1, x2, y2 = (v * scale - offset for v in (x1, y1, x2, y2))
        bw, bh = (x2 - x1) / out[1], (y2 - y1) / out[0]
        for i in range(out[0]):
            for j in range(out[1]):
                cx, cy = x1 + (j + 0.5) * bw, y1 + (i + 0.5) * bh
                expected = a * cx + b * cy + c
                assert got[r, 0, i, j].item() == pytest.approx(expected, abs=1e-4)
                assert got[r, 1, i, j].item() == pytest.approx(2 * expected, abs=1e-4)
