"""Turn whatever image bytes a user uploads into an upright RGB picture, or a clear ImageError.

One job: bytes in, `PIL.Image.Image` (mode RGB) out. Everything a phone, a scanner or an
export tool can produce is normalised here, so the encoders only ever see upright RGB:

- EXIF orientation is applied (phones store portrait shots sideways plus a rotate flag);
- animations keep their first frame;
- transparency is composited on white (what a viewer shows, not the black of dropped alpha);
- palette, greyscale, CMYK and 16-bit images are converted with their real colours/levels;
- decompression bombs are refused from the header size, before any pixel is decoded.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from core.errors import InputError

# File types the upload widgets offer and an uploaded folder keeps (any other file is skipped).
IMAGE_TYPES = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
MAX_IMAGE_BYTES = 20 * 2**20
MAX_IMAGE_PIXELS = 40_000_000

_WHITE = (255, 255, 255)
# EXIF orientations 5..8 swap width and height once the image is turned upright.
_SIDEWAYS_ORIENTATIONS = {5, 6, 7, 8}
_EXIF_ORIENTATION_TAG = 0x0112


class ImageError(InputError):
    """An image file that cannot be used; the message says why in words a user understands."""


def read_image_bytes(path: Path, max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """Read an image file's bytes, refusing missing, empty and oversized files with a clear message."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageError(f"image file not found: {path.name}") from None
    except OSError as error:
        raise ImageError(f"cannot read image file {path.name}: {error.strerror or error}") from None
    if path.is_dir():
        raise ImageError(f"{path.name} is a folder, not an image file")
    if size == 0:
        raise ImageError(f"image file {path.name} is empty (0 bytes)")
    if size > max_bytes:
        raise ImageError(f"image file {path.name} is {_megabytes(size)}, over the {_megabytes(max_bytes)} limit")
    with path.open("rb") as handle:
        # Read one byte past the cap: a file that grew after stat() is still caught.
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ImageError(f"image file {path.name} is over the {_megabytes(max_bytes)} limit")
    return data


def decode_image(
    data: bytes,
    *,
    draft_size: tuple[int, int] | None = (448, 448),
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Image.Image:
    """Decode image bytes to an upright RGB image, or raise ImageError saying what is wrong.

    `draft_size` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while decoding (about
    twice as fast); the result is never smaller than `draft_size`. Pass None for full size.
    """
    if not data:
        raise ImageError("image is empty (0 bytes)")
    image = _open_checked(data, max_pixels)
    if draft_size is not None and image.format == "JPEG":
        image.draft("RGB", _draft_request(image, draft_size))
    try:
        image.load()
    except Exception as error:  # Pillow raises OSError, SyntaxError, ValueError, EOFError, ...
        kind = image.format or "image"
        raise ImageError(f"truncated or corrupt {kind} ({error})") from None
    image = _upright(image)
    return _to_rgb(image)


def _open_checked(data: bytes, max_pixels: int) -> Image.Image:
    """Open lazily (header only) and refuse images whose declared size is over the pixel cap.

    Image.open reads only the header, so the size check happens before any pixel is
    decoded. Pillow's own global bomb check still runs inside open(); we translate it into
    the same message rather than changing Image.MAX_IMAGE_PIXELS, which other code shares.
    """
    try:
        with warnings.catch_warnings():
            # Our own cap is stricter than Pillow's warning threshold; the warning is noise.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError:
        # Over Pillow's own hard limit (2 × Image.MAX_IMAGE_PIXELS): still tell the user the size.
        pillow_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        raise ImageError(_too_large(_declared_size_without_bomb_check(data), min(max_pixels, pillow_limit))) from None
    except UnidentifiedImageError:
        raise ImageError("not an image (the file is not a format we can read, such as JPEG, PNG, GIF or WebP)") from None
    except Exception as error:
        raise ImageError(f"corrupt image header ({error})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(f"image has an impossible size {width}×{height}")
    if width * height > max_pixels:
        raise ImageError(_too_large((width, height), max_pixels))
    return image


def _declared_size_without_bomb_check(data: bytes) -> tuple[int, int] | None:
    """Read width and height from the header through Pillow's format plugins, skipping only the bomb check.

    Used only to word the error for images so large that Image.open refuses them outright.
    """
    Image.init()
    for format_id in Image.ID:
        factory, accept = Image.OPEN[format_id]
        if accept is not None and not accept(data[:16]):
            continue
        try:
            return factory(io.BytesIO(data), "").size
        except Exception:
            continue
    return None


def _draft_request(image: Image.Image, draft_size: tuple[int, int]) -> tuple[int, int]:
    """The draft size in stored (pre-rotation) orientation, so the upright result is still >= draft_size."""
    orientation = image.getexif().get(_EXIF_ORIENTATION_TAG)
    if orientation in _SIDEWAYS_ORIENTATIONS:
        return draft_size[1], draft_size[0]
    return draft_size


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block leaves the picture as stored rather than losing it."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB with honest colours: alpha on white, 16-bit scaled, not clipped."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode == "P":
        # Palette images may mark one index as transparent; go through RGBA to keep that.
        image = image.convert("RGBA") if "transparency" in image.info else image.convert("RGB")
        return _to_rgb(image)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_grey_to_rgb(image)
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode in ("L", "RGB", "1") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    try:
        # L, 1, CMYK, YCbCr, LAB, HSV: Pillow's converters handle these.
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ImageError(f"unsupported colour mode {mode} ({error})") from None


def _high_depth_grey_to_rgb(image: Image.Image) -> Image.Image:
    """16-bit / 32-bit greyscale to 8-bit RGB by scaling the range; Pillow's convert would clip to white."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F" and values.size and np.nanmax(values) <= 1.0:
        values = values * 255.0  # float images conventionally hold 0..1
    elif image.mode != "F" and values.size and (image.mode.startswith("I;16") or values.max() > 255):
        values = values / 257.0  # 0..65535 onto 0..255
    grey = np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _too_large(size: tuple[int, int] | None, limit: int) -> str:
    if size is None:
        return f"image is over the {_megapixels(limit)} limit (refused before decoding)"
    width, height = size
    return f"image is {width}×{height} = {_megapixels(width * height)}, over the {_megapixels(limit)} limit"


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f} Mpx" if pixels >= 1e6 else f"{pixels / 1e6:.2f} Mpx"


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB" if size % 2**20 else f"{size // 2**20} MB"
