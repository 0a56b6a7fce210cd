"""The temp folder of API uploads: full, and left behind by a process killed mid-upload."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

from app.api import STALE_UPLOAD_S, UPLOAD_PREFIX, create_app
from app.config import Settings
from app.services import Services
from tests.app.test_reliability import FILL_DISK, _on_a_small_disk
from tests.conftest import REPO

FULL_TEMP_CHILD = FILL_DISK + textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path
    data, corpus = Path(sys.argv[1]), Path(sys.argv[2])
    tempfile.tempdir = str(data.parent)             # the temp folder on the small disk ...
    from fastapi.testclient import TestClient
    from app.api import create_app
    from app.config import Settings
    from app.services import Services
    svc = Services(Settings.from_env(data_dir=Path(sys.argv[3]), engine="extractive"))   # ... not the data
    svc.workspaces.create("w")
    client = TestClient(create_app(svc))
    fill_disk(data.parent)
    out = {}
    for name in ("pari-refcard.pdf", "gnuplot.pdf"):    # 233 KB: read into memory; 1.3 MB: spooled to disk
        with open(corpus / name, "rb") as fh:
            r = client.post("/api/workspaces/w/documents", files=[("files", (name, fh, "application/pdf"))])
        out[name] = [r.status_code, r.json()["error"]]
    out["documents"] = len(svc.documents.list(1))
    out["left"] = [p.name for p in data.parent.iterdir() if p.name.startswith("jambadocs-")]
    print(json.dumps(out))
""")


def test_a_full_temp_disk_is_a_507_naming_the_file_and_the_folder(tmp_path, corpus):
    """Before: the copy of the upload failed with a bare OSError (500 'internal', no file name), and
    a part too large to keep in memory was a 400 'There was an error parsing the body'."""
    out = _on_a_small_disk(tmp_path, "8m", FULL_TEMP_CHILD, corpus, tmp_path / "data")
    small = tmp_path / "small-disk"
    status, error = out["pari-refcard.pdf"]
    assert status == 507 and error["reason"] == "storage"
    assert error["message"].startswith(f"pari-refcard.pdf: cannot be received in the temp folder {small}: "
                                       "No space left on device")
    status, error = out["gnuplot.pdf"]
    assert status == 507 and error["reason"] == "storage"
    assert f"temp folder {small}: No space left on device" in error["message"]
    assert out["documents"] == 0 and out["left"] == []


SLOW_UPLOAD_CHILD = textwrap.dedent("""
    import sys
    from pathlib import Path
    from fastapi.testclient import TestClient
    from app.api import create_app
    from app.config import Settings
    from app.services import Services
    svc = Services(Settings.from_env(data_dir=Path(sys.argv[1]), engine="extractive"))
    svc.workspaces.create("w")
    with open(sys.argv[2], "rb") as fh:                 # 311 pages: seconds to read
        TestClient(create_app(svc)).post("/api/workspaces/w/documents", files=[("files", ("g.pdf", fh))])
""")

LIVE_UPLOAD_CHILD = textwrap.dedent("""
    import sys, time
    from app.api import _upload_folder
    with _upload_folder("live.pdf") as tmp:
        (tmp / "upload.pdf").write_bytes(b"%PDF-1.4 being received")
        print(tmp, flush=True)
        time.sleep(120)
""")


def _uploads(folder):
    return sorted(p for p in folder.iterdir() if p.name.startswith(UPLOAD_PREFIX))


def test_a_server_killed_mid_upload_leaves_a_folder_the_next_start_removes(tmp_path, corpus, monkeypatch):
    """kill -9 while an upload is read left its temp folder (a copy of the file) forever; the next
    start removes it, and never the folder of an upload going on in another live process."""
    temp = tmp_path / "temp"
    temp.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temp)}
    killed = subprocess.Popen([sys.executable, "-c", SLOW_UPLOAD_CHILD, str(tmp_path / "a"),
                               str(corpus / "gnuplot.pdf")], env=env)
    live = subprocess.Popen([sys.executable, "-c", LIVE_UPLOAD_CHILD], env=env, stdout=subprocess.PIPE,
                            text=True)
    try:
        live_folder = live.stdout.readline().strip()
        deadline = time.monotonic() + 60
        while not any((d / "upload.pdf").stat().st_size == (corpus / "gnuplot.pdf").stat().st_size
                      for d in _uploads(temp) if str(d) != live_folder and (d / "upload.pdf").exists()):
            assert killed.poll() is None and time.monotonic() < deadline
            time.sleep(0.01)
        killed.send_signal(signal.SIGKILL)
        killed.wait(30)
        left = _uploads(temp)
        assert len(left) == 2
        old = time.time() - STALE_UPLOAD_S - 1           # both as old as a forgotten folder
        for d in left:
            os.utime(d, (old, old))
        monkeypatch.setattr(tempfile, "tempdir", str(temp))
        with Services(Settings.from_env(data_dir=tmp_path / "b", engine="extractive")) as svc:
            create_app(svc)                                # the next start
        assert [str(d) for d in _uploads(temp)] == [live_folder]
        assert (temp / live_folder / "upload.pdf").read_bytes() == b"%PDF-1.4 being received"
    finally:
        for p in (killed, live):
            p.kill()
            p.wait(30)
