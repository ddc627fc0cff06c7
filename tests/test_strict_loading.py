"""Every tool that reads a checkpoint loads it strictly (issue 21): a checkpoint of
another method or architecture stops the tool naming the keys and both models; a NaN
stops it naming the tensor; the converters refuse to write non-finite tensors unless
told to. Real tools/train.py checkpoints, the tools run as subprocesses."""
import json
import os.path as osp

import pytest
import torch

from cmae_mm.engine.checkpoint import (CheckpointError, load_checkpoint_file,
                                       load_model_checkpoint)

STUDY = {
    m: osp.join('configs', 'study', f'{m}_vit-tiny-p4_1xb128-5e_fashion-mnist-32px.py')
    for m in ('mae', 'cmae', 'conmim')
}
NAN_KEY = 'backbone.layers.0.attn.qkv.weight'


@pytest.fixture(scope='module')
def fmnist(tmp_path_factory) -> str:
    from cmae_mm.testing import build_tiny_fashion_mnist
    root = str(tmp_path_factory.mktemp('fmnist'))
    build_tiny_fashion_mnist(root, num_train=90, num_test=30)
    return root


def _data_options(root: str) -> list:
    return [
        f'val_dataloader.dataset.data_root={root}',
        f'val_cfg.bank_dataloader.dataset.data_root={root}'
    ]


@pytest.fixture(scope='module')
def trained(fmnist, run_tool, tmp_path_factory) -> dict:
    """``{method: checkpoint}``: one epoch (2 iterations) of tools/train.py with the
    study configs of CMAE and ConMIM."""
    out = {}
    for method in ('cmae', 'conmim'):
        work = str(tmp_path_factory.mktemp(f'{method}_run'))
        run_tool([
            'tools/train.py', STUDY[method], '--work-dir', work, '--cfg-options',
            f'train_dataloader.dataset.data_root={fmnist}',
            'train_dataloader.dataset.indices=None', 'train_dataloader.batch_size=32',
            'train_dataloader.num_workers=0',
            'train_dataloader.persistent_workers=False', 'train_cfg.max_epochs=1',
            'train_cfg.val_begin=2', *_data_options(fmnist)
        ],
                 timeout=900)
        out[method] = osp.join(work, 'epoch_1.pth')
    return out


@pytest.fixture(scope='module')
def nan_checkpoint(trained, tmp_path_factory) -> str:
    """The CMAE checkpoint with one NaN in the online encoder's first qkv weight."""
    ckpt = load_checkpoint_file(trained['cmae'])
    ckpt['state_dict'][NAN_KEY][0, 0] = float('nan')
    path = str(tmp_path_factory.mktemp('nan') / 'epoch_1_nan.pth')
    torch.save(ckpt, path)
    return path


def _knn_eval(run_tool, config, ckpt, work, fmnist):
    return run_tool([
        'tools/analysis/knn_eval.py', config, ckpt, '--work-dir', work,
        '--bank-per-class', '5', '--cfg-options', *_data_options(fmnist)
    ],
                    check=False)[0]


@pytest.mark.e2e
def test_knn_eval_refuses_a_checkpoint_of_another_method(run_tool, trained, fmnist,
                                                         tmp_path):
    """The user's case: a ConMIM checkpoint with the CMAE config."""
    work = tmp_path / 'knn'
    done = _knn_eval(run_tool, STUDY['cmae'], trained['conmim'], str(work), fmnist)
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-3000:]
    assert not (work / 'knn_metrics.json').exists()
    assert 'is not a checkpoint of the model of' in text
    assert '(model CMAE)' in text and '(model ConMIM)' in text
    # BEiT keys of ConMIM's encoder the CMAE model has not, and the other way round
    assert 'backbone.layers.0.attn.q_bias' in text
    assert 'backbone.layers.0.attn.qkv.bias' in text
    assert 'are not in the model' in text and 'are not in the checkpoint' in text


@pytest.mark.e2e
def test_knn_eval_refuses_a_non_finite_checkpoint(run_tool, trained, nan_checkpoint,
                                                  fmnist, tmp_path):
    work = tmp_path / 'nan'
    done = _knn_eval(run_tool, STUDY['cmae'], nan_checkpoint, str(work), fmnist)
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-3000:]
    assert f"non-finite values (NaN or inf) in 1 tensors: ['{NAN_KEY}']" in text
    assert 'is not a checkpoint of the model' not in text  # the keys fit
    assert not (work / 'knn_metrics.json').exists()
    # the intact checkpoint of the same run is evaluated
    work = tmp_path / 'intact'
    done = _knn_eval(run_tool, STUDY['cmae'], trained['cmae'], str(work), fmnist)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    metrics = json.load(open(work / 'knn_metrics.json'))['metrics']
    assert 0 <= metrics['knn/top1'] <= 100


@pytest.mark.e2e
def test_extract_encoder_refuses_non_finite_unless_allowed(run_tool, nan_checkpoint,
                                                           tmp_path):
    from cmae_mm.engine.checkpoint import load_checkpoint_weights_only
    out = tmp_path / 'encoder.pth'
    args = ['tools/model_converters/extract_encoder.py', nan_checkpoint, str(out)]
    done, _ = run_tool(args, check=False)
    assert done.returncode != 0
    assert f"non-finite values (NaN or inf) in 1 tensors: ['{NAN_KEY}']" in done.stderr
    assert '--allow-non-finite' in done.stderr and 'was not written' in done.stderr
    assert not out.exists()
    done, _ = run_tool(args + ['--allow-non-finite'])
    text = done.stdout + done.stderr
    assert 'WARNING' in text and 'layers.0.attn.qkv.weight' in text
    ckpt = load_checkpoint_file(str(out))
    assert ckpt['meta']['non_finite_tensors'] == ['backbone.layers.0.attn.qkv.weight']
    assert torch.isnan(load_checkpoint_weights_only(str(out))[NAN_KEY]).any()


@pytest.mark.e2e
def test_converter_refuses_non_finite_output(run_tool, nan_checkpoint, tmp_path):
    out = tmp_path / 'official.pth'
    done, _ = run_tool([
        'tools/model_converters/cmae_mm_to_cmae_official.py', nan_checkpoint,
        str(out)
    ],
                       check=False)
    assert done.returncode != 0 and not out.exists()
    assert f"['{NAN_KEY}']" in done.stderr and '--allow-non-finite' in done.stderr


@pytest.mark.e2e
def test_tools_test_refuses_a_checkpoint_of_another_model(run_tool, trained,
                                                          photo_folder, tmp_path):
    """tools/test.py: a CMAE pretraining checkpoint with a classifier config."""
    work = tmp_path / 'test'
    done, _ = run_tool([
        'tools/test.py', 'tests/data/tiny_cls.py', trained['cmae'], '--work-dir',
        str(work), '--cfg-options', f'test_dataloader.dataset.data_root={photo_folder}',
        'test_dataloader.dataset.with_label=False'
    ],
                       check=False)
    text = done.stdout + done.stderr
    assert done.returncode != 0, text[-3000:]
    assert '(model ImageClassifier)' in text and '(model CMAE)' in text
    assert 'head.fc.weight' in text  # a classifier parameter the checkpoint lacks
    assert "of the checkpoint's" in text and 'are not in the model' in text
    assert 'shapes differ: backbone.' in text
    assert not (work / 'metrics.json').exists()


@pytest.mark.e2e
def test_visualize_reconstruction_refuses_another_model(run_tool, trained,
                                                        nan_checkpoint, photo_folder,
                                                        tmp_path):
    out = tmp_path / 'fig.png'
    base = ['tools/analysis/visualize_reconstruction.py']
    done, _ = run_tool(
        base + [STUDY['mae'], trained['cmae'], photo_folder, '--out',
                str(out)],
        check=False)
    assert done.returncode != 0 and not out.exists()
    assert '(model MAE)' in done.stderr and '(model CMAE)' in done.stderr
    done, _ = run_tool(
        base + [STUDY['cmae'], nan_checkpoint, photo_folder, '--out',
                str(out)],
        check=False)
    assert done.returncode != 0 and not out.exists()
    assert NAN_KEY in done.stderr


def test_missing_running_statistics_are_refused(registry, tmp_path):
    """A buffer (BatchNorm's running statistics) missing from the checkpoint is an
    error: the evaluation would otherwise use the initial statistics."""
    from mmengine.config import Config
    model = registry.build(Config.fromfile(STUDY['cmae']).model)
    state_dict = model.state_dict()
    del state_dict['projector.bn0.running_var']
    path = str(tmp_path / 'ckpt.pth')
    torch.save({'state_dict': state_dict, 'meta': {}}, path)
    with pytest.raises(
            CheckpointError,
            match=r"1 of the model's buffers .*projector\.bn0\.running_var"):
        load_model_checkpoint(model, path, 'cmae.py')
    state_dict['projector.bn0.running_var'] = torch.full((512, ), 2.0)
    torch.save({'state_dict': state_dict, 'meta': {}}, path)
    load_model_checkpoint(model, path, 'cmae.py')
    assert (model.projector.bn0.running_var == 2.0).all()
