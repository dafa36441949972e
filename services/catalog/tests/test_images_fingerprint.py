"""Image fingerprints: dimensions, formats, perceptual hashes that survive re-encoding, blurhash, refusals."""

from __future__ import annotations

import contextlib
import hashlib
import re

import blurhash
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from modelhub.catalog.images import (
    CorruptImage,
    ImageRejected,
    ImageTooLarge,
    NotAnImage,
    fingerprint_image,
    hamming_distance,
)
from modelhub.core.errors import InvalidArgument

from .image_samples import encode, picture, png, png_header_only

# blurhash-python 1.2.2 calls Image.getdata, which Pillow 13 deprecates (removal planned for Pillow 14): known,
# reported, and not this suite's concern; any other warning still shows.
pytestmark = pytest.mark.filterwarnings("ignore:Image.Image.getdata is deprecated:DeprecationWarning")

BASE83 = re.compile(r"[0-9A-Za-z#$%*+,\-.:;=?@\[\]^_{|}~]+")


@pytest.mark.parametrize(
    ("image_format", "mime_type"),
    [("PNG", "image/png"), ("JPEG", "image/jpeg"), ("WEBP", "image/webp"), ("GIF", "image/gif")],
)
def test_dimensions_format_and_sha256(image_format: str, mime_type: str) -> None:
    data = encode(picture(size=(200, 120)), image_format)
    fingerprint = fingerprint_image(data)
    assert (fingerprint.width, fingerprint.height) == (200, 120)
    assert (fingerprint.format, fingerprint.mime_type) == (image_format, mime_type)
    assert fingerprint.sha256 == hashlib.sha256(data).hexdigest().upper()
    assert re.fullmatch(r"[0-9a-f]{16}", fingerprint.phash)


def test_the_same_bytes_always_give_the_same_fingerprint() -> None:
    data = encode(picture(), "JPEG")
    assert fingerprint_image(data) == fingerprint_image(data)


@pytest.mark.parametrize(
    ("image_format", "params", "size"),
    [
        ("JPEG", {"quality": 90}, (256, 192)),
        ("JPEG", {"quality": 30}, (256, 192)),
        ("WEBP", {"quality": 50}, (256, 192)),
        ("JPEG", {"quality": 70}, (128, 96)),  # downscaled as well
        ("PNG", {}, (2048, 1536)),  # upscaled: big enough to take the reduced decoding path
        ("JPEG", {"quality": 80}, (2048, 1536)),
    ],
)
def test_perceptual_hash_survives_re_encoding(image_format: str, params: dict[str, int], size: tuple[int, int]) -> None:
    original = fingerprint_image(encode(picture("scene"), "PNG"))
    copy = fingerprint_image(encode(picture("scene").resize(size, Image.Resampling.LANCZOS), image_format, **params))
    assert hamming_distance(original.phash, copy.phash) <= 6


def test_different_pictures_are_far_apart() -> None:
    hashes = [fingerprint_image(encode(picture(kind), "PNG")).phash for kind in ("scene", "room", "night")]
    distances = [hamming_distance(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]]
    assert min(distances) >= 20


def test_blurhash_is_a_blurhash_of_the_picture() -> None:
    landscape = fingerprint_image(encode(picture("night", (256, 192)), "PNG"))
    portrait = fingerprint_image(encode(picture("night", (192, 256)), "PNG"))
    # 4x3 components for a landscape picture (3x4 for a portrait one): 4 + 2 * 12 characters of base83.
    assert len(landscape.blurhash) == len(portrait.blurhash) == 28
    assert BASE83.fullmatch(landscape.blurhash)
    assert landscape.blurhash[0] != portrait.blurhash[0]  # the first character encodes the component counts
    decoded = np.asarray(blurhash.decode(landscape.blurhash, 32, 24), dtype=float)
    # the night picture is dark and blue: so is its placeholder
    red, green, blue = decoded.mean(axis=(0, 1))
    assert blue > red and blue > green and decoded.mean() < 100


def test_exif_orientation_counts_for_the_dimensions() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees to display
    fingerprint = fingerprint_image(encode(picture(size=(200, 120)), "JPEG", exif=exif.tobytes()))
    assert (fingerprint.width, fingerprint.height) == (120, 200)


def test_transparency_is_flattened_onto_white() -> None:
    transparent = picture("scene").convert("RGBA")
    transparent.putalpha(0)
    white = fingerprint_image(encode(Image.new("RGB", (256, 192), "white"), "PNG"))
    assert fingerprint_image(encode(transparent, "PNG")).blurhash == white.blurhash


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "I;16"])
def test_other_pixel_modes_hash_like_the_colour_picture(mode: str) -> None:
    scene = picture("scene")
    if mode == "I;16":
        converted = Image.fromarray(np.asarray(scene.convert("L"), dtype=np.uint16) * 257)
    else:
        converted = scene.convert(mode)
    image_format = "JPEG" if mode == "CMYK" else "PNG"
    fingerprint = fingerprint_image(encode(converted, image_format))
    assert hamming_distance(fingerprint.phash, fingerprint_image(encode(scene, "PNG")).phash) <= 6


def test_an_animated_gif_is_fingerprinted_by_its_first_frame() -> None:
    frames = [picture("scene"), picture("room")]
    animated = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    first = fingerprint_image(encode(frames[0], "GIF"))
    assert fingerprint_image(animated).phash == first.phash


@pytest.mark.parametrize(
    "data",
    [b"", b"plain text", encode(picture(size=(32, 24)), "BMP"), encode(picture(size=(32, 24)), "TIFF")],
    ids=["empty", "text", "bmp", "tiff"],
)
def test_files_that_are_not_supported_images_are_refused(data: bytes) -> None:
    with pytest.raises(NotAnImage) as caught:
        fingerprint_image(data)
    assert caught.value.reason == "IMAGE_FORMAT_UNSUPPORTED"
    assert "PNG" in caught.value.message and "WEBP" in caught.value.message


@pytest.mark.parametrize("image_format", ["PNG", "JPEG", "WEBP", "GIF"])
@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_images_are_refused(image_format: str, keep: float) -> None:
    data = encode(picture(), image_format)
    with pytest.raises(CorruptImage) as caught:
        fingerprint_image(data[: int(len(data) * keep)])
    assert caught.value.reason == "IMAGE_CORRUPT"
    assert "upload the complete file again" in caught.value.message


def test_an_image_over_the_pixel_limit_is_refused_before_decoding() -> None:
    with pytest.raises(ImageTooLarge) as caught:
        fingerprint_image(encode(picture(size=(200, 100)), "PNG"), max_pixels=19_999)
    assert caught.value.reason == "IMAGE_TOO_LARGE"
    assert caught.value.message == (
        "the image is 200x100 (20,000 pixels), more than modelhub's limit of 19,999 pixels; "
        "downscale it and upload again"
    )
    assert caught.value.metadata == {"max_pixels": "19999", "width": "200", "height": "100"}
    assert [v.field for v in caught.value.violations] == ["image"]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow warns above 89 MP, as it should
@pytest.mark.parametrize(("width", "height"), [(10_000, 10_000), (100_000, 100_000)])
def test_decompression_bombs_are_refused(width: int, height: int) -> None:
    # 100 and 10,000 megapixels declared in a few bytes: refused from the header (over modelhub's limit or
    # Pillow's own bomb limit), never decoded.
    with pytest.raises(ImageTooLarge):
        fingerprint_image(png_header_only(width, height))


def test_refusals_are_invalid_arguments() -> None:
    assert issubclass(ImageRejected, InvalidArgument)
    assert all(issubclass(cls, ImageRejected) for cls in (NotAnImage, CorruptImage, ImageTooLarge))


@given(st.binary(max_size=200))
def test_any_bytes_give_a_fingerprint_or_a_refusal(data: bytes) -> None:
    with contextlib.suppress(ImageRejected):
        assert fingerprint_image(data).sha256 == hashlib.sha256(data).hexdigest().upper()


@given(st.data())
def test_any_damage_to_an_image_gives_a_fingerprint_or_a_refusal(data: st.DataObject) -> None:
    image_format = data.draw(st.sampled_from(["PNG", "JPEG", "WEBP", "GIF"]))
    damaged = bytearray(encode(picture(size=(48, 32)), image_format))
    for _ in range(data.draw(st.integers(1, 6))):
        damaged[data.draw(st.integers(0, len(damaged) - 1))] = data.draw(st.integers(0, 255))
    with contextlib.suppress(ImageRejected):
        assert fingerprint_image(bytes(damaged)).format == image_format


def test_hamming_distance() -> None:
    assert hamming_distance("0000000000000000", "0000000000000000") == 0
    assert hamming_distance("ffffffffffffffff", "0000000000000000") == 64
    assert hamming_distance("B6D66A69496D1629", "b6d66a69496d1628") == 1


@pytest.mark.parametrize("bad", ["", "xyz", "b6d66a69496d162", "b6d66a69496d16290", "b6d66a69496d162g"])
def test_hamming_distance_refuses_what_is_not_a_phash(bad: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        hamming_distance("b6d66a69496d1629", bad)
    assert [v.field for v in caught.value.violations] == ["phash_b"]


def test_png_builder_sanity() -> None:
    # The metadata builders make real images too: they fingerprint like any other.
    assert fingerprint_image(png({"parameters": "x"})).format == "PNG"
