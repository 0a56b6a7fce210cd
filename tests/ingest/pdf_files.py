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
