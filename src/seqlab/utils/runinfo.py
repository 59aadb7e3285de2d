"""Metadata stamped into every results JSON: device, library versions, commit, date, command."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
import sys


def git_commit() -> str:
    """The commit being measured: ``SEQLAB_COMMIT`` (or ``SEQLAB_GIT_COMMIT``) if set, since the device
    copy of the tree has no .git; else ``git rev-parse HEAD``."""
    env = os.environ.get("SEQLAB_COMMIT") or os.environ.get("SEQLAB_GIT_COMMIT")
    if env:
        return env
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=os.path.dirname(os.path.abspath(__file__)))
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def run_info() -> dict:
    """Device name, versions (python, torch, triton, CUDA, cuDNN), commit, UTC date and command line."""
    import torch

    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(),
        "command": " ".join([os.path.basename(sys.executable)] + sys.argv),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
        info["sm_count"] = torch.cuda.get_device_properties(0).multi_processor_count
    else:
        info["device"] = f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"
    return info
