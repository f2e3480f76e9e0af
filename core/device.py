"""Which torch device the encoders and heads run on: a GPU when this machine has one, else the CPU.

``choose_device(requested)`` reads, in this order, the argument (``--device`` on the command line),
the environment variable ``MMSA_DEVICE`` and ``"auto"``. Accepted: ``auto``, ``cpu``, ``cuda`` or
``cuda:N``. Asking for a GPU the machine does not have is an error that says so (never a silent CPU
run that the user believes is on the GPU).
"""
from __future__ import annotations

import torch

from core import config
from core.errors import InputError

DEVICE_ENV = config.DEVICE_ENV
AUTO = "auto"


class DeviceUnavailable(InputError):
    """The requested device does not exist on this machine or is not a device name we accept (a
    ValueError: bad input the user fixes, one clear line on the command line)."""


def choose_device(requested: str | torch.device | None = None) -> torch.device:
    """The device to run on: ``requested`` (a name or a device), else ``$MMSA_DEVICE``, else "auto"
    (cuda when ``torch.cuda.is_available()``, else cpu). Raises DeviceUnavailable for an unknown name
    or a GPU this machine lacks."""
    if isinstance(requested, torch.device):
        name = str(requested)
    else:
        name = (requested or config.device_setting() or AUTO).strip().lower()
    if name == AUTO:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError) as exc:
        raise DeviceUnavailable(f"unknown device '{name}': use auto, cpu, cuda or cuda:N "
                                f"(argument --device or {DEVICE_ENV})") from exc
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise DeviceUnavailable(f"device '{name}' is not supported: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise DeviceUnavailable(f"device '{name}' was requested (argument --device or {DEVICE_ENV}) but this "
                                f"machine has no CUDA GPU that torch can use (torch {torch.__version__}, "
                                f"CUDA build: {torch.version.cuda or 'no'}); use --device cpu or auto")
    index = device.index or 0
    if index >= torch.cuda.device_count():
        raise DeviceUnavailable(f"device '{name}' was requested but this machine has "
                                f"{torch.cuda.device_count()} CUDA GPU(s)")
    return torch.device("cuda", index)


def describe_device(device: torch.device) -> str:
    """One line for people: "GPU cuda:0 (NVIDIA H200)" or "CPU (x86_64, 2 threads)"."""
    if device.type == "cuda":
        try:
            name = torch.cuda.get_device_name(device)
        except (RuntimeError, AssertionError):
            name = "unknown GPU"
        return f"GPU {device} ({name})"
    import platform

    threads = torch.get_num_threads()
    return f"CPU ({platform.machine() or 'unknown'}, {threads} thread{'s' if threads != 1 else ''})"


def gpu_block() -> dict | None:
    """The GPU beside figures measured on it (name, memory, CUDA and cuDNN versions); None without one."""
    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
            "count": torch.cuda.device_count(), "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(), "bf16": torch.cuda.is_bf16_supported()}
