"""Stories of users uploading awkward images. Every test file is drawn by Pillow or built from bytes here."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from core.io.images import MAX_IMAGE_BYTES, ImageError, decode_image, read_image_bytes

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def close_to(pixel, expected, tolerance=12) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that *claims* width×height in its IHDR but carries almost no data: a bomb's header."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# --- valid images come out upright RGB -------------------------------------------------------

def test_a_user_uploads_a_cmyk_jpeg_and_gets_it_scored_in_colour():
    data = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG")  # pure red in CMYK
    image = decode_image(data)
    assert image.mode == "RGB"
    assert close_to(image.getpixel((16, 16)), RED)


def test_a_transparent_png_logo_is_shown_on_white_not_black():
    logo = Image.new("RGBA", (20, 20), (0, 0, 0, 0))
    logo.paste((0, 0, 255, 255), (5, 5, 15, 15))
    image = decode_image(encode(logo, "PNG"))
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((10, 10)) == BLUE


def test_a_palette_gif_with_a_transparent_colour_is_composited_on_white():
    sticker = Image.new("P", (10, 10), 0)
    sticker.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    sticker.paste(1, (0, 0, 5, 10))
    image = decode_image(encode(sticker, "GIF", transparency=0))
    assert image.getpixel((2, 5)) == GREEN
    assert image.getpixel((8, 5)) == WHITE


def test_a_plain_palette_png_keeps_its_colours():
    palette = Image.new("RGB", (8, 8), (200, 30, 60)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert decode_image(encode(palette, "PNG")).getpixel((4, 4)) == (200, 30, 60)


def test_a_16_bit_greyscale_scan_keeps_its_grey_levels_instead_of_turning_white():
    levels = np.array([[0, 32768, 65535]], dtype=np.uint16)
    scan = Image.fromarray(levels)
    assert scan.mode.startswith("I;16")
    image = decode_image(encode(scan, "PNG"))
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), WHITE]


def test_an_animated_gif_is_scored_on_its_first_frame():
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE, GREEN)]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert close_to(decode_image(data).getpixel((8, 8)), RED)


def exif_rotated_jpeg(width=60, height=30, orientation=6) -> bytes:
    """A landscape photo stored with 'rotate 90° clockwise to view' in EXIF, like a phone portrait shot."""
    photo = Image.new("RGB", (width, height), BLUE)
    photo.paste(RED, (0, 0, width // 2, height))  # left half red as stored
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(photo, "JPEG", exif=exif.tobytes(), quality=95)


def test_a_phone_photo_with_exif_rotation_is_shown_upright():
    image = decode_image(exif_rotated_jpeg(), draft_size=None)
    assert image.size == (30, 60)  # turned to portrait
    # Orientation 6 means rotate 90° clockwise: the stored left half ends up on top.
    assert close_to(image.getpixel((15, 5)), RED, 40)
    assert close_to(image.getpixel((15, 55)), BLUE, 40)


def test_a_greyscale_photo_becomes_three_channel_rgb():
    image = decode_image(encode(Image.new("L", (5, 5), 90), "PNG"))
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (90, 90, 90)


def test_a_one_pixel_image_is_valid():
    image = decode_image(encode(Image.new("RGB", (1, 1), RED), "PNG"))
    assert image.size == (1, 1) and image.getpixel((0, 0)) == RED


def test_draft_mode_shrinks_a_big_jpeg_but_never_below_the_requested_size():
    data = encode(Image.new("RGB", (1800, 1000), RED), "JPEG")
    image = decode_image(data, draft_size=(448, 448))
    assert image.width >= 448 and image.height >= 448
    assert image.size == (900, 500)  # scaled by 1/2: 1/4 would be 450×250, too small
    assert decode_image(data, draft_size=None).size == (1800, 1000)


def test_draft_mode_respects_the_requested_size_after_exif_rotation():
    data = exif_rotated_jpeg(width=1600, height=800)
    image = decode_image(data, draft_size=(200, 400))  # upright: wide 200, tall 400
    assert image.width >= 200 and image.height >= 400
    assert image.size == (200, 400)  # scaled by 1/4 in stored orientation, then turned


def test_draft_mode_leaves_small_jpegs_alone():
    assert decode_image(encode(Image.new("RGB", (300, 200)), "JPEG")).size == (300, 200)


# --- invalid images become clear errors ------------------------------------------------------

def test_a_text_file_renamed_to_jpg_is_reported_as_not_an_image():
    with pytest.raises(ImageError, match="not an image"):
        decode_image(b"id,text\n1,hello\n")


def test_a_jpeg_cut_off_mid_download_is_reported_as_truncated():
    data = encode(Image.effect_noise((256, 256), 64).convert("RGB"), "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt JPEG"):
        decode_image(data[: len(data) // 2], draft_size=None)


def test_a_png_with_garbage_after_its_header_is_reported_as_corrupt():
    data = bytearray(encode(Image.effect_noise((64, 64), 64), "PNG"))
    data[60:] = b"\x00" * (len(data) - 60)
    with pytest.raises(ImageError, match="corrupt"):
        decode_image(bytes(data))


def test_empty_bytes_are_reported_as_empty():
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"")


def test_a_decompression_bomb_is_refused_from_its_header_with_its_size():
    with pytest.raises(ImageError, match=r"30000×30000 = 900 Mpx, over the 40 Mpx limit"):
        decode_image(png_header_only(30_000, 30_000))


def test_a_bomb_beyond_pillows_own_hard_limit_still_gets_our_message():
    with pytest.raises(ImageError, match="over the 40 Mpx limit"):
        decode_image(png_header_only(60_000, 60_000))


def test_a_just_too_large_image_is_refused_and_the_cap_is_adjustable():
    data = png_header_only(101, 100)
    with pytest.raises(ImageError, match="over the"):
        decode_image(data, max_pixels=10_000)
    assert Image.MAX_IMAGE_PIXELS == 89478485, "the global Pillow limit must stay untouched"


def test_an_image_exactly_at_the_cap_is_accepted():
    data = encode(Image.new("RGB", (100, 100), GREEN), "PNG")
    assert decode_image(data, max_pixels=10_000).size == (100, 100)


# --- reading files from disk -----------------------------------------------------------------

def test_reading_a_missing_image_file_names_it(tmp_path):
    with pytest.raises(ImageError, match="not found: cat.jpg"):
        read_image_bytes(tmp_path / "cat.jpg")


def test_reading_a_zero_byte_upload_says_it_is_empty(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)"):
        read_image_bytes(tmp_path / "empty.png")


def test_reading_an_oversized_file_gives_its_size_and_the_limit(tmp_path):
    (tmp_path / "huge.jpg").write_bytes(b"\xff" * 3_000_000)
    with pytest.raises(ImageError, match=r"2.9 MB, over the 2 MB limit"):
        read_image_bytes(tmp_path / "huge.jpg", max_bytes=2 * 2**20)
    assert MAX_IMAGE_BYTES == 20 * 2**20


def test_reading_a_folder_instead_of_a_file_is_refused(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(ImageError, match="folder"):
        read_image_bytes(tmp_path / "photos")


def test_a_valid_file_reads_and_decodes(tmp_path):
    (tmp_path / "ok.webp").write_bytes(encode(Image.new("RGB", (12, 12), RED), "WEBP", lossless=True))
    assert decode_image(read_image_bytes(tmp_path / "ok.webp")).getpixel((6, 6)) == RED


def jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header (SOF0) is patched to claim width×height."""
    data = bytearray(encode(Image.new("RGB", (8, 8), RED), "JPEG"))
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


@pytest.mark.parametrize("width, height, expected", [
    (7000, 7000, "7000×7000 = 49 Mpx, over the 40 Mpx limit"),
    (20000, 20000, "20000×20000 = 400 Mpx, over the 40 Mpx limit"),  # beyond Pillow's own hard limit
])
def test_a_jpeg_bomb_is_refused_from_its_frame_header(width, height, expected):
    with pytest.raises(ImageError, match=expected):
        decode_image(jpeg_claiming(width, height))


# --- property: no bytes at all can crash the decoder -----------------------------------------

@settings(max_examples=80, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_an_image_error_never_a_crash(data):
    try:
        image = decode_image(data)
    except ImageError:
        return
    assert image.mode == "RGB"


VALID_SAMPLES = [encode(Image.effect_noise((24, 24), 50).convert(mode), fmt)
                 for mode, fmt in (("RGB", "JPEG"), ("RGBA", "PNG"), ("P", "GIF"), ("RGB", "WEBP"))]


@settings(max_examples=150, deadline=None)
@given(sample=st.sampled_from(VALID_SAMPLES), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6), cut=st.integers(0, 10_000))
def test_damaged_real_images_are_an_image_error_or_a_valid_rgb_image(sample, flips, cut):
    data = bytearray(sample[: max(1, cut % (len(sample) + 1))])
    for position, value in flips:
        data[position % len(data)] = value
    try:
        image = decode_image(bytes(data))
    except ImageError:
        return
    assert image.mode == "RGB" and image.width >= 1
