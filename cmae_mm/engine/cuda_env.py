"""Which CUDA compiler and GPU architectures build MMCV's ops (``tools/setup_env.sh``).

``tools/setup_env.sh`` runs this file with the virtual environment's python before
MMEngine and cmae_mm are installed, so it imports only the standard library (torch
inside :func:`probe_build_facts`)::

    python -I cmae_mm/engine/cuda_env.py plan MMCV_VERSION   # shell assignments
    python -I cmae_mm/engine/cuda_env.py pip-cuda-home DEST  # CUDA_HOME from PyPI
    python -I cmae_mm/engine/cuda_env.py check-mmcv          # exit 1: no CUDA ops
    python -I cmae_mm/engine/cuda_env.py no-compiler-message PROBLEM

The decision (:func:`plan_build`) is a pure function of :class:`BuildFacts`:

* CUDA ops are built where an NVIDIA GPU is present or torch sees one (MMCV's
  ``setup.py`` builds them whenever ``torch.cuda.is_available()``), or where
  ``CMAE_MM_MMCV_OPS=cuda``; ``CMAE_MM_MMCV_OPS=cpu`` keeps CPU ops.
* The compiler is the first ``nvcc`` whose release equals torch's CUDA (major.minor;
  ``torch.utils.cpp_extension`` refuses another major): ``$CUDA_HOME``, ``$CUDA_PATH``,
  ``nvcc`` on ``PATH``, ``<venv>/cuda-X.Y`` (made by an earlier run),
  ``/usr/local/cuda``, ``/usr/local/cuda-*`` (an ``nvcc`` outside a toolkit, e.g. a
  wrapper script, is skipped). Otherwise, for CUDA >= 13, NVIDIA's compiler packages
  from PyPI (:func:`pip_compiler_packages`) are installed into the venv and laid out
  as a toolkit (:func:`make_cuda_home`). CUDA 12's PyPI packages carry no ``nvcc`` (only
  ``ptxas``), so a CUDA 12 torch needs a toolkit.
* Architectures: ``$TORCH_CUDA_ARCH_LIST`` if set, else A100 (8.0), H100 (9.0) and the
  visible GPUs, with PTX for the highest (newer GPUs JIT-compile it).
  They are part of the wheel cache key: ``..._cu130_sm80-90_ptx90``.
* No matching compiler: CPU ops, with :func:`no_compiler_message` (what was found, what
  is needed, what to do); detection then uses the torchvision fallback
  (``cmae_mm/transfer/det/ops_fallback.py``).

Driver versions: NVIDIA's CUDA Compatibility guide, "Minor Version Compatibility"
(docs.nvidia.com/deploy/cuda-compatibility), table 1.
"""
import glob
import os
import os.path as osp
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

#: Architectures every CUDA build covers: A100 (sm_80) and H100 (sm_90).
DEFAULT_ARCHS = ('8.0', '9.0')
#: Minimum Linux driver per CUDA major version (minor version compatibility), from
#: NVIDIA's CUDA Compatibility guide, table 1.
MIN_DRIVER = {13: '580', 12: '525', 11: '450'}
#: First CUDA major whose PyPI compiler packages hold a complete nvcc (unsuffixed
#: names, installed under site-packages/nvidia/cu<major>/).
PIP_NVCC_MIN_MAJOR = 13
_RELEASE = re.compile(r'release (\d+)\.(\d+)')
_ARCH = re.compile(r'^(\d+)\.(\d+)([af]?)(\+PTX)?$')

Capability = Tuple[int, int]


@dataclass(frozen=True)
class Nvcc:
    """One ``nvcc`` found on the machine."""
    path: str  # .../bin/nvcc
    version: Optional[str]  # 'major.minor' from `nvcc --version`; None: does not run
    origin: str  # where it was found: '$CUDA_HOME', 'PATH', '/usr/local/cuda-12.4', ...
    home: Optional[str]  # its toolkit (bin/nvcc + include/cuda_runtime.h); None: none

    def describe(self) -> str:
        version = self.version or 'unknown version (does not run)'
        where = '' if self.home else ', not inside a CUDA toolkit'
        return f'nvcc {version} at {self.path} ({self.origin}{where})'


@dataclass(frozen=True)
class BuildFacts:
    """What the machine offers for building MMCV's ops."""
    torch_cuda: Optional[str]  # torch.version.cuda ('13.0'); None for a CPU torch
    gpus_present: bool  # an NVIDIA GPU is listed by the driver or seen by torch
    capabilities: Tuple[Capability, ...] = ()  # compute capabilities of visible GPUs
    torch_arches: Tuple[str, ...] = ()  # torch.cuda.get_arch_list(): 'sm_80', ...
    compilers: Tuple[Nvcc, ...] = ()  # nvcc candidates, in search order
    arch_env: Optional[str] = None  # $TORCH_CUDA_ARCH_LIST
    ops_env: Optional[str] = None  # $CMAE_MM_MMCV_OPS: 'cuda', 'cpu' or unset


@dataclass(frozen=True)
class BuildPlan:
    """How to build MMCV here."""
    ops: str  # 'cuda' or 'cpu'
    tag: str  # cache-key tag: 'cpu' or e.g. 'cu130_sm80-90_ptx90'
    arch_list: str = ''  # TORCH_CUDA_ARCH_LIST for the build
    cuda_home: str = ''  # toolkit to build with ('' + pip_packages: install them first)
    pip_packages: Tuple[str, ...] = ()
    note: str = ''  # why CPU ops on a GPU machine, and what to do
    found: Tuple[str, ...] = field(default=())  # the compilers seen, for the log


def major_minor(version: Optional[str]) -> Optional[Tuple[int, int]]:
    """``'13.0'`` / ``'13.0.88'`` -> ``(13, 0)``; None for None or a bad string."""
    m = re.match(r'^(\d+)\.(\d+)', version or '')
    return (int(m.group(1)), int(m.group(2))) if m else None


def parse_nvcc_version(text: str) -> Optional[str]:
    """``nvcc --version`` output -> ``'major.minor'`` (its ``release X.Y``)."""
    m = _RELEASE.search(text)
    return f'{m.group(1)}.{m.group(2)}' if m else None


def cuda_tag(torch_cuda: str) -> str:
    """``'13.0'`` -> ``'cu130'``."""
    major, minor = major_minor(torch_cuda)
    return f'cu{major}{minor}'


def cache_key(mmcv_version: str, torch_version: str, py_tag: str, tag: str) -> str:
    """Name of the cached-wheel folder, e.g. ``mmcv-2.1.0_torch-2.14.1_cp311_cpu``."""
    return f'mmcv-{mmcv_version}_torch-{torch_version}_{py_tag}_{tag}'


def pip_compiler_packages(torch_cuda: str) -> Tuple[str, ...]:
    """NVIDIA's PyPI packages that together hold an ``nvcc`` for ``torch_cuda``.

    CUDA 13 and later: unsuffixed names, all installed under
    ``site-packages/nvidia/cu13/`` (``bin/nvcc``, ``include/`` with ``cccl/``, ``lib/``,
    ``nvvm/``). Empty for CUDA 12 and older: ``nvidia-cuda-nvcc-cu12`` holds only
    ``bin/ptxas``.
    """
    major, minor = major_minor(torch_cuda)
    if major < PIP_NVCC_MIN_MAJOR:
        return ()
    names = ('nvidia-cuda-nvcc', 'nvidia-cuda-crt', 'nvidia-nvvm', 'nvidia-cuda-cccl',
             'nvidia-cuda-runtime')
    return tuple(f'{name}=={major}.{minor}.*' for name in names)


def pip_cuda_root(torch_cuda: str, site_packages: str) -> str:
    """Where the packages of :func:`pip_compiler_packages` put their files."""
    return osp.join(site_packages, 'nvidia', f'cu{major_minor(torch_cuda)[0]}')


def _sm(capability: Capability) -> int:
    return capability[0] * 10 + capability[1]


def arch_runs_on(code: str, capability: Capability) -> bool:
    """Whether kernels compiled for ``code`` ('sm_80', 'compute_90', '8.0') run on a GPU
    of ``capability``: SASS runs on the same major version with an equal or higher
    minor one, PTX on any equal or higher capability (CUDA C++ Programming Guide,
    "Binary Compatibility" / "PTX Compatibility")."""
    ptx = code.startswith('compute_') or code.endswith('+PTX')
    core = code.split('_')[-1].replace('+PTX', '')
    suffix = core[-1:] if core[-1:] in ('a', 'f') else ''
    num = int(core.rstrip('af').replace('.', ''))  # 'sm_100' / '10.0' -> 100
    if ptx:
        return _sm(capability) >= num
    if suffix == 'a':  # architecture-specific code runs on that architecture only
        return _sm(capability) == num
    return capability[0] == num // 10 and capability[1] >= num % 10


def resolve_arch_list(arch_env: Optional[str], capabilities: Sequence[Capability],
                      torch_arches: Sequence[str]) -> str:
    """``TORCH_CUDA_ARCH_LIST`` for the build, e.g. ``'8.0;9.0+PTX'``.

    ``arch_env`` (``$TORCH_CUDA_ARCH_LIST``) wins; it must be numeric
    (``'8.0;8.6;9.0+PTX'``, spaces allowed). Otherwise :data:`DEFAULT_ARCHS` plus every
    visible GPU that this torch build has kernels for (a GPU above the newest
    architecture of torch is clamped to it, as ``torch.utils.cpp_extension`` does), PTX
    for the highest. Raises ``ValueError`` naming a bad entry.
    """
    if arch_env and arch_env.strip():
        entries = [e for e in re.split(r'[;\s]+', arch_env.strip()) if e]
        for e in entries:
            if not _ARCH.match(e):
                raise ValueError(
                    f'TORCH_CUDA_ARCH_LIST={arch_env!r}: {e!r} is not an architecture '
                    f'number; write compute capabilities such as "8.0;9.0+PTX" '
                    f'(names like "Hopper" and "native" are not accepted here).')
        return ';'.join(entries)
    archs = {major_minor(a) for a in DEFAULT_ARCHS}
    torch_sms = sorted(int(re.sub(r'\D', '', a)) for a in torch_arches if 'sm_' in a)
    for cap in capabilities:
        if torch_sms and _sm(cap) > torch_sms[-1]:
            cap = (torch_sms[-1] // 10, torch_sms[-1] % 10)
        if not torch_sms or any(arch_runs_on(f'sm_{s}', cap) for s in torch_sms):
            archs.add(tuple(cap))
    ordered = [f'{a[0]}.{a[1]}' for a in sorted(archs)]
    ordered[-1] += '+PTX'
    return ';'.join(ordered)


def arch_tag(arch_list: str) -> str:
    """``'8.0;9.0+PTX'`` -> ``'sm80-90_ptx90'`` (cache-key part)."""
    entries = [e for e in arch_list.split(';') if e]
    nums = [e.split('+')[0].replace('.', '') for e in entries]
    ptx = [n for n, e in zip(nums, entries) if e.endswith('+PTX')]
    tag = 'sm' + '-'.join(nums)
    return tag + ('_ptx' + '-'.join(ptx) if ptx else '')


def no_compiler_message(torch_cuda: str,
                        compilers: Sequence[Nvcc],
                        pip_problem: Optional[str] = None) -> str:
    """What was found, what is needed and what to do when no nvcc matches."""
    found = '; '.join(c.describe() for c in compilers) or 'no nvcc at all'
    major = major_minor(torch_cuda)[0]
    if pip_problem:
        pip = f'NVIDIA\'s compiler packages from PyPI did not give one: {pip_problem}'
    elif major < PIP_NVCC_MIN_MAJOR:
        pip = (f'PyPI has no nvcc for CUDA {major} (nvidia-cuda-nvcc-cu{major} '
               f'holds only ptxas)')
    else:
        pip = 'PyPI was not tried'
    return (f'No CUDA compiler matching torch\'s CUDA {torch_cuda} (found: {found}; '
            f'{pip}). MMCV is built with CPU ops only: detection then runs NMS and '
            f'RoIAlign through torchvision (cmae_mm/transfer/det/ops_fallback.py). '
            f'To get MMCV\'s CUDA ops, install CUDA toolkit {torch_cuda} (any '
            f'{torch_cuda}.x update) or point CUDA_HOME at one, then run '
            f'bash tools/setup_env.sh again; to keep CPU ops without this message, '
            f'set CMAE_MM_MMCV_OPS=cpu.')


def plan_build(facts: BuildFacts) -> BuildPlan:
    """Decide how MMCV's ops are built on the machine described by ``facts``."""
    found = tuple(c.describe() for c in facts.compilers)
    ops_env = (facts.ops_env or '').strip().lower()
    if ops_env not in ('', 'cuda', 'cpu'):
        raise ValueError(f'CMAE_MM_MMCV_OPS={facts.ops_env!r}: use "cuda", "cpu" or '
                         f'leave it unset (CUDA ops where there is an NVIDIA GPU).')
    want_cuda = ops_env == 'cuda' or (ops_env == '' and facts.gpus_present)
    if not want_cuda:
        note = ''
        if facts.gpus_present:
            note = ('CMAE_MM_MMCV_OPS=cpu: MMCV gets CPU ops on this GPU machine; '
                    'detection runs NMS and RoIAlign through torchvision.')
        return BuildPlan('cpu', 'cpu', note=note, found=found)
    if facts.torch_cuda is None:
        return BuildPlan(
            'cpu',
            'cpu',
            note=('torch is a CPU-only build (torch.version.cuda is None), so MMCV '
                  'can have CPU ops only. Install the CUDA build of torch pinned in '
                  'requirements/constraints.txt (bash tools/setup_env.sh --force).'),
            found=found)
    arch_list = resolve_arch_list(facts.arch_env, facts.capabilities,
                                  facts.torch_arches)
    tag = f'{cuda_tag(facts.torch_cuda)}_{arch_tag(arch_list)}'
    want = major_minor(facts.torch_cuda)
    for nvcc in facts.compilers:
        if nvcc.home and major_minor(nvcc.version) == want:
            return BuildPlan('cuda', tag, arch_list, cuda_home=nvcc.home, found=found)
    packages = pip_compiler_packages(facts.torch_cuda)
    if packages:
        return BuildPlan('cuda', tag, arch_list, pip_packages=packages, found=found)
    return BuildPlan(
        'cpu',
        'cpu',
        note=no_compiler_message(facts.torch_cuda, facts.compilers),
        found=found)


# --- probing the machine --------------------------------------------------------------


def _run(cmd: List[str], timeout: float = 30) -> Optional[str]:
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def nvcc_version(path: str) -> Optional[str]:
    out = _run([path, '--version'])
    return parse_nvcc_version(out) if out else None


def toolkit_home(nvcc: str) -> Optional[str]:
    """The CUDA toolkit an ``nvcc`` belongs to: the folder above its ``bin/`` that
    holds ``include/cuda_runtime.h``, also after resolving symlinks; None for e.g. a
    wrapper script in ``/usr/local/bin`` (``torch.utils.cpp_extension`` would take
    ``/usr/local`` for ``CUDA_HOME``)."""
    for path in (nvcc, osp.realpath(nvcc)):
        home = osp.dirname(osp.dirname(path))
        if osp.isfile(osp.join(home, 'include', 'cuda_runtime.h')):
            return home
    return None


def find_compilers(env: Dict[str, str], prefix: str,
                   torch_cuda: Optional[str]) -> Tuple[Nvcc, ...]:
    """The ``nvcc`` candidates in search order (see the module docstring)."""
    places = []
    for var in ('CUDA_HOME', 'CUDA_PATH'):
        if env.get(var):
            places.append((osp.join(env[var], 'bin', 'nvcc'), f'${var}'))
    on_path = shutil.which('nvcc', path=env.get('PATH'))
    if on_path:
        places.append((on_path, 'PATH'))
    if torch_cuda:
        places.append((osp.join(prefix, f'cuda-{torch_cuda}', 'bin',
                                'nvcc'), 'PyPI packages in the venv'))
    for home in ['/usr/local/cuda'] + sorted(glob.glob('/usr/local/cuda-*')):
        places.append((osp.join(home, 'bin', 'nvcc'), home))
    seen, compilers = set(), []
    for path, origin in places:
        real = osp.realpath(path)
        if real in seen or not os.access(path, os.X_OK):
            continue
        seen.add(real)
        compilers.append(Nvcc(path, nvcc_version(path), origin, toolkit_home(path)))
    return tuple(compilers)


def nvidia_gpus() -> List[str]:
    """NVIDIA GPUs the driver exposes here: ``/proc/driver/nvidia/gpus/*`` entries,
    ``/dev/nvidia<N>`` device files or ``nvidia-smi -L`` lines (the first source that
    lists any). Empty where there is no NVIDIA GPU."""
    gpus = sorted(glob.glob('/proc/driver/nvidia/gpus/*'))
    if not gpus:
        gpus = sorted(
            p for p in glob.glob('/dev/nvidia*') if re.search(r'nvidia\d+$', p))
    if not gpus and shutil.which('nvidia-smi'):
        out = _run(['nvidia-smi', '-L'], timeout=20) or ''
        gpus = [line for line in out.splitlines() if line.startswith('GPU ')]
    return gpus


def driver_version() -> Optional[str]:
    """The NVIDIA kernel driver's version ('580.65.06'), or None without a driver."""
    try:
        with open('/proc/driver/nvidia/version') as f:
            m = re.search(r'Kernel Module.*?\s(\d+\.\d+(?:\.\d+)?)\s', f.read())
        if m:
            return m.group(1)
    except OSError:
        pass
    if shutil.which('nvidia-smi'):
        out = _run(
            ['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader'],
            timeout=20)
        if out and out.strip():
            return out.strip().splitlines()[0].strip()
    return None


def smi_gpus() -> List[Tuple[str, Capability]]:
    """``(name, compute capability)`` of each GPU according to ``nvidia-smi`` (works
    where torch cannot use the GPU); empty without nvidia-smi."""
    if not shutil.which('nvidia-smi'):
        return []
    out = _run(['nvidia-smi', '--query-gpu=name,compute_cap', '--format=csv,noheader'],
               timeout=20) or ''
    gpus = []
    for line in out.splitlines():
        name, _, cap = line.rpartition(',')
        if major_minor(cap.strip()):
            gpus.append((name.strip(), major_minor(cap.strip())))
    return gpus


def probe_build_facts(env: Optional[Dict[str, str]] = None) -> BuildFacts:
    """Collect :class:`BuildFacts` on this machine (imports torch)."""
    import torch
    env = dict(os.environ if env is None else env)
    torch_cuda = torch.version.cuda
    available = torch_cuda is not None and torch.cuda.is_available()
    if available:
        caps = tuple(
            torch.cuda.get_device_capability(i)
            for i in range(torch.cuda.device_count()))
    else:
        caps = tuple(cap for _, cap in smi_gpus())
    return BuildFacts(
        torch_cuda=torch_cuda,
        gpus_present=available or bool(nvidia_gpus()),
        capabilities=caps,
        torch_arches=tuple(torch.cuda.get_arch_list()) if torch_cuda else (),
        compilers=find_compilers(env, sys.prefix, torch_cuda),
        arch_env=env.get('TORCH_CUDA_ARCH_LIST'),
        ops_env=env.get('CMAE_MM_MMCV_OPS'))


# --- laying out and checking ----------------------------------------------------------


def make_cuda_home(dest: str, roots: Sequence[str]) -> str:
    """Lay out ``dest`` as a CUDA toolkit whose files are symlinks into ``roots``.

    ``roots`` are folders with ``bin/``, ``include/``, ``lib/``, ``nvvm/`` (NVIDIA's
    PyPI packages); the first root wins where two hold the same name. ``lib/`` becomes
    ``lib64/``, and ``libcudart.so`` is added (the packages ship only
    ``libcudart.so.<major>``; ``torch.utils.cpp_extension`` links ``-lcudart``). nvcc
    finds ``nvvm/`` and ``include/cccl`` relative to its own folder (its
    ``nvcc.profile``). Replaces ``dest``; returns it.
    """
    tmp = dest + '.partial'
    shutil.rmtree(tmp, ignore_errors=True)
    for sub, target in (('bin', 'bin'), ('include', 'include'), ('nvvm', 'nvvm'),
                        ('lib', 'lib64')):
        for root in roots:
            src = osp.join(root, sub)
            if not osp.isdir(src):
                continue
            os.makedirs(osp.join(tmp, target), exist_ok=True)
            for name in sorted(os.listdir(src)):
                link = osp.join(tmp, target, name)
                if not osp.lexists(link):
                    os.symlink(osp.join(src, name), link)
    lib64 = osp.join(tmp, 'lib64')
    versioned = sorted(glob.glob(osp.join(lib64, 'libcudart.so.*')))
    if versioned and not osp.lexists(osp.join(lib64, 'libcudart.so')):
        os.symlink(osp.basename(versioned[0]), osp.join(lib64, 'libcudart.so'))
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    return dest


def mmcv_ops_problem(torch_cuda: Optional[str]) -> Optional[str]:
    """Why the installed MMCV lacks ops for torch's CUDA; None when it has them.

    Uses ``mmcv._ext.get_compiling_cuda_version()`` (what
    ``mmcv.ops.get_compiling_cuda_version`` returns): ``'not available'`` for a build
    without CUDA ops, else the CUDA runtime version it was compiled with.
    """
    try:
        import mmcv
        from mmcv import _ext
    except Exception as e:  # noqa: BLE001  (any import failure is the answer)
        return f'mmcv with compiled ops does not import ({type(e).__name__}: {e})'
    compiled = _ext.get_compiling_cuda_version()
    if torch_cuda is None or major_minor(compiled) == major_minor(torch_cuda):
        return None
    return (f'the installed mmcv {mmcv.__version__} ({osp.dirname(mmcv.__file__)}) has '
            f'ops compiled for CUDA {compiled!r}, torch uses CUDA {torch_cuda}')


# --- command line for tools/setup_env.sh ----------------------------------------------


def _cmd_plan(mmcv_version: str) -> int:
    import torch
    plan = plan_build(probe_build_facts())
    torch_version = torch.__version__.split('+')[0]
    py_tag = f'cp{sys.version_info[0]}{sys.version_info[1]}'
    values = dict(
        MMCV_OPS=plan.ops,
        CUDA_TAG=plan.tag,
        MMCV_KEY=cache_key(mmcv_version, torch_version, py_tag, plan.tag),
        MMCV_CPU_KEY=cache_key(mmcv_version, torch_version, py_tag, 'cpu'),
        TORCH_CUDA=torch.version.cuda or '',
        ARCH_LIST=plan.arch_list,
        BUILD_CUDA_HOME=plan.cuda_home,
        PIP_CUDA_PACKAGES=' '.join(plan.pip_packages),
        FOUND_NVCC='; '.join(plan.found) or 'none',
        PLAN_NOTE=plan.note)
    for key, value in values.items():
        print(f'{key}={shlex.quote(value)}')
    return 0


def _cmd_pip_cuda_home(dest: str) -> int:
    import torch
    torch_cuda = torch.version.cuda
    root = pip_cuda_root(torch_cuda, sysconfig.get_paths()['purelib'])
    nvcc = osp.join(root, 'bin', 'nvcc')
    problem = None
    if not os.access(nvcc, os.X_OK):
        problem = f'{nvcc} is missing after installing them'
    else:
        home = make_cuda_home(dest, [root])
        got = nvcc_version(osp.join(home, 'bin', 'nvcc'))
        if major_minor(got) != major_minor(torch_cuda):
            problem = f'their nvcc reports release {got}'
    if problem:
        compilers = find_compilers(dict(os.environ), sys.prefix, torch_cuda)
        print(no_compiler_message(torch_cuda, compilers, problem), file=sys.stderr)
        return 1
    print(dest)
    return 0


def _cmd_no_compiler_message(problem: str) -> int:
    import torch
    compilers = find_compilers(dict(os.environ), sys.prefix, torch.version.cuda)
    print(no_compiler_message(torch.version.cuda, compilers, problem), file=sys.stderr)
    return 0


def _cmd_check_mmcv() -> int:
    import torch
    problem = mmcv_ops_problem(torch.version.cuda)
    if problem:
        print(problem, file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str]) -> int:
    usage = ('usage: cuda_env.py plan MMCV_VERSION | pip-cuda-home DEST | check-mmcv | '
             'no-compiler-message PROBLEM')
    if len(argv) == 2 and argv[0] == 'plan':
        try:
            return _cmd_plan(argv[1])
        except ValueError as e:
            print(e, file=sys.stderr)
            return 2
    if len(argv) == 2 and argv[0] == 'pip-cuda-home':
        return _cmd_pip_cuda_home(argv[1])
    if len(argv) == 2 and argv[0] == 'no-compiler-message':
        return _cmd_no_compiler_message(argv[1])
    if list(argv) == ['check-mmcv']:
        return _cmd_check_mmcv()
    print(usage, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
