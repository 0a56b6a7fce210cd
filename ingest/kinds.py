"""Which files jambadocs reads, by name: suffix -> format ("kind"), one list for the reader, the upload
box and `jambadocs ingest`."""
from __future__ import annotations

# Plain text under another name: data, markup read as it is, source code. Read like .txt.
PLAIN_TEXT_SUFFIXES = (
    ".csv", ".tsv", ".json", ".jsonl", ".xml", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".log",
    ".rst", ".tex", ".bib", ".org", ".adoc", ".srt", ".vtt",
    ".py", ".js", ".ts", ".java", ".c", ".h", ".cpp", ".hpp", ".cs", ".go", ".rs", ".rb", ".php", ".sh",
    ".sql", ".r", ".swift", ".kt", ".scala", ".lua", ".pl", ".css",
)
# Pictures of pages, read by OCR: one page per frame.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp", ".heic", ".heif")
KIND_BY_SUFFIX = {
    ".pdf": "pdf", ".txt": "txt", ".text": "txt", ".md": "md", ".markdown": "md",
    ".html": "html", ".htm": "html", ".xhtml": "html", ".docx": "docx",
    ".pptx": "pptx", ".odt": "odt", ".epub": "epub", ".rtf": "rtf", ".xlsx": "xlsx", ".eml": "eml",
    ".mhtml": "mhtml", ".mht": "mhtml",
    **{suffix: "txt" for suffix in PLAIN_TEXT_SUFFIXES},
    **{suffix: "image" for suffix in IMAGE_SUFFIXES},
}
SUPPORTED_SUFFIXES = tuple(KIND_BY_SUFFIX)      # what the upload box accepts
# What `jambadocs ingest FOLDER` picks up: documents, not the data files, code and figures next to
# them (named one by one, those are read too).
DOCUMENT_SUFFIXES = tuple(s for s in KIND_BY_SUFFIX if s not in PLAIN_TEXT_SUFFIXES + IMAGE_SUFFIXES)
# Formats people often have that are not read, with what to do instead.
CONVERT_HINTS = {
    ".doc": "an old binary Word file: save it as .docx or PDF and add that",
    ".ppt": "an old binary PowerPoint file: save it as .pptx or PDF and add that",
    ".xls": "an old binary Excel file: save it as .xlsx and add that",
    ".pages": "an Apple Pages file: export it as PDF or Word and add that",
    ".key": "an Apple Keynote file: export it as PDF or PowerPoint and add that",
    ".numbers": "an Apple Numbers file: export it as Excel and add that",
    ".odp": "an OpenDocument presentation: export it as PDF or .pptx and add that",
    ".ods": "an OpenDocument spreadsheet: save it as .xlsx and add that",
    ".msg": "an Outlook message: save it as .eml (or print it to PDF) and add that",
    **{suffix: "a Kindle e-book: convert it to EPUB (Calibre does, for a book without DRM) and add that"
       for suffix in (".mobi", ".azw", ".azw3", ".kfx")},
    ".fb2": "a FictionBook e-book: convert it to EPUB (Calibre does) and add that",
    ".djvu": "a DjVu scan: export it as PDF (DjView does) and add that",
    ".xps": "an XPS document: print it to PDF and add that", ".oxps": "an XPS document: print it to PDF and add that",
    ".ipynb": "a Jupyter notebook: export it as Markdown, HTML or PDF (File > Save and Export Notebook As) and add that",
    **{suffix: "an archive: unpack it and add the files inside"
       for suffix in (".zip", ".7z", ".rar", ".tar", ".gz", ".tgz")},
}
SUPPORTED_KINDS = (".pdf, .docx, .pptx, .xlsx, .odt, .epub, .rtf, .eml, .html, .mhtml, .md, plain text (.txt, .csv, .json, "
                   ".xml, .tex, source code, ...) and images of pages (.png, .jpg, .tiff, .webp, .bmp, .heic)")
