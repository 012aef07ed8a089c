"""Pixels from image files: decoding (EXIF orientation applied, JPEGs decoded at reduced size when that still
covers the crop, small JPEGs through OpenCV, images of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels refused from
their header), the resize that covers a crop, and crop boxes.

:class:`repinv.data.ImageDataset` and :func:`repinv.data.load_images` build on these; every function works on one
image, as ``(3, H, W)`` float RGB in [0, 1] unless it says otherwise.
"""

from __future__ import annotations

import warnings
from typing import IO

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor

__all__ = ["open_image", "check_pixel_count", "rgb_pixels", "decode_covering", "small_jpeg_bgr", "small_jpeg",
           "covering_size", "resize_pixels", "crop_box", "crop_pixels", "eight_bit_to_float", "SMALL_JPEG_BYTES"]

#: JPEGs up to this size decode through OpenCV (see :func:`small_jpeg_bgr`).
SMALL_JPEG_BYTES = 48 * 1024
_ORIENTATION = 0x0112  # EXIF tag; values 5-8 swap width and height
#: JPEG start-of-frame markers (SOF0-SOF15 but DHT, JPG and DAC), whose segment holds the size and components.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def check_pixel_count(width: int, height: int) -> None:
    """Refuse an image of more than ``PIL.Image.MAX_IMAGE_PIXELS`` pixels (about 89 million unless changed; None
    lifts the limit) before anything is allocated for it.

    Raises:
        PIL.Image.DecompressionBombError: too many pixels (the message is Pillow's).
    """
    limit, pixels = Image.MAX_IMAGE_PIXELS, max(1, width) * max(1, height)
    if limit is not None and pixels > limit:
        raise Image.DecompressionBombError(f"Image size ({pixels} pixels) exceeds limit of {limit} pixels, could be "
                                           "decompression bomb DOS attack.")


def open_image(fp: str | IO[bytes]) -> Image.Image:
    """``PIL.Image.open`` (it reads the header only) refusing images of more than ``PIL.Image.MAX_IMAGE_PIXELS``
    pixels, where Pillow warns and would decode up to twice its limit: a few bytes of header can claim gigabytes.

    Raises:
        PIL.Image.DecompressionBombError: too many pixels.
        PIL.UnidentifiedImageError, OSError, ...: as ``PIL.Image.open``.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)  # the warning becomes the error
        try:
            return Image.open(fp)
        except Image.DecompressionBombWarning as warning:  # Pillow has closed the file it opened
            message = str(warning)
    raise Image.DecompressionBombError(message)


def rgb_pixels(image: Image.Image) -> Tensor:
    """Convert a Pillow image of any mode to RGB float32 ``(3, H, W)`` in [0, 1] (the rules: :mod:`repinv.data`)."""
    if image.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        gray = np.asarray(image, dtype=np.float32)
        gray = np.clip(gray if image.mode == "F" else gray / 65535.0, 0.0, 1.0)
        rgb = np.repeat(gray[..., None], 3, axis=2)
    elif image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:]
        rgb = rgba[..., :3] * alpha + (1.0 - alpha)  # composite over white
    else:
        rgb = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).contiguous()


def decode_covering(image: Image.Image, crop: tuple[int, int], scale: float = 1.0) -> Tensor:
    """Decode ``image`` resized so that it covers ``crop`` = ``(h, w)`` exactly on one side, times ``scale``.

    Returns:
        ``(3, H, W)`` float in [0, 1], ``H >= h`` and ``W >= w``; antialiased when shrinking.
    """
    swapped = image.getexif().get(_ORIENTATION, 1) in (5, 6, 7, 8)
    width, height = image.size[::-1] if swapped else image.size
    size = covering_size((height, width), crop, scale)
    # JPEG only: decode at 1/2, 1/4 or 1/8 resolution when that still covers ``size`` (much faster).
    image.draft(None, (size[0], size[1]) if swapped else (size[1], size[0]))
    return resize_pixels(rgb_pixels(ImageOps.exif_transpose(image)), size)


def small_jpeg_bgr(data: bytes) -> np.ndarray | None:
    """Decode a small JPEG with OpenCV's libjpeg-turbo (about 3x faster than Pillow on 64x64 photos, where
    decoding is most of a training step's data cost), EXIF orientation applied, as 8-bit ``(H, W, 3)`` BGR;
    ``None`` leaves it to Pillow (large files, which Pillow decodes at reduced size; CMYK, which Pillow converts;
    anything OpenCV cannot read, truncated files included).

    Raises:
        PIL.Image.DecompressionBombError: the frame header claims too many pixels (:func:`check_pixel_count`)."""
    if len(data) > SMALL_JPEG_BYTES or not data.startswith(b"\xff\xd8"):
        return None
    frame = _jpeg_frame(data)
    if frame is None or frame[2] not in (1, 3):  # no frame header found, or CMYK / YCCK: Pillow converts those
        return None
    check_pixel_count(frame[1], frame[0])  # before OpenCV allocates the claimed size
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)  # gray becomes 3 channels


def _jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """Height, width and number of components from a JPEG's frame header (None when there is none before the first
    scan, or the data ends first), reading only the marker segments before it."""
    position = 2  # after SOI
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
        elif marker in _SOF_MARKERS:
            if position + 10 > len(data):
                return None
            height, width = int.from_bytes(data[position + 5:position + 7], "big"), \
                int.from_bytes(data[position + 7:position + 9], "big")
            return height, width, data[position + 9]
        elif marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        elif marker == 0x01 or 0xD0 <= marker <= 0xD7:  # TEM and RSTn: no length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return None


def small_jpeg(data: bytes) -> Tensor | None:
    """:func:`small_jpeg_bgr` as ``(3, H, W)`` float RGB in [0, 1]."""
    bgr = small_jpeg_bgr(data)
    return None if bgr is None else eight_bit_to_float(bgr[None, ..., ::-1])[0]


def eight_bit_to_float(pixels: np.ndarray) -> Tensor:
    """8-bit ``(B, H, W, 3)`` pixels (any strides) as contiguous ``(B, 3, H, W)`` float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))).float().div_(255.0)


def covering_size(size: tuple[int, int], crop: tuple[int, int], scale: float) -> tuple[int, int]:
    """The size ``size`` = (h, w) is resized to so it covers ``crop`` on one side exactly, times ``scale``."""
    factor = max(crop[0] / size[0], crop[1] / size[1]) * scale
    return max(crop[0], round(size[0] * factor)), max(crop[1], round(size[1] * factor))


def resize_pixels(pixels: Tensor, size: tuple[int, int]) -> Tensor:
    """Antialiased bicubic resize of ``(3, H, W)`` pixels to ``size``, clamped to [0, 1]."""
    if tuple(pixels.shape[1:]) == size:
        return pixels
    resized = F.interpolate(pixels[None], size=size, mode="bicubic", antialias=True, align_corners=False)[0]
    return resized.clamp_(0.0, 1.0)  # bicubic overshoots at edges


def crop_box(size: tuple[int, int], crop: tuple[int, int], draws: list[float] | None) -> tuple[int, int, bool]:
    """Top, left and whether to flip: a centre crop (``draws`` None), or a random crop and flip from uniform
    ``draws`` = (scale, top, left, flip)."""
    height, width = size
    if draws is None:
        return (height - crop[0]) // 2, (width - crop[1]) // 2, False
    return int(draws[1] * (height - crop[0] + 1)), int(draws[2] * (width - crop[1] + 1)), draws[3] < 0.5


def crop_pixels(pixels: Tensor, crop: tuple[int, int], draws: list[float] | None) -> Tensor:
    """:func:`crop_box` applied to ``(3, H, W)`` pixels."""
    top, left, flip = crop_box((pixels.shape[1], pixels.shape[2]), crop, draws)
    pixels = pixels[:, top:top + crop[0], left:left + crop[1]]
    return (pixels.flip(-1) if flip else pixels).contiguous()
