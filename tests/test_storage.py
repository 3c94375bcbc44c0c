"""Run files through pyarrow.fs: a path and a file:// URI behave the same."""

from __future__ import annotations

import os

import pytest

from distwm.utils import storage


@pytest.mark.parametrize("as_uri", [False, True])
def test_write_read_list_delete(tmp_path, as_uri):
    root = f"file://{tmp_path}/run" if as_uri else str(tmp_path / "run")
    target = storage.join(root, "checkpoints", "latest")
    storage.write_text(target, "ckpt-000000012")
    assert storage.read_text(target) == "ckpt-000000012"
    assert storage.is_file(target) and storage.exists(storage.join(root, "checkpoints"))
    assert not storage.is_file(storage.join(root, "checkpoints"))
    assert storage.listdir(storage.join(root, "checkpoints")) == ["latest"]
    assert storage.listdir(storage.join(root, "nothing")) == []
    assert os.listdir(tmp_path / "run" / "checkpoints") == ["latest"]  # no temporary left
    storage.delete_file(target)
    storage.delete_file(target)  # already gone: nothing happens
    with pytest.raises(FileNotFoundError, match="latest"):
        storage.read_bytes(target)
    storage.delete_dir(root)
    assert not os.path.exists(tmp_path / "run")


def test_upload_and_download(tmp_path):
    local = tmp_path / "local"
    (local / "media").mkdir(parents=True)
    (local / "report.md").write_text("# report")
    (local / "media" / "a.png").write_bytes(b"\x89PNG")
    dest = f"file://{tmp_path}/remote"
    storage.upload_dir(str(local), dest)
    assert storage.read_text(storage.join(dest, "report.md")) == "# report"
    assert storage.listdir(storage.join(dest, "media")) == ["a.png"]
    storage.upload_file(str(local / "report.md"), storage.join(dest, "copy", "r.md"))
    out = storage.download_file(storage.join(dest, "copy", "r.md"), str(tmp_path / "back.md"))
    assert open(out).read() == "# report"


def test_bad_location_names_it_and_the_choices():
    with pytest.raises(ValueError, match=r"nosuchscheme://x.*s3://"):
        storage.resolve("nosuchscheme://x/y")
    assert storage.is_local("/a/b") and storage.is_local("file:///a") and not storage.is_local("s3://b/k")
    with pytest.raises(ValueError, match="not on a local"):
        storage.local_path("s3://bucket/run")
