"""The one way the tests (and tools that drive other tools) start a process."""
import subprocess
import sys
import time
from typing import Dict, Sequence, Tuple


def run_subprocess(args: Sequence,
                   env: Dict[str, str],
                   cwd: str,
                   timeout: float = 600,
                   check: bool = True) -> Tuple[subprocess.CompletedProcess, float]:
    """Run a command line and return ``(CompletedProcess, seconds)``.

    ``args[0]`` ending in ``.py`` or equal to ``-c`` / ``-m`` runs with this
    interpreter; anything else (``bash tools/dist_train.sh ...``) runs as given. With
    ``check`` a non-zero exit code raises ``AssertionError`` showing the end of stdout
    and stderr.
    """
    args = [str(a) for a in args]
    if args[0].endswith('.py') or args[0] in ('-c', '-m'):
        args = [sys.executable] + args
    start = time.time()
    proc = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f'{args} exited with {proc.returncode}\n'
                             f'--- stdout (end) ---\n{proc.stdout[-3000:]}\n'
                             f'--- stderr (end) ---\n{proc.stderr[-5000:]}')
    return proc, time.time() - start
