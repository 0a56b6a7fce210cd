"""Pictures of pages as documents: the corpus scan saved as PNG, as a phone-style JPEG stored on its
side with an EXIF orientation, and as a multi-page TIFF; read by OCR one page per frame, shown
upright with the cited passage marked; bad images refused by name."""
from __future__ import annotations

import re
from collections import Counter

import pypdfium2 as pdfium
import pytest
from PIL import Image

from ingest import IngestError, read_document
from ingest.ocr import ocr_available

pytestmark = pytest.mark.skipif(not ocr_available(), reason="rapidocr / onnxruntime not installed")

PASSAGE = "written in 1990–2 by Bill Venables and David M. Smith when at the University of Adelaide"


def _recall(got: str, expected: str) -> float:
    want = Counter(re.findall(r"[a-z]{3,}", expected.lower()))
    return sum((want & Counter(re.findall(r"[a-z]{3,}", got.lower()))).values()) / sum(want.values())


@pytest.fixture(scope="module")
def scans(tmp_path_factory, corpus):
    """image-only.pdf page 1 (r-intro.pdf physical page 7 scanned at 150 dpi, grey) as image files,
    and r-intro's own text of that page."""
    folder = tmp_path_factory.mktemp("images")
    pdf = pdfium.PdfDocument(str(corpus / "image-only.pdf"))
    page = pdf[0].render(scale=150 / 72).to_pil().convert("L")                # [1651, 1275]
    pdf.close()
    page.save(folder / "scan.png")
    exif = Image.Exif()
    exif[0x0112] = 6                                  # "rotate 90 CW to view": the camera was turned
    page.rotate(90, expand=True).save(folder / "photo.jpg", quality=90, exif=exif)
    blank = Image.new("L", page.size, 255)
    page.save(folder / "pages.tiff", save_all=True, append_images=[blank], compression="tiff_deflate")
    blank.save(folder / "blank.png")
    text = pdfium.PdfDocument(str(corpus / "r-intro.pdf"))
    truth = text[6].get_textpage().get_text_range()
    text.close()
    return folder, truth


def test_a_png_scan_is_one_page_read_by_ocr(scans):
    folder, truth = scans
    doc = read_document(folder / "scan.png")
    assert (doc.kind, doc.unit, len(doc.pages), doc.title) == ("image", "page", 1, "Preface")
    assert _recall(doc.pages[0].text, truth) > 0.95
    assert any("OCR" in note for note in doc.notes), doc.notes


def test_a_photo_is_read_upright_by_its_exif_orientation(scans):
    folder, truth = scans
    assert Image.open(folder / "photo.jpg").size == (1651, 1275)                # stored on its side
    doc = read_document(folder / "photo.jpg")
    assert _recall(doc.pages[0].text, truth) > 0.95 and doc.title == "Preface"


def test_an_iphone_heic_photo_is_read(scans, tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    folder, truth = scans
    pillow_heif.from_pillow(Image.open(folder / "scan.png").convert("RGB")).save(tmp_path / "IMG_0042.HEIC",
                                                                                 quality=90)
    doc = read_document(tmp_path / "IMG_0042.HEIC")
    assert doc.kind == "image" and doc.title == "Preface" and _recall(doc.pages[0].text, truth) > 0.95


def test_a_multi_page_tiff_is_a_page_per_frame(scans):
    folder, truth = scans
    progress: list[tuple[int, int]] = []
    doc = read_document(folder / "pages.tiff", progress=lambda done, total: progress.append((done, total)))
    assert len(doc.pages) == 2 and _recall(doc.pages[0].text, truth) > 0.95
    assert doc.pages[1].text == ""                                               # a blank page stays, empty
    assert progress[-1] == (2, 2)


def test_the_cited_passage_is_marked_on_the_upright_photo(scans):
    from app.page_images import render_page

    folder, _ = scans
    shown = render_page(folder / "photo.jpg", 1, highlight=PASSAGE)
    assert shown.image.size == (1236, 1600) and shown.page_count == 1            # upright, at the OCR size
    assert shown.highlighted and shown.match_score >= 80 and len(shown.boxes) == 2
    assert all(0 <= top < bottom < 1600 / 3 for _, top, _, bottom in shown.boxes)  # the Preface's top lines
    assert not render_page(folder / "photo.jpg", 1, highlight="Gnuplot draws surfaces with splot").highlighted


def test_bad_images_are_refused_by_name(scans, tmp_path, monkeypatch):
    folder, _ = scans
    (tmp_path / "noise.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    data = (folder / "scan.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 3])
    (tmp_path / "notes.jpg").write_text("a text file named .jpg")
    for name in ("noise.png", "cut.png", "notes.jpg"):
        with pytest.raises(IngestError) as err:
            read_document(tmp_path / name)
        assert err.value.reason == "corrupt" and name in str(err.value), str(err.value)
    with pytest.raises(IngestError, match="blank.png.*OCR found no text") as err:
        read_document(folder / "blank.png")
    assert err.value.reason == "no_text"
    with pytest.raises(IngestError, match="scan.png.*OCR is turned off"):
        read_document(folder / "scan.png", ocr=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)                  # a decompression bomb
    with pytest.raises(IngestError) as err:
        read_document(folder / "scan.png")
    assert err.value.reason == "too_large" and "scan.png" in str(err.value)


def test_a_later_frame_too_large_is_refused_by_name(tmp_path, monkeypatch):
    """A TIFF whose first frame is small passes the check Image.open makes; a later frame of more than
    Pillow's MAX_IMAGE_PIXELS (a decompression bomb: 30,000 x 30,000 blank pixels are 750 KB) was
    decoded into RGB (2.7 GB), or failed as "corrupt". It is `too_large`, naming the file and frame."""
    from PIL import ImageDraw

    first = Image.new("L", (900, 300), 255)
    ImageDraw.Draw(first).text((20, 100), "Inventory of the north warehouse", fill=0)
    bomb = Image.new("1", (3_000, 3_000), 1)
    first.save(tmp_path / "scans.tiff", save_all=True, append_images=[bomb], compression="tiff_lzw")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_000_000)      # 2 x 1 M: errors; 1 M..2 M warns
    with pytest.raises(IngestError) as err:
        read_document(tmp_path / "scans.tiff")
    assert err.value.reason == "too_large" and "scans.tiff" in str(err.value) and "frame 2" in str(err.value)
