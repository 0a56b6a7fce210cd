"""Build a C source set into a shared library once, cached per user (torch-free: the PDF reader's
loops, ingest/pdf_native.py, use it as the engine's CPU kernels, engine/cpu_kernels.py, do)."""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """$JAMBADOCS_KERNEL_CACHE, else <XDG cache>/jambadocs/kernels."""
    base = os.environ.get("JAMBADOCS_KERNEL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "jambadocs", "kernels")
    return Path(base)


def build_library(stem: str, sources: list[Path], flags: list[str], libs: list[str] = (), key_extra: bytes = b"",
                  headers: list[Path] = (), compiler: str | None = None) -> Path:
    """Compile `sources` (once per sources, headers, compiler, flags and `key_extra`) into
    <cache_dir>/<stem>-<key>.so and return its path. Raises RuntimeError with the compiler's
    message when it cannot be built."""
    cc = compiler or os.environ.get("CC") or "cc"
    if shutil.which(cc) is None:
        raise RuntimeError(f"no C compiler ({cc!r} not found)")
    src = b"".join(p.read_bytes() for p in [*sources, *headers])
    key = hashlib.sha256(src + " ".join([cc, *flags, *libs]).encode() + key_extra).hexdigest()[:16]
    out = cache_dir() / f"{stem}-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=out.parent)         # built aside, then renamed: atomic
    os.close(fd)
    try:
        res = subprocess.run([cc, *flags, "-o", tmp, *map(str, sources), *libs], capture_output=True, text=True,
                             timeout=120)
        if res.returncode != 0:
            raise RuntimeError(f"{cc} failed on {', '.join(p.name for p in sources)}: {res.stderr.strip()[-2000:]}")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out
