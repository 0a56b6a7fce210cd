"""Pictures of pages (.png, .jpg, .tiff, .webp, .bmp, and .heic with pillow-heif): one page per
frame (a multi-page TIFF is a multi-page document), text by OCR (ingest.ocr). Phone photos are
turned upright by their EXIF orientation first, as any image viewer shows them.
"""
from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageOps, UnidentifiedImageError

from ingest.errors import IngestError

if TYPE_CHECKING:
    from ingest.ocr import OcrPage

# Larger frames are scaled down to this long side before OCR: about the resolution PDF pages are
# OCR'd at (144 dpi, a letter page 1584 px high; bench/ocr.py: word recall 0.99-1.0). RapidOCR's
# recognition varies with scale: on the corpus scan at its own 150 dpi (1651 px) one line in 11 came
# out garbled, at 1600 px none on its three pages.
MAX_OCR_SIDE = 1600
# A PDF page is rendered (OCR, the viewer, the hidden-text checks) at most this many pixels: A4 at
# 600 dpi has 35 M. A page box may be 200 x 200 inches (14,400 pt; more with UserUnit): at the
# viewer's 1.5x that was 466 M pixels, a few hundred bytes of PDF taking 5 GB when its chip was clicked.
MAX_RENDER_PIXELS = 36_000_000


def render_scale(page, scale: float) -> float:
    """`scale`, lowered where rendering the PDF page (a pypdfium2 PdfPage) at it would make more than
    MAX_RENDER_PIXELS pixels."""
    width, height = page.get_size()
    pixels = width * height * scale * scale
    return scale if pixels <= MAX_RENDER_PIXELS else scale * (MAX_RENDER_PIXELS / pixels) ** 0.5


@lru_cache(maxsize=1)
def _register_heif() -> bool:
    """Let Pillow open HEIC/HEIF (iPhone photos) through pillow-heif, when it is installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


def open_image(data: bytes, path: str | Path) -> Image.Image:
    """The image in `data`, checked: a format Pillow reads, and not a decompression bomb (more than
    Pillow's `Image.MAX_IMAGE_PIXELS`, 89 M pixels: a 600 dpi A4 scan has 35 M)."""
    _register_heif()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise IngestError("too_large", path, f"too many pixels ({err})") from None
    except UnidentifiedImageError:
        raise IngestError("corrupt", path, "not an image Pillow can read (unknown format or damaged)") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise IngestError("corrupt", path, f"damaged image ({err})") from None


def frames(image: Image.Image, path: str | Path) -> Iterator[Image.Image]:
    """Each frame upright (EXIF orientation applied) and in RGB; a damaged frame is `corrupt`."""
    for number in range(1, frame_count(image) + 1):
        yield frame(image, number, path)


def frame(image: Image.Image, number: int, path: str | Path) -> Image.Image:
    """Frame `number` (1-based), upright and in RGB; one of more than Pillow's MAX_IMAGE_PIXELS (a
    small first frame passes `open_image`, a later one may be a decompression bomb) is `too_large`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.seek(number - 1)
        width, height = image.size
        if Image.MAX_IMAGE_PIXELS and width * height > Image.MAX_IMAGE_PIXELS:
            raise Image.DecompressionBombError(f"{width} x {height} pixels, more than {Image.MAX_IMAGE_PIXELS}")
        upright = ImageOps.exif_transpose(image)
        return (upright if upright is not None else image).convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise IngestError("too_large", path, f"frame {number}: too many pixels ({err})") from None
    except (OSError, ValueError, SyntaxError, EOFError) as err:
        raise IngestError("corrupt", path, f"damaged image ({err})") from None


def frame_count(image: Image.Image) -> int:
    return getattr(image, "n_frames", 1)


def ocr_frames(data: bytes, path: str | Path, max_pages: int,
               progress: Callable[[int, int], None] | None = None,
               known: Mapping[int, "OcrPage"] | None = None) -> list["OcrPage"]:
    """What OCR reads on every frame (`max_pages` at most: more is `too_large`); a frame that this
    engine read before (`known`: frame number -> OcrPage) is not read again."""
    import numpy as np

    from ingest.ocr import OcrPage, known_page, ocr_engine

    image = open_image(data, path)
    total = frame_count(image)
    if total > max_pages:
        raise IngestError("too_large", path, f"{total} frames, more than {max_pages}")
    engine = f"{ocr_engine()}, frame at most {MAX_OCR_SIDE} px"
    read = []
    for done, frame in enumerate(frames(image, path), start=1):
        page = known_page(known, done, engine)
        if page is None:
            frame.thumbnail((MAX_OCR_SIDE, MAX_OCR_SIDE))                # only ever shrinks
            page = OcrPage.read(np.asarray(frame), engine)               # [H, W, 3]
        read.append(page)
        if progress is not None:
            progress(done, total)
    return read
