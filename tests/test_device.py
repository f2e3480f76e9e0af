"""The GPU path, tested on the CPU: which device is chosen, that a predictor puts its modules there,
and that fp16 / bf16 autocast serves only after its check (bf16 autocast runs on the CPU too)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core import cli
from core.device import DEVICE_ENV, DeviceUnavailable, choose_device
from core.encoders.int8_check import reference_pictures
from core.registry import read_version_folder
from core.scoring import precision
from core.scoring.predict import Predictor

DEFAULT_HEAD = "assets/models/default"


@pytest.fixture()
def no_gpu(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


@pytest.fixture(scope="module")
def shipped_encoders():
    """The encoders the shipped head names (its LoRA adapter merged), on the CPU, for this module only:
    the tests switch them to autocast and back."""
    from core.scoring.predict import load_encoders_for_card

    return load_encoders_for_card(read_version_folder(Path(DEFAULT_HEAD))[1], device="cpu")


@pytest.fixture()
def shipped(shipped_encoders):
    """The shipped head and its encoders; the encoders are set back to fp32 afterwards."""
    tensors, card = read_version_folder(Path(DEFAULT_HEAD))
    yield tensors, card, shipped_encoders
    for encoder in shipped_encoders:
        encoder.set_autocast(None)


def test_auto_runs_on_the_cpu_when_there_is_no_gpu(no_gpu):
    assert choose_device() == torch.device("cpu")
    assert choose_device("auto") == torch.device("cpu")


def test_asking_for_a_gpu_on_a_machine_without_one_is_a_clear_error(no_gpu, monkeypatch, tmp_path, capsys):
    for name in ("cuda", "cuda:1"):
        with pytest.raises(DeviceUnavailable, match="no CUDA GPU"):
            choose_device(name)
    monkeypatch.setenv(DEVICE_ENV, "cuda")
    with pytest.raises(DeviceUnavailable, match=f"{DEVICE_ENV}.*use --device cpu or auto"):
        choose_device()
    assert choose_device("cpu") == torch.device("cpu")  # the argument wins over the variable
    with pytest.raises(DeviceUnavailable, match="unknown device 'gpu0'"):
        choose_device("gpu0")
    # The command line says it in one line, before reading anything.
    assert cli.main(["score", "--csv", str(tmp_path / "none.csv"), "--out", str(tmp_path / "out.csv"),
                     "--device", "cuda"]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err


def test_a_gpu_torch_can_see_is_chosen_automatically_unless_overridden(monkeypatch):
    monkeypatch.delenv(DEVICE_ENV, raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert choose_device() == torch.device("cuda")
    assert choose_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(DeviceUnavailable, match="2 CUDA GPU"):
        choose_device("cuda:2")
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert choose_device() == torch.device("cpu")


def test_a_predictor_built_for_the_cpu_has_its_encoders_and_heads_there(shipped, no_gpu, monkeypatch):
    from core.scoring import predict

    tensors, card, encoders = shipped
    predictor = Predictor.from_card(tensors, card, encoders=encoders, device="cpu")
    assert predictor.device == torch.device("cpu") and predictor.device_heads is predictor.heads
    modules = (predictor.text_encoder.model, predictor.image_encoder.model, predictor.device_heads)
    assert {p.device.type for m in modules for p in m.parameters()} == {"cpu"}
    text, image = np.zeros((2, encoders[0].dim), np.float32), np.zeros((2, encoders[1].dim), np.float32)
    probs = predictor.probabilities(text, image, np.ones(2, bool), np.ones(2, bool))
    assert isinstance(probs["fused"], np.ndarray) and probs["fused"].shape == (2, 3)
    # Encoders loaded for a card are loaded on the device asked for.
    seen = []
    monkeypatch.setattr(predict, "load_text_encoder", lambda spec, adapter=None, device=None: seen.append(device))
    monkeypatch.setattr(predict, "load_image_encoder", lambda spec, device=None: seen.append(device))
    predict.load_encoders_for_card(card, device="cpu")
    assert seen == [torch.device("cpu")] * 2


def test_the_cpu_default_stays_fp32_with_the_int8_image_graph(shipped, no_gpu, monkeypatch, mmsa_home):
    monkeypatch.delenv(precision.PRECISION_ENV, raising=False)
    tensors, card, encoders = shipped
    predictor = Predictor.from_card(tensors, card, encoders=encoders)
    assert predictor.precision_check is None and predictor.notice is None
    assert [e.autocast for e in encoders] == [None, None]
    assert encoders[0].feature_key == encoders[0].id and encoders[1].runtime == "onnxruntime-int8"
    assert not (mmsa_home / precision.CACHE_NAME).exists()  # nothing was checked


def test_bf16_autocast_serves_after_its_check_passes_and_files_its_features_apart(shipped, no_gpu, mmsa_home,
                                                                                  monkeypatch):
    tensors, card, encoders = shipped
    text_encoder, image_encoder = encoders
    predictor = Predictor.from_card(tensors, card, encoders=encoders, precision="bf16")
    check = predictor.precision_check
    assert check.passed and predictor.notice is None, check.summary()
    assert check.agreeing == check.n_pairs * 3 and check.max_prob_diff <= precision.MAX_PROB_DIFF
    assert text_encoder.autocast == torch.bfloat16
    # The fp32 ONNX Runtime graph steps aside for PyTorch, and reports say so.
    assert text_encoder.onnx_runner() is None and text_encoder.runtime == "torch"
    # Autocast text features are close to fp32 ones, not equal: they get their own feature-store key.
    assert text_encoder.feature_key == f"{text_encoder.id}:autocast-bf16"
    # On the CPU the int8 graph still serves the images: autocast does not touch them.
    assert image_encoder.feature_key == image_encoder.id
    scored = predictor.predict_pair("What a beautiful morning, feeling blessed!", reference_pictures()[0].read_bytes())
    assert scored.label is not None and scored.source == "fused"
    # Checked once per machine: a second predictor reads the cached result.
    monkeypatch.setattr(precision, "run_precision_check", lambda *a, **k: pytest.fail("checked twice"))
    assert Predictor.from_card(tensors, card, encoders=encoders, precision="bf16").precision_check == check


def test_a_failing_autocast_check_keeps_fp32_and_says_so(shipped, no_gpu, mmsa_home, monkeypatch):
    monkeypatch.setattr(precision, "MAX_PROB_DIFF", -1.0)  # no autocast can pass: as on a drifting GPU
    monkeypatch.setenv(precision.PRECISION_ENV, "bf16")
    tensors, card, encoders = shipped
    with pytest.warns(UserWarning, match="FAILED"):
        predictor = Predictor.from_card(tensors, card, encoders=encoders)
    assert not predictor.precision_check.passed
    assert "bf16 autocast check FAILED" in predictor.notice and "fp32 instead" in predictor.notice
    assert [e.autocast for e in encoders] == [None, None]
    assert encoders[0].feature_key == encoders[0].id


def test_an_image_encoder_under_autocast_keeps_close_to_fp32_under_its_own_key(no_gpu, monkeypatch):
    from core.encoders import FP32_IMAGE_SPEC, encoder_status, load_image_encoder
    from core.encoders.int8_check import cosines

    monkeypatch.setenv("MMSA_ONNX", "0")  # PyTorch in both precisions: no graph export in this test
    encoder = load_image_encoder(FP32_IMAGE_SPEC, device=torch.device("cpu"))
    pictures = [Image.open(p) for p in reference_pictures()[:4]]
    exact = encoder.encode(pictures)
    encoder.set_autocast(torch.bfloat16)
    assert encoder.feature_key == f"{encoder.id}:autocast-bf16"
    assert encoder_status(encoder)["precision"] == "bf16" and encoder_status(encoder)["device"] == "cpu"
    assert cosines(encoder.encode(pictures), exact).min() > 0.99
    encoder.set_autocast(None)
    assert encoder.feature_key == encoder.id
    np.testing.assert_allclose(encoder.encode(pictures), exact, atol=1e-4 * np.abs(exact).max())


def test_an_unknown_precision_is_refused(shipped, monkeypatch):
    tensors, card, encoders = shipped
    with pytest.raises(ValueError, match="unknown precision 'fp8'"):
        Predictor.from_card(tensors, card, encoders=encoders, precision="fp8")
