"""``encoders`` and ``quantize-image``: which encoders load here; the int8 image graph."""
from __future__ import annotations

import json
from pathlib import Path


def cmd_quantize_image(args) -> int:
    """``quantize-image``: rebuild the int8 image graph from calibration pictures; returns the exit status."""
    from core.encoders.quantize import build_int8_image_graph, calibration_files

    files = calibration_files(Path(args.csv), Path(args.images), n=args.n)
    card = build_int8_image_graph(files, Path(args.out), source=f"first {len(files)} pictures of {Path(args.csv).name}")
    print(json.dumps(card, indent=2))
    return 0


def cmd_encoders(args) -> int:
    """``encoders``: list the known specs, whether each loads here, and the int8 check; returns the exit status."""
    from core.device import choose_device, describe_device
    from core.encoders import EncoderUnavailable, known_specs, load_image_encoder, load_text_encoder

    print(f"device: {describe_device(choose_device())} (MMSA_DEVICE: auto, cpu, cuda or cuda:N)")
    for kind, spec in known_specs():
        loader = load_text_encoder if kind == "text" else load_image_encoder
        try:
            encoder = loader(spec)
            print(f"{kind:5}  {spec:32}  loads   {encoder.dim}-d  id {encoder.id}")
            check = getattr(encoder, "check", None)
            if check is not None:
                print(f"{'':5}  {'':32}  {check.summary()}; runs as {encoder.runtime}")
            if encoder.notice:
                print(f"{'':5}  {'':32}  warning: {encoder.notice}")
        except EncoderUnavailable as exc:
            print(f"{kind:5}  {spec:32}  unavailable: {str(exc)[:160]}")
    return 0


def register(sub) -> None:
    """Add this group's subcommands to the CLI's subparsers."""

    quantize = sub.add_parser("quantize-image", help="rebuild the int8 EfficientNet-Lite0 graph from calibration "
                              "pictures (training data, never test)")
    quantize.add_argument("--csv", required=True, help="CSV whose image column names the calibration pictures")
    quantize.add_argument("--images", required=True)
    quantize.add_argument("--out", default="assets/models/efficientnet-lite0-int8")
    quantize.add_argument("--n", type=int, default=512, help="calibration pictures (the first N)")
    quantize.set_defaults(run=cmd_quantize_image)

    encoders = sub.add_parser("encoders", help="list encoder specs and whether they load here")
    encoders.set_defaults(run=cmd_encoders)
