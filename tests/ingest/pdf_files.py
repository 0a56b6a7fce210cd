"""PDFs made from corpus files at test time, for the cases the corpus lacks."""
from __future__ import annotations

from pathlib import Path

# Every code of the font to a private-use character: what a PDF whose generator wrote a wrong (or
# no usable) ToUnicode map gives. The glyphs still print as letters.
PRIVATE_USE_CMAP = b"""/CIDInit /ProcSet findresource begin
12 dict begin
begincmap
/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def
/CMapName /PrivateUse def
/CMapType 2 def
1 begincodespacerange
<00> <FF>
endcodespacerange
1 beginbfrange
<00> <FF> <E000>
endbfrange
endcmap
CMapName currentdict /CMap defineresource pop
end
end
"""


def write_garbled_pdf(path: Path, corpus: Path) -> Path:
    """r-intro.pdf physical pages 7 and 11 with every font's ToUnicode map replaced by
    PRIVATE_USE_CMAP, then hsaur-inference.pdf's page 3 as it is (no font shared with them)."""
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, NameObject

    writer = PdfWriter()
    writer.append(corpus / "r-intro.pdf", pages=[6, 10])
    for page in writer.pages:
        for ref in page["/Resources"].get_object()["/Font"].get_object().values():
            cmap = DecodedStreamObject()
            cmap.set_data(PRIVATE_USE_CMAP)
            ref.get_object()[NameObject("/ToUnicode")] = writer._add_object(cmap)
    writer.append(corpus / "hsaur-inference.pdf", pages=[2])
    writer.write(path)
    return path


def write_text_pdf(path: Path, pages: list[tuple[list[tuple[float, float, str]], str]]) -> Path:
    """A PDF written by hand: per page, (x, y, text) lines in 12 pt Helvetica on a US Letter
    MediaBox, plus extra page-dictionary entries ("/CropBox [...]", "/Rotate 90")."""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines, extra in pages:
        stream = b"".join(b"BT /F1 12 Tf %g %g Td (%s) Tj ET\n" % (x, y, text.encode("latin-1"))
                          for x, y, text in lines)
        kids.append(len(objects) + 1)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >>"
                       b" /Contents %d 0 R %s >>" % (len(objects) + 2, extra.encode()))
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    return write_pdf_objects(path, objects)


def write_pdf_objects(path: Path, objects: list[bytes], packed: tuple[int, ...] = ()) -> Path:
    """A PDF of these objects (numbered from 1, the first the catalog), with its xref table; or, when
    `packed` names object numbers, those in a Flate object stream (as pdfTeX or Acrobat compress a
    catalog) and a cross-reference stream."""
    import zlib

    stream_number = len(objects) + 1
    if packed:
        offsets, parts = [], b""
        for number in packed:
            offsets.append(b"%d %d" % (number, len(parts)))
            parts += objects[number - 1] + b"\n"
        header = b" ".join(offsets) + b"\n"
        data = zlib.compress(header + parts)
        objects = [*objects, b"<< /Type /ObjStm /N %d /First %d /Length %d /Filter /FlateDecode >>\nstream\n%s\n"
                   b"endstream" % (len(packed), len(header), len(data), data)]
    out, offsets = bytearray(b"%PDF-1.5\n"), {}
    for number, body in enumerate(objects, start=1):
        if number not in packed:
            offsets[number] = len(out)
            out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    if not packed:
        out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
        out += b"".join(b"%010d 00000 n \n" % offsets[n] for n in range(1, len(objects) + 1))
        out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    else:                        # entries: type (0 free, 1 at an offset, 2 in the object stream), field, field
        size = len(objects) + 2
        rows = [(0, 0, 65535)] + [(2, stream_number, packed.index(n)) if n in packed else (1, offsets[n], 0)
                                  for n in range(1, len(objects) + 1)] + [(1, xref, 0)]
        table = b"".join(bytes([kind]) + a.to_bytes(4, "big") + b.to_bytes(2, "big") for kind, a, b in rows)
        out += (b"%d 0 obj\n<< /Type /XRef /Size %d /W [1 4 2] /Root 1 0 R /Length %d >>\nstream\n%s\nendstream\n"
                b"endobj\nstartxref\n%d\n%%%%EOF\n" % (size, size, len(table), table, xref))
    path.write_bytes(bytes(out))
    return path


def write_stream_pdf(path: Path, streams: list[bytes], form: bytes = b"") -> Path:
    """A PDF written by hand with these content streams, one US Letter page each; the font /F1 is
    Helvetica, /GS0 an ExtGState with fill opacity 0, /Fm0 a form XObject drawing `form` (in its own
    space, scaled by half and moved to (300, 100) on the page)."""
    form_stream = b"<< /Type /XObject /Subtype /Form /BBox [0 0 612 792] /Matrix [0.5 0 0 0.5 300 100]" \
                  b" /Resources << /Font << /F1 3 0 R >> >> /Length %d >>\nstream\n%s\nendstream" % (len(form), form)
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               b"<< /Type /ExtGState /ca 0 >>", form_stream]
    kids = []
    for stream in streams:
        kids.append(len(objects) + 1)
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >>"
                       b" /ExtGState << /GS0 4 0 R >> /XObject << /Fm0 5 0 R >> >> /Contents %d 0 R >>"
                       % (len(objects) + 2))
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    return write_pdf_objects(path, objects)
