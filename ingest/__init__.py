"""Ingestion: documents to page-anchored text (`read_document`), and text to a token-budgeted,
segment-stable Jamba prompt (`ingest.prompt`, `ingest.budget`)."""
from ingest.errors import REASONS, IngestError
from ingest.model import Document, Page
from ingest.reader import READER_VERSION, read_document, read_documents

__all__ = ["READER_VERSION", "REASONS", "Document", "IngestError", "Page", "read_document", "read_documents"]
