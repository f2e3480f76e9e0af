"""Run the frozen encoders in ONNX Runtime: export on first use into a cache folder, check parity.

Why: on a laptop CPU, ONNX Runtime runs MiniLM about 1.4× and EfficientNet-Lite0 about 2-4× faster
than PyTorch fp32 (see the README's benchmark table), with the same numbers to float rounding.

Where: ``config.home_dir()/onnx/<hash of encoder id + exporter versions>/`` holds ``model.onnx`` and
``meta.json``. The encoder id carries the weights hash (and a merged LoRA adapter's hash), so another
checkpoint never reuses a stale graph. ONNX files are never committed: they are rebuilt in a few
seconds on first use, and again whenever the cached graph no longer matches the hash recorded when it
passed the parity check.

Parity: right after export, the graph and the PyTorch module run the same probe inputs (for text: a
padded batch of very different lengths and a single text, so a mask traced the wrong way shows) and
the largest difference relative to the vector norm must stay under ``PARITY_TOLERANCE``. Only then
does the encoder use the graph, and it keeps its id, since its features are the PyTorch features to
float rounding. Otherwise (or without onnxruntime, or on a GPU, or with ``MMSA_ONNX=0``) the encoder
stays in PyTorch; nothing silently changes its numbers.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core import config

PARITY_TOLERANCE = 1e-4   # max |onnx - torch| / ||torch|| over the probe vectors
OPSET = 17
EXPORT_FORMAT = "v1"      # bump when the wrapper or export settings change: old folders are ignored
_LOCK = threading.Lock()


def onnx_enabled() -> bool:
    """ONNX Runtime is used unless ``MMSA_ONNX=0`` (or onnxruntime is missing)."""
    if not config.onnx_enabled():
        return False
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def cpu_threads() -> int:
    """Cores this process may use (cgroup/affinity aware where the OS tells)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def session_threads() -> int:
    """Intra-op threads of each encoder session: all the cores this process may use. Measured on the
    2-core box (README lever table): text and image side by side with one thread each was no faster
    than with the full width (3.53 vs 3.71 s for 256 pairs, within noise), while a one-thread session
    halves the speed whenever only one modality has work (``predict_pair``, re-scoring known images
    with new texts). ``MMSA_ORT_THREADS`` overrides it."""
    return config.ort_threads_setting() or cpu_threads()


def cache_folder(encoder_id: str, kind: str) -> Path:
    """The folder an encoder's exported graph is cached in: keyed by encoder id, kind, export format and the torch
    / onnxruntime versions."""
    import onnxruntime

    tag = f"{encoder_id}|{kind}|{EXPORT_FORMAT}|opset{OPSET}|torch{torch.__version__}|ort{onnxruntime.__version__}"
    return config.home_dir() / "onnx" / hashlib.sha256(tag.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Wrappers: exactly the encoder's forward_features, as a module with tensor inputs
# --------------------------------------------------------------------------------------------
class _TextFeatures(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.model = encoder.model  # registered so export sees the parameters

    def forward(self, input_ids, attention_mask):
        return self.encoder.forward_features(input_ids, attention_mask)


class _ImageFeatures(nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.model = encoder.model

    def forward(self, pixels):
        return self.encoder.forward_features(pixels)


def text_probe(encoder) -> dict[str, torch.Tensor]:
    """A padded batch: one long text, one short one. Tracing with real padding keeps the attention
    mask in the graph (traced with an all-ones mask, transformers may drop it)."""
    texts = ["ok", "a much longer sentence with many more words, so the short one above is padded " * 2]
    batch = encoder.tokenize(texts)
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def image_probe(encoder, n: int = 2) -> torch.Tensor:
    """``n`` seeded random pixel batches at the encoder's input size, for export and the parity check."""
    generator = torch.Generator().manual_seed(0)
    return torch.rand((n, 3, encoder.image_size, encoder.image_size), generator=generator) * 2 - 1


def _export(module: nn.Module, args: tuple, path: Path, input_names, dynamic_axes) -> None:
    """Legacy (TorchScript) exporter: no onnxscript needed, deterministic bytes for the same weights."""
    tmp_dir = Path(tempfile.mkdtemp(dir=path.parent, prefix=".export-"))
    tmp = tmp_dir / path.name
    try:
        with warnings.catch_warnings():
            # TracerWarnings about Python conditions: the probe has real padding, and the parity
            # check below proves the traced graph right on padded and unpadded batches.
            warnings.simplefilter("ignore")
            torch.onnx.export(module, args, str(tmp), input_names=list(input_names), output_names=["features"],
                              dynamic_axes=dynamic_axes, opset_version=OPSET, do_constant_folding=True,
                              dynamo=False)
        os.replace(tmp, path)  # atomic: a second process never reads half a file
    finally:
        for leftover in tmp_dir.glob("*"):
            leftover.unlink()
        tmp_dir.rmdir()


def relative_error(reference: np.ndarray, other: np.ndarray) -> float:
    """max over rows of max |a - b| / ||a||."""
    norms = np.linalg.norm(reference, axis=1).clip(min=1e-12)
    return float((np.abs(reference - other).max(axis=1) / norms).max())


class OnnxRunner:
    """An onnxruntime session for one encoder graph; ``run(**inputs) -> (n, dim) float32``."""

    def __init__(self, path: Path, threads: int | None = None, spinning: bool = False):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or cpu_threads()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        if not spinning:
            # Idle pool threads sleep instead of spinning: on a 2-core machine shared with other work
            # this measured 1.6x faster (text, batch 32); see the README's lever table.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.path = path
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, **inputs) -> np.ndarray:
        """Run the graph on named inputs (tensors or arrays); returns the float32 output."""
        feeds = {name: _as_numpy(inputs[name]) for name in self.input_names}
        return self.session.run(None, feeds)[0].astype(np.float32, copy=False)


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value)


@torch.inference_mode()
def _torch_reference(module: nn.Module, *args) -> np.ndarray:
    return module(*args).float().cpu().numpy()


def _cached_meta(path: Path, meta_path: Path) -> dict | None:
    """The cached graph's record when the graph is there and is the file that passed the parity check;
    None to export again. A damaged cache (a crash mid-copy, a bad disk, a stray edit) is a cache miss
    with a warning, never an error: the graph is rebuilt and checked again."""
    if not meta_path.exists() and not path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        intact = hashlib.sha256(path.read_bytes()).hexdigest() == meta["sha256"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        intact, meta = False, None
        reason = f"{type(error).__name__}: {error}"
    else:
        reason = "the graph's bytes differ from the ones that passed the parity check"
    if intact:
        return meta
    warnings.warn(f"the cached ONNX graph in {path.parent} is damaged ({reason}); exporting it again")
    for damaged in (path, meta_path):
        damaged.unlink(missing_ok=True)
    return None


def _build(kind: str, encoder, module: nn.Module, probes: list[dict], input_names, dynamic_axes,
           args: tuple) -> OnnxRunner | None:
    folder = cache_folder(encoder.id, kind)
    path, meta_path = folder / "model.onnx", folder / "meta.json"
    with _LOCK:
        folder.mkdir(parents=True, exist_ok=True)
        meta = _cached_meta(path, meta_path)
        if meta is None:
            module.eval()
            with torch.no_grad():
                _export(module, args, path, input_names, dynamic_axes)
            runner = OnnxRunner(path)
            error = max(relative_error(_torch_reference(module, *[p[n] for n in input_names]),
                                       runner.run(**p)) for p in probes)
            meta = {"encoder_id": encoder.id, "kind": kind, "parity_relative_error": error,
                    "tolerance": PARITY_TOLERANCE, "ok": error < PARITY_TOLERANCE,
                    "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
            tmp = meta_path.with_suffix(".tmp")
            tmp.write_text(json.dumps(meta, indent=2))
            os.replace(tmp, meta_path)
        if not meta.get("ok"):
            warnings.warn(f"ONNX graph of {encoder.id} differs from PyTorch (relative error "
                          f"{meta.get('parity_relative_error'):.2e}); this encoder stays in PyTorch")
            return None
        return OnnxRunner(path, threads=session_threads())


def text_runner(encoder) -> OnnxRunner | None:
    """The encoder's ONNX graph (exported and parity-checked on first use), or None to stay in torch."""
    probe = text_probe(encoder)
    single = {k: v[:1, : int(probe["attention_mask"][0].sum())] for k, v in probe.items()}
    axes = {"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
            "features": {0: "batch"}}
    return _build("text", encoder, _TextFeatures(encoder), [probe, single], ("input_ids", "attention_mask"),
                  axes, (probe["input_ids"], probe["attention_mask"]))


def image_runner(encoder) -> OnnxRunner | None:
    """An image encoder's graph exported, parity-checked against PyTorch and loaded; None where export or parity
    fails."""
    pixels = image_probe(encoder, 2)
    probes = [{"pixels": pixels}, {"pixels": image_probe(encoder, 1)}]
    axes = {"pixels": {0: "batch"}, "features": {0: "batch"}}
    return _build("image", encoder, _ImageFeatures(encoder), probes, ("pixels",), axes, (pixels,))
