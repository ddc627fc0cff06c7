"""Pretraining speed against the hardware's own limit, and data-pipeline speed.

    python tools/analysis/benchmark_pretrain.py CONFIG [CONFIG ...]
        [--precision fp32 bf16 ...] [--batch 8] [--iters 5] [--warmup 2]
        [--compile] [--profile] [--threads N] [--json FILE] [--cfg-options k=v ...]
    python tools/analysis/benchmark_pretrain.py CONFIG [CONFIG ...] --pipeline
        [--images 300] [--repeats 5] [--batch 8] [--profile] [--json FILE]

A CONFIG may carry its own overrides after ``::``, so that variants run side by side
in one process, e.g. ConMIM with MMPretrain's hand-written attention::

    configs/pretrain/conmim_vit-base-p16_8xb256-amp-coslr-300e_in1k.py::model.backbone.use_sdpa=False

**Training** (default): for each config and precision, on the device MMEngine picks
(``get_device()``: a GPU if there is one, else the CPU), the config's model (SyncBN ->
BN) and optimizer, wrapped as ``tools/train.py --precision`` does (fp32: MMEngine's
``OptimWrapper``; fp16 / bf16: :class:`MixedPrecisionOptimWrapper`), trains on one
batch made by the config's own training pipeline from the photographs bundled with
scikit-image. Reported per row:

- images/s: ``batch`` / median seconds of one training iteration over ``--iters``
  after ``--warmup``: ``model.train_step`` (data preprocessor, forward, backward,
  optimizer step) and, for models with a momentum target, ``model.update_target``
  (what ``TargetUpdateHook`` runs after each step);
- GFLOPs/image of forward + backward, counted by ``torch.utils.flop_counter
  .FlopCounterMode`` (matrix products, convolutions, attention; 1 multiply-add = 2
  FLOPs; elementwise work and the optimizer are not counted, as usual for MFU);
- achieved GFLOP/s = GFLOPs/image x images/s, and MFU = achieved / peak, where peak
  is the rate of an n x n matrix product (``--peak-size``, default 3072) in the
  row's dtype on the same device and threads, measured by this tool right before
  the row (so a machine that slows down lowers both); on a CPU, float32's rate where
  that is higher (a CPU without native bf16 / fp16 matrix units, e.g. AVX2 only,
  where a half-precision product runs 20-50x slower than a float32 one; the JSON
  rows' ``peak_dtype`` says which);
- peak memory during the timed iterations: on a GPU ``torch.cuda
  .max_memory_allocated``; on a CPU the process's peak resident set (``VmHWM``, reset
  through ``/proc/self/clear_refs`` before timing; it includes Python, the libraries
  and the batch);
- in the JSON rows also the last timed step's loss, the autocast dtype (``None``:
  float32) and the loss scale after the steps (``None``: no ``GradScaler``).

On a CPU the tool tunes glibc malloc as ``tools/train.py`` does
(``cmae_mm/engine/cpu_allocator.py``; ``--default-malloc`` leaves it alone).
``--compile`` compiles every transformer block of the model in place, as a config's
``compile_blocks = True`` does in ``CheckedRunner``
(:func:`cmae_mm.models.utils.compile_blocks`: ``torch.compile``'s defaults; MMEngine's
``compile=True``, the whole ``train_step``, fails on these configs:
docs/performance.md, "Compiled blocks"); the first (compiling) iteration's seconds
are the ``compile s`` column. ``--profile`` adds a ``torch.profiler`` table of one
more iteration per row: the operators by self time and the share of matrix products;
with ``--pipeline``, the milliseconds per image spent in each transform.

**Data pipeline** (``--pipeline``), per config, in one table (and ``--json``):

- the CPU part: ``train_dataloader.dataset.pipeline`` as the config runs it (with
  augmentation on the device: decode, crop, resize, pack), from file to packed
  tensors, in this process on one core (torch, OpenCV and OpenMP limited to 1
  thread) on ImageNet-sized JPEGs (500 x 375 and 375 x 500, quality 90) that it
  writes from the bundled photographs; images/s per core, median and best of
  ``--repeats`` passes of ``--images`` images; ``vs MAE``: that rate over the rate of
  the first MAE config (``mae_*``) of the run (decode, one crop, flip: the floor of
  CPU work per image);
- the all-CPU variant: the same for ``cpu_train_pipeline`` where the config defines
  one that differs (the whole augmentation in the workers: the "before" row);
- the device part: ``model.data_preprocessor`` (built with MMPretrain's ``MODELS``)
  on the device MMEngine picks, called with ``training=True`` on ``--batch`` outputs
  of the CPU part collated by the config's ``collate_fn`` (page-locked on a GPU
  where the config pins memory): ms per image and images/s, median of at least 5
  calls after 3 (on a CPU, one thread). For a ``SelfSupDataPreprocessor`` this is
  the copy and normalisation only.

A DataLoader worker is one such process, so a GPU that trains at R images/s needs
about R / (the CPU-part rate) loader cores (docs/performance.md).
"""
import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: --precision -> torch dtype name of the matrix-product peak
PEAK_DTYPES = {'fp32': 'float32', 'bf16': 'bfloat16', 'fp16': 'float16'}
#: profiler operator names counted as matrix products
MATMUL_OPS = ('aten::mm', 'aten::addmm', 'aten::bmm', 'aten::baddbmm', 'aten::matmul',
              'aten::linear', 'aten::convolution', 'aten::_convolution',
              'aten::mkldnn_convolution', 'aten::_scaled_dot_product_flash_attention',
              'aten::_scaled_dot_product_flash_attention_for_cpu',
              'aten::_scaled_dot_product_efficient_attention',
              'aten::_scaled_dot_product_cudnn_attention', 'aten::convolution_backward',
              'aten::_scaled_dot_product_flash_attention_for_cpu_backward',
              'aten::_scaled_dot_product_flash_attention_backward',
              'aten::_scaled_dot_product_efficient_attention_backward',
              'aten::_scaled_dot_product_cudnn_attention_backward')


def parse_args(argv=None) -> argparse.Namespace:
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        'configs', nargs='+', help='pretraining config files (PATH[::key=value...])')
    parser.add_argument(
        '--precision',
        nargs='+',
        default=['fp32'],
        choices=sorted(PEAK_DTYPES),
        help='precisions to train in (as tools/train.py --precision)')
    parser.add_argument(
        '--batch',
        type=int,
        default=8,
        help='images per batch (training; --pipeline: the device part)')
    parser.add_argument(
        '--iters', type=int, default=5, help='timed iterations (median reported)')
    parser.add_argument('--warmup', type=int, default=2, help='untimed iterations')
    parser.add_argument(
        '--compile',
        action='store_true',
        help='torch.compile every transformer block in place (compile_blocks=True)')
    parser.add_argument(
        '--profile', action='store_true', help='profile one more iteration per row')
    parser.add_argument(
        '--flops-only',
        action='store_true',
        help='count the FLOPs per image, time nothing (e.g. for a ViT-L on a CPU)')
    parser.add_argument(
        '--peak-size', type=int, default=3072, help='side of the peak matmul')
    parser.add_argument(
        '--pipeline',
        action='store_true',
        help='benchmark the data pipelines instead of the training step')
    parser.add_argument(
        '--images', type=int, default=300, help='images per pipeline pass')
    parser.add_argument(
        '--repeats', type=int, default=5, help='pipeline passes (median, best)')
    parser.add_argument(
        '--threads',
        type=int,
        default=None,
        help='torch CPU threads for training (default: torch default)')
    parser.add_argument(
        '--default-malloc',
        action='store_true',
        help="on a CPU, leave glibc malloc's defaults (tools/train.py tunes it: "
        'cmae_mm/engine/cpu_allocator.py)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--json', help='also write the rows to this JSON file')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='overrides applied to every config')
    return parser.parse_args(argv)


def load_config(spec: str, cfg_options: dict = None):
    """``PATH[::key=value::...]`` -> (label, Config)."""
    from mmengine.config import Config, DictAction
    path, *overrides = spec.split('::')
    cfg = Config.fromfile(path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    for item in overrides:
        if '=' not in item:
            raise ValueError(f'{spec!r}: an override after "::" must be key=value, '
                             f'got {item!r}.')
        key, value = item.split('=', 1)
        cfg.merge_from_dict({key: DictAction._parse_iterable(value)})
    label = osp.basename(path)
    return '::'.join([label] + overrides), cfg


def device_name(device: str) -> str:
    import platform

    import torch
    if device.startswith('cuda'):
        return torch.cuda.get_device_name()
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or device


def synchronize(device: str) -> None:
    import torch
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def matmul_peak(device: str, dtype: str, n: int, seconds: float = 2.0) -> float:
    """GFLOP/s of an n x n @ n x n product in ``dtype`` on ``device`` (best of
    repeated timings over about ``seconds``)."""
    import torch
    a = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    b = torch.randn(n, n, device=device).to(getattr(torch, dtype))
    torch.mm(a, b)
    synchronize(device)
    best, spent = float('inf'), 0.0
    while spent < seconds or best == float('inf'):
        t0 = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        dt = time.perf_counter() - t0
        best, spent = min(best, dt), spent + dt
    return 2 * n**3 / best / 1e9


class PeakMemory:
    """Peak memory (bytes) of the code inside ``with``: CUDA allocator or CPU RSS."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.peak = None

    def __enter__(self) -> 'PeakMemory':
        import torch
        if self.device.startswith('cuda'):
            torch.cuda.reset_peak_memory_stats()
        else:
            try:  # reset VmHWM to the current RSS (Linux >= 4.0)
                with open('/proc/self/clear_refs', 'w') as f:
                    f.write('5')
            except OSError:
                pass  # peak since the process started
        return self

    def __exit__(self, *exc) -> None:
        import resource

        import torch
        if self.device.startswith('cuda'):
            self.peak = torch.cuda.max_memory_allocated()
            return
        try:
            with open('/proc/self/status') as f:
                for line in f:
                    if line.startswith('VmHWM:'):
                        self.peak = int(line.split()[1]) * 1024
                        return
        except OSError:
            pass
        self.peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def build_batch(cfg, batch: int, files: list) -> dict:
    """One collated batch from the config's own training pipeline."""
    import numpy as np
    from mmengine.dataset import default_collate
    pipeline = build_pipeline(cfg)
    np.random.seed(0)
    items = [
        pipeline(dict(img_path=files[i % len(files)], sample_idx=i))
        for i in range(batch)
    ]
    return default_collate(items)


def build_pipeline(cfg, transforms: list = None):
    """``transforms`` (default: the config's ``train_dataloader.dataset.pipeline``)
    as a ``Compose``."""
    from mmengine.dataset import Compose
    from mmengine.registry import TRANSFORMS
    if transforms is None:
        transforms = cfg.train_dataloader.dataset.pipeline
    return Compose([TRANSFORMS.build(t) for t in transforms])


def count_flops(model, data: dict) -> int:
    """Forward + backward FLOPs of one ``mode='loss'`` pass over ``data``."""
    from torch.utils.flop_counter import FlopCounterMode
    model.zero_grad(set_to_none=True)
    processed = model.data_preprocessor(data, True)
    with FlopCounterMode(display=False) as counter:
        losses = model(**processed, mode='loss')
        loss, _ = model.parse_losses(losses)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def profile_step(model, data: dict, optim_wrapper, device: str) -> dict:
    """Self time per operator of one train step; matmul share of the total."""
    from torch.profiler import ProfilerActivity, profile
    activities = [ProfilerActivity.CPU]
    if device.startswith('cuda'):
        activities.append(ProfilerActivity.CUDA)
    with profile(activities=activities) as prof:
        train_iteration(model, data, optim_wrapper, device)
    events = prof.key_averages()
    attr = 'self_device_time_total' if device.startswith('cuda') else \
        'self_cpu_time_total'
    total = sum(getattr(e, attr) for e in events)
    matmul = sum(getattr(e, attr) for e in events if e.key in MATMUL_OPS)
    top = sorted(events, key=lambda e: getattr(e, attr), reverse=True)[:15]
    return dict(
        matmul_share=matmul / max(total, 1),
        top=[(e.key, getattr(e, attr) / 1e6, getattr(e, attr) / max(total, 1))
             for e in top])


def train_iteration(model, data: dict, optim_wrapper, device: str) -> dict:
    """What a Runner does per iteration, less data loading and logging; returns the
    step's log variables (``model.train_step``'s, e.g. ``'loss'``)."""
    log_vars = model.train_step(data, optim_wrapper)
    if hasattr(model, 'update_target'):  # TargetUpdateHook.after_train_iter
        model.update_target(0, 10**6)
    synchronize(device)
    return log_vars


def build_model(cfg, seed: int, device: str):
    import torch
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        torch.manual_seed(seed)
        model = revert_sync_batchnorm(MODELS.build(cfg.model))
        model.init_weights()
    return model.to(device).train()


def benchmark_train(label: str, cfg, precision: str, args, files: list,
                    device: str) -> dict:
    import copy

    from mmengine.logging import MessageHub
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope, init_default_scope

    from cmae_mm.engine.optimizers import set_precision
    from cmae_mm.models.utils import compile_blocks
    cfg = copy.deepcopy(cfg)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    set_precision(cfg, precision, f'--precision {precision}')
    model = build_model(cfg, args.seed, device)
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        data = build_batch(cfg, args.batch, files)
    hub = MessageHub.get_current_instance()
    hub.update_info('max_iters', 10**6)
    hub.update_info('iter', 0)
    row = dict(
        config=label,
        algorithm=type(model).__name__,
        precision=precision,
        params_m=sum(p.numel() for p in model.parameters()) / 1e6,
        batch=args.batch,
        gflops_per_image=count_flops(model, data) / 1e9 / args.batch)
    if args.flops_only:
        return row
    compile_s = None
    if args.compile:
        # as CheckedRunner for compile_blocks=True: every transformer block, in place
        row['compiled_blocks'] = len(compile_blocks(model))
        t0 = time.perf_counter()
        train_iteration(model, data, optim_wrapper, device)
        compile_s = time.perf_counter() - t0
    peak_dtype = PEAK_DTYPES[precision]
    peak = matmul_peak(device, peak_dtype, args.peak_size)
    if device == 'cpu' and peak_dtype != 'float32':
        # a CPU without native bf16 / fp16 matrix units (e.g. AVX2 only) multiplies
        # half-precision matrices far slower than float32 ones: its peak is float32's
        fp32_peak = matmul_peak(device, 'float32', args.peak_size)
        if fp32_peak > peak:
            peak, peak_dtype = fp32_peak, 'float32'
    for _ in range(args.warmup):
        train_iteration(model, data, optim_wrapper, device)
    times = []
    with PeakMemory(device) as memory:
        for _ in range(args.iters):
            t0 = time.perf_counter()
            log_vars = train_iteration(model, data, optim_wrapper, device)
            times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    achieved = row['gflops_per_image'] * args.batch / sec
    scaler = getattr(optim_wrapper, 'loss_scaler', None)  # float16: a GradScaler
    autocast = getattr(optim_wrapper, 'cast_dtype', None)  # fp32: no autocast
    row.update(
        sec_per_iter=sec,
        times=times,
        images_per_s=args.batch / sec,
        achieved_gflops=achieved,
        peak_gflops=peak,
        peak_dtype=peak_dtype,
        mfu=achieved / peak,
        peak_memory_gib=memory.peak / 2**30,
        compile_s=compile_s,
        loss=float(log_vars['loss'].detach()),
        autocast_dtype=None if autocast is None else str(autocast)[len('torch.'):],
        loss_scale=None if scaler is None else float(scaler.get_scale()))
    if args.profile:
        row['profile'] = profile_step(model, data, optim_wrapper, device)
    return row


def write_imagenet_sized_jpegs(out_dir: str) -> list:
    """The bundled photographs as 500 x 375 and 375 x 500 JPEGs (quality 90):
    resized to cover, centre-cropped. Returns the file paths."""
    import cv2

    from cmae_mm.testing.photos import load_photos
    paths = []
    for name, rgb in load_photos().items():
        for w, h in ((500, 375), (375, 500)):
            s = max(w / rgb.shape[1], h / rgb.shape[0])
            img = cv2.resize(
                rgb, (max(w, round(rgb.shape[1] * s)), max(h, round(rgb.shape[0] * s))),
                interpolation=cv2.INTER_AREA)
            y, x = (img.shape[0] - h) // 2, (img.shape[1] - w) // 2
            path = osp.join(out_dir, f'{name}_{w}x{h}.jpg')
            cv2.imwrite(path, img[y:y + h, x:x + w, ::-1].copy(),
                        [cv2.IMWRITE_JPEG_QUALITY, 90])
            paths.append(path)
    return paths


def time_transforms(pipeline, prefix: str = '', seconds: dict = None) -> dict:
    """Wrap ``transform`` of every transform in ``pipeline``, nested ones included
    (``Compose.transforms``, ``PixelShift.target_pipeline``, ``MultiView.pipelines``,
    ``RandomApply.transforms``), to add its seconds to the returned dict
    (``'index:Name'`` -> seconds; a nested one's time is in its parent's too)."""
    seconds = {} if seconds is None else seconds
    children = getattr(pipeline, 'transforms', None)
    if children is None:
        return seconds
    for i, t in enumerate(children):
        name = f'{prefix}{i}:{type(t).__name__}'
        if hasattr(t, 'transform'):
            seconds[name] = 0.0

            def timed(results, _f=t.transform, _name=name):
                t0 = time.perf_counter()
                out = _f(results)
                seconds[_name] += time.perf_counter() - t0
                return out

            t.transform = timed
        nested = [getattr(t, 'target_pipeline', None), getattr(t, 'transforms', None)]
        nested += list(getattr(t, 'pipelines', None) or [])
        for j, sub in enumerate(n for n in nested if n is not None):
            if not hasattr(sub, 'transforms') and isinstance(sub, (list, tuple)):
                continue
            time_transforms(sub, f'{prefix}{i}.{j}.', seconds)
    return seconds


def time_pipeline(label: str, cfg, transforms: list, args, files: list) -> dict:
    """Images per second per core of the pipeline ``transforms`` (one thread)."""
    import numpy as np
    from mmengine.registry import DefaultScope, init_default_scope
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        pipeline = build_pipeline(cfg, transforms)
    np.random.seed(args.seed)
    for i in range(20):  # warm the file cache and the libraries
        pipeline(dict(img_path=files[i % len(files)], sample_idx=i))
    seconds = time_transforms(pipeline) if args.profile else {}
    rates, cpu_rates = [], []
    for r in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(args.images):
            if pipeline(dict(img_path=files[i % len(files)], sample_idx=i)) is None:
                raise RuntimeError(f'{label}: the pipeline dropped {files[i]}')
        rates.append(args.images / (time.perf_counter() - t0))
        cpu_rates.append(args.images / (time.process_time() - c0))
    return dict(
        images=args.images,
        repeats=args.repeats,
        images_per_s_per_core=statistics.median(rates),
        best_images_per_s_per_core=max(rates),
        cpu_images_per_s=statistics.median(cpu_rates),
        rates=rates,
        ms_per_image={
            k: v * 1e3 / (args.repeats * args.images)
            for k, v in seconds.items()
        })


def build_collate(cfg):
    """The config's ``train_dataloader.collate_fn``, as MMEngine's
    ``Runner.build_dataloader`` builds it (default ``pseudo_collate``)."""
    import functools

    from mmengine.registry import FUNCTIONS
    collate_cfg = dict(
        cfg.train_dataloader.get('collate_fn') or dict(type='pseudo_collate'))
    collate = collate_cfg.pop('type')
    if isinstance(collate, str):
        collate = FUNCTIONS.get(collate)
    return functools.partial(collate, **collate_cfg)


def time_device_part(label: str, cfg, args, files: list, device: str) -> dict:
    """Seconds of ``cfg.model.data_preprocessor(batch, training=True)`` on
    ``device``: a batch of ``--batch`` outputs of the config's training pipeline,
    collated by its ``collate_fn`` (page-locked where the config's DataLoader pins
    memory and the device is a GPU); median of ``max(--repeats, 5)`` calls after 3."""
    import numpy as np
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS
    from torch.utils.data._utils.pin_memory import pin_memory
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        pipeline = build_pipeline(cfg)
        preprocessor = MODELS.build(cfg.model.data_preprocessor).to(device)
        collate = build_collate(cfg)
    np.random.seed(args.seed)
    data = collate([
        pipeline(dict(img_path=files[i % len(files)], sample_idx=i))
        for i in range(args.batch)
    ])
    if device.startswith('cuda') and cfg.train_dataloader.get('pin_memory'):
        data = pin_memory(data)
    for _ in range(3):
        preprocessor(data, True)
    synchronize(device)
    times = []
    for _ in range(max(args.repeats, 5)):
        t0 = time.perf_counter()
        preprocessor(data, True)
        synchronize(device)
        times.append(time.perf_counter() - t0)
    sec = statistics.median(times)
    return dict(
        preprocessor=type(preprocessor).__name__,
        device=device,
        device_name=device_name(device),
        batch=args.batch,
        times=times,
        ms_per_image=sec * 1e3 / args.batch,
        images_per_s=args.batch / sec)


def benchmark_pipeline(label: str, cfg, args, files: list, device: str) -> dict:
    """One row of ``--pipeline``: the CPU part (``train_dataloader.dataset
    .pipeline``), the all-CPU variant (``cpu_train_pipeline`` where the config
    defines a different one, else None) and the device part (the data
    preprocessor)."""
    pipeline = cfg.train_dataloader.dataset.pipeline
    row = dict(config=label, **time_pipeline(label, cfg, pipeline, args, files))
    variant = cfg.get('cpu_train_pipeline')
    row['all_cpu'] = None
    if variant is not None and list(variant) != list(pipeline):
        print(f'[benchmark] all-CPU variant of {label} ...', flush=True)
        row['all_cpu'] = time_pipeline(label, cfg, variant, args, files)
    row['device_part'] = time_device_part(label, cfg, args, files, device)
    return row


def add_mae_ratios(rows: list) -> None:
    """``vs_mae``: each row's CPU-part rate / that of the first MAE config
    (``mae_*``) of the run; None without one."""
    mae = next(
        (r
         for r in rows if osp.basename(r['config'].split('::')[0]).startswith('mae_')),
        None)
    for r in rows:
        r['vs_mae'] = (
            r['images_per_s_per_core'] / mae['images_per_s_per_core'] if mae else None)


def print_train(rows: list, args, device: str) -> None:
    import torch
    if args.flops_only:
        print(f'\nforward + backward GFLOPs per image (FlopCounterMode, batch '
              f'{args.batch})')
        for r in rows:
            print(f'{r["config"][:70]:70s} {r["algorithm"]:8s} {r["params_m"]:7.1f} M '
                  f'params {r["gflops_per_image"]:8.2f} GFLOPs/img')
        return
    print(f'\n{device_name(device)} ({device}), torch {torch.__version__}, '
          f'{torch.get_num_threads()} threads, batch {args.batch}; median of '
          f'{args.iters} train steps after {args.warmup} warm-up; peak = '
          f'{args.peak_size}^2 matmul in the same dtype (on a CPU float32 where faster)'
          f'{"; compiled blocks" if args.compile else ""}')
    header = (f'{"config":58s} {"prec":4s} {"img/s":>7s} {"s/iter":>7s} '
              f'{"GFLOPs/img":>10s} {"GFLOP/s":>8s} {"peak":>7s} {"MFU":>6s} '
              f'{"mem GiB":>7s}' + (f' {"compile s":>9s}' if args.compile else ''))
    print(header)
    print('-' * len(header))
    for r in rows:
        print(f'{r["config"][:58]:58s} {r["precision"]:4s} {r["images_per_s"]:7.3f} '
              f'{r["sec_per_iter"]:7.3f} {r["gflops_per_image"]:10.2f} '
              f'{r["achieved_gflops"]:8.1f} {r["peak_gflops"]:7.1f} '
              f'{r["mfu"]:6.1%} {r["peak_memory_gib"]:7.2f}' +
              (f' {r["compile_s"]:9.1f}' if args.compile else ''))
    fp32 = {r['config']: r for r in rows if r['precision'] == 'fp32'}
    for r in rows:
        if r['precision'] != 'fp32' and r['config'] in fp32:
            base = fp32[r['config']]
            print(f'  {r["config"]}: {r["precision"]} is '
                  f'{r["images_per_s"] / base["images_per_s"]:.2f}x fp32')
    for r in rows:
        if 'profile' in r:
            p = r['profile']
            print(f'\nprofile {r["config"]} {r["precision"]}: matrix products '
                  f'{p["matmul_share"]:.1%} of operator self time')
            for key, sec, share in p['top']:
                print(f'  {key:56s} {sec:8.3f} s {share:6.1%}')


def print_pipeline(rows: list, args) -> None:

    def num(value, fmt):
        return '-' if value is None else format(value, fmt)

    print(f'\ndata pipeline: CPU part (train_dataloader.dataset.pipeline) on one '
          f'core, {args.repeats} passes of {args.images} ImageNet-sized JPEGs '
          f'(500x375 / 375x500); all-CPU variant: cpu_train_pipeline where the config '
          f'has a different one; device part: model.data_preprocessor(batch of '
          f'{args.batch}, training=True; on a CPU, one thread)')
    header = (f'{"config":52s} {"CPU img/s/core":>14s} {"best":>7s} {"vs MAE":>6s} '
              f'{"all-CPU img/s/core":>18s} {"device ms/img":>13s} '
              f'{"device img/s":>12s}  device')
    print(header)
    print('-' * len(header))
    for r in rows:
        dev = r['device_part']
        all_cpu = r['all_cpu'] or {}
        print(f'{r["config"][:52]:52s} {r["images_per_s_per_core"]:14.1f} '
              f'{r["best_images_per_s_per_core"]:7.1f} {num(r["vs_mae"], "6.2f"):>6s} '
              f'{num(all_cpu.get("images_per_s_per_core"), "18.1f"):>18s} '
              f'{dev["ms_per_image"]:13.3f} {dev["images_per_s"]:12.1f}  '
              f'{dev["preprocessor"]} on {dev["device_name"]} ({dev["device"]})')
    for r in rows:
        for part, timed in (('CPU part', r), ('all-CPU variant', r['all_cpu'] or {})):
            if timed.get('ms_per_image'):
                print(f'\nprofile {r["config"]} ({part}): ms per image in each '
                      f'transform (timing on; a nested transform counts in its '
                      f'parent too)')
                for name, ms in timed['ms_per_image'].items():
                    print(f'  {name:54s} {ms:6.2f}')


def main(argv=None) -> list:
    sys.path.insert(0, REPO_ROOT)
    args = parse_args(argv)
    import torch
    from mmengine.device import get_device
    from mmengine.logging import MMLogger

    import cmae_mm  # noqa: F401
    from cmae_mm.engine.cpu_allocator import keep_freed_memory

    # the optimizer constructor logs one line per parameter: keep errors only
    MMLogger.get_instance('benchmark_pretrain', log_level='ERROR')
    configs = [load_config(spec, args.cfg_options) for spec in args.configs]
    rows = []
    with tempfile.TemporaryDirectory() as photo_dir:
        files = write_imagenet_sized_jpegs(photo_dir)
        device = get_device()
        if args.pipeline:
            import cv2
            torch.set_num_threads(1)
            cv2.setNumThreads(1)
            for label, cfg in configs:
                print(f'[benchmark] pipeline of {label} ...', flush=True)
                rows.append(benchmark_pipeline(label, cfg, args, files, device))
            add_mae_ratios(rows)
            print_pipeline(rows, args)
        else:
            if device == 'cpu' and not args.default_malloc:
                keep_freed_memory()  # as tools/train.py on a CPU
            if args.threads:
                torch.set_num_threads(args.threads)
            for label, cfg in configs:
                for precision in args.precision:
                    print(f'[benchmark] {label} {precision} ...', flush=True)
                    rows.append(
                        benchmark_train(label, cfg, precision, args, files, device))
            print_train(rows, args, device)
    if args.json:
        import json
        with open(args.json, 'w') as f:
            json.dump(rows, f, indent=1)
    return rows


if __name__ == '__main__':
    main()
