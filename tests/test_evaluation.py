"""k-NN, linear probe, the k-NN validation loop, the figures and the Fashion-MNIST
study: values against hand computations, real tiny runs through the tools."""
import glob
import json
import math
import os.path as osp

import pytest
import torch

STUDY = {
    m: osp.join('configs', 'study', f'{m}_vit-tiny-p4_1xb128-5e_fashion-mnist-32px.py')
    for m in ('mae', 'cmae', 'conmim')
}


# ------------------------------------------------------------------------ k-NN core
def test_knn_scores_match_a_hand_computation():
    from cmae_mm.evaluation import knn_accuracy, knn_class_scores
    bank = torch.tensor([[1., 0.], [0., 2.], [1., 1.], [-1., 0.], [0., -3.]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    queries = torch.tensor([[2., 0.1], [0., -1.]])
    k, T = 3, 0.5
    expected = torch.zeros(2, 3)
    for i, q in enumerate(queries.tolist()):
        qn = math.hypot(*q)
        sims = []
        for b, c in zip(bank.tolist(), labels.tolist()):
            s = (q[0] * b[0] + q[1] * b[1]) / (qn * math.hypot(*b))
            sims.append((s, c))
        for s, c in sorted(sims, reverse=True)[:k]:
            expected[i, c] += math.exp(s / T)
    for chunk in (1, 1024):
        got = knn_class_scores(
            bank, labels, queries, 3, k=k, temperature=T, chunk_size=chunk)
        torch.testing.assert_close(got, expected)
    # query 0 -> class 0 (nearest [1, 0]); query 1 -> class 2 ([0, -3])
    acc = knn_accuracy(
        bank, labels, queries, torch.tensor([0, 1]), 3, k=k, temperature=T, topk=(1, 2))
    assert acc == {'top1': 50.0, 'top2': 50.0}
    acc = knn_accuracy(
        bank, labels, queries, torch.tensor([0, 2]), 3, k=k, temperature=T, topk=(1, ))
    assert acc == {'top1': 100.0}


def test_knn_rejects_bad_settings():
    from cmae_mm.evaluation import knn_class_scores
    with pytest.raises(ValueError, match='temperature'):
        knn_class_scores(
            torch.ones(2, 2), torch.zeros(2), torch.ones(1, 2), 2, temperature=0)
    with pytest.raises(ValueError, match='labels'):
        knn_class_scores(torch.ones(2, 2), torch.zeros(3), torch.ones(1, 2), 2)


def test_gather_puts_features_in_dataset_order_and_drops_padding():
    from cmae_mm.evaluation import gather_in_dataset_order
    idx = torch.tensor([2, 0, 3, 1, 0])  # sample 0 twice (sampler padding)
    feats = idx.float()[:, None].repeat(1, 2)
    feats_out, labels_out = gather_in_dataset_order(feats, idx * 10, idx, 4)
    assert torch.equal(feats_out[:, 0], torch.arange(4.))
    assert torch.equal(labels_out, torch.arange(4) * 10)
    with pytest.raises(RuntimeError, match='not seen'):
        gather_in_dataset_order(feats, idx, idx, 5)


def test_linear_probe_separates_separable_classes_and_reaches_the_optimum():
    from cmae_mm.evaluation import fit_logistic_regression, linear_probe_accuracy
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 16, generator=g) * 3
    y = torch.arange(400) % 4
    x = centers[y] + torch.randn(400, 16, generator=g)
    yt = torch.arange(200) % 4
    xt = centers[yt] + torch.randn(200, 16, generator=g)
    acc = linear_probe_accuracy(x, y, xt, yt, 4, topk=(1, 2))
    assert acc['top1'] == 100.0 and acc['weight_decay'] in (1e-5, 1e-4, 1e-3)
    # the fitted weights are a stationary point of the regularised objective
    w = fit_logistic_regression(x, y, 4, weight_decay=1e-2, max_iter=200)
    w.requires_grad_(True)
    xb = torch.cat([x, torch.ones(400, 1)], 1)
    loss = torch.nn.functional.cross_entropy(xb @ w, y) + 1e-2 * w[:-1].pow(2).sum()
    loss.backward()
    assert w.grad.abs().max() < 1e-3


# --------------------------------------------------------------------- encoders
def test_encoder_features_cls_and_mean(registry):
    from mmengine.config import Config

    from cmae_mm.evaluation import encoder_features, get_encoder
    cfg = Config.fromfile(STUDY['cmae'])
    model = registry.build(cfg.model)
    model.init_weights()
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = model.backbone(x, mask=None)[-1]
    assert tokens.shape == (2, 65, 192)
    torch.testing.assert_close(
        encoder_features(get_encoder(model), x, 'mean'), tokens[:, 1:].mean(1))
    torch.testing.assert_close(
        encoder_features(get_encoder(model), x, 'cls'), tokens[:, 0])
    target = get_encoder(model, 'target')
    assert target is model.target_encoder.module[0]
    mae = registry.build(Config.fromfile(STUDY['mae']).model)
    with pytest.raises(ValueError, match='no momentum target'):
        get_encoder(mae, 'target')


# ------------------------------------------------------------ data and configs
@pytest.fixture(scope='module')
def tiny_fmnist(tmp_path_factory) -> str:
    from cmae_mm.testing import build_tiny_fashion_mnist
    root = str(tmp_path_factory.mktemp('fmnist'))
    build_tiny_fashion_mnist(root, num_train=270, num_test=90)
    return root


@pytest.mark.parametrize('method', list(STUDY))
def test_study_configs_build_and_train_one_step(registry, tiny_fmnist, method):
    from mmengine.config import Config
    from mmengine.dataset import default_collate
    from mmpretrain.registry import DATASETS
    cfg = Config.fromfile(STUDY[method])
    assert cfg.train_cfg.max_epochs == 5 and cfg.train_dataloader.batch_size == 128
    assert cfg.val_cfg.type == 'KNNValLoop' and cfg.val_cfg.k == 20
    cfg.train_dataloader.dataset.data_root = tiny_fmnist
    cfg.train_dataloader.dataset.indices = None
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    assert len(dataset) == 270
    batch = default_collate([dataset[i] for i in range(4)])
    model = registry.build(cfg.model)
    model.init_weights()
    data = model.data_preprocessor(batch, True)
    views = data['inputs'] if isinstance(data['inputs'], list) else [data['inputs']]
    assert all(v.shape == (4, 3, 32, 32) for v in views)
    losses = model(**data, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    val = cfg.val_dataloader.dataset
    val.data_root = tiny_fmnist
    assert DATASETS.build(val).test_mode and len(DATASETS.build(val)) == 90


def test_prepare_fashion_mnist_names_the_fix_when_data_is_missing(tmp_path, repo_root):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        'fashion_mnist_data', osp.join(repo_root, 'tools/study/fashion_mnist_data.py'))
    data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(data)
    prepare_fashion_mnist = data.prepare_fashion_mnist
    with pytest.raises(
            FileNotFoundError, match='apt-get install dataset-fashion-mnist'):
        prepare_fashion_mnist(
            str(tmp_path / 'out'), source=str(tmp_path), install=False)


def test_study_tool_exits_with_the_install_command(run_tool, tmp_path):
    done, _ = run_tool([
        'tools/study/fashion_mnist_study.py', '--work-dir',
        str(tmp_path / 'w'), '--data-root',
        str(tmp_path / 'data'), '--source',
        str(tmp_path)
    ],
                       check=False)
    assert done.returncode != 0
    assert 'apt-get install dataset-fashion-mnist' in done.stdout + done.stderr


# ------------------------------------------------- the loop in a training run
@pytest.mark.e2e
def test_knn_loop_runs_during_training_and_logs_its_metrics(run_tool, tiny_fmnist,
                                                            tmp_path):
    work = tmp_path / 'cmae'
    run_tool([
        'tools/train.py', STUDY['cmae'], '--work-dir',
        str(work), '--tensorboard', '--cfg-options',
        f'train_dataloader.dataset.data_root={tiny_fmnist}',
        'train_dataloader.dataset.indices=None', 'train_dataloader.batch_size=64',
        'train_cfg.max_epochs=2', f'val_dataloader.dataset.data_root={tiny_fmnist}',
        f'val_cfg.bank_dataloader.dataset.data_root={tiny_fmnist}',
        'val_cfg.bank_per_class=10', 'train_dataloader.num_workers=0',
        'train_dataloader.persistent_workers=False'
    ],
             timeout=900)
    logs = glob.glob(str(work / '*' / '*.log'))
    text = open(logs[0]).read()
    assert text.count('knn/top1') == 2 and 'linear/top1' in text
    scalars = [
        json.loads(line)
        for line in open(glob.glob(str(work / '*' / 'vis_data' / 'scalars.json'))[0])
    ]
    val = [s for s in scalars if 'knn/top1' in s]
    assert [s['step'] for s in val] == [1, 2]
    assert all(0 <= s['knn/top1'] <= 100 and s['knn/top5'] >= s['knn/top1']
               for s in val)
    assert any('loss_ct' in s for s in scalars)
    # the same metrics went to TensorBoard
    assert glob.glob(str(work / '*' / 'vis_data' / 'events.out.tfevents.*'))
    # the tool on the checkpoint gives the loop's numbers (same bank, same encoder)
    out = tmp_path / 'knn'
    run_tool([
        'tools/analysis/knn_eval.py', STUDY['cmae'],
        str(work / 'epoch_2.pth'), '--work-dir',
        str(out), '--bank-per-class', '10', '--cfg-options',
        f'val_dataloader.dataset.data_root={tiny_fmnist}',
        f'val_cfg.bank_dataloader.dataset.data_root={tiny_fmnist}'
    ])
    result = json.load(open(out / 'knn_metrics.json'))
    assert result['k'] == 20 and result['feature'] == 'mean'
    assert result['metrics']['knn/top1'] == pytest.approx(val[-1]['knn/top1'])


# --------------------------------------------------------------------- figures
def _tiny_checkpoint(registry, config, path, **backbone):
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.model.backbone.update(backbone)
    model = registry.build(cfg.model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return model


@pytest.mark.parametrize('method', ['cmae', 'mae', 'conmim'])
def test_visualize_reconstruction_writes_a_figure(registry, run_tool, photo_folder,
                                                  tmp_path, method):
    import cv2
    ckpt = str(tmp_path / 'tiny.pth')
    _tiny_checkpoint(registry, STUDY[method], ckpt)
    out = str(tmp_path / 'fig.png')
    done, _ = run_tool([
        'tools/analysis/visualize_reconstruction.py', STUDY[method], ckpt, photo_folder,
        '--out', out, '--max-images', '3'
    ])
    img = cv2.imread(out)
    # 3 rows of 3 images of 32 px shown at 96 px, plus labels and the title
    assert img is not None and img.shape[0] >= 3 * 96 and img.shape[1] >= 3 * 96
    assert ('similar patches' in done.stdout) is False  # figure path printed only
    assert osp.basename(out) in done.stdout


def test_visualize_reconstruction_rejects_a_missing_image(run_tool, tmp_path):
    done, _ = run_tool([
        'tools/analysis/visualize_reconstruction.py', STUDY['mae'], 'random',
        str(tmp_path / 'nope.jpg')
    ],
                       check=False)
    assert done.returncode != 0 and 'nope.jpg: no such image' in done.stderr
