"""Files of a run on a local disk, a shared mount or an object store, through ``pyarrow.fs``.

A location is a plain path (local or a shared mount such as NFS/EFS) or a URI that
``pyarrow.fs.FileSystem.from_uri`` understands (``file:///...``, ``s3://bucket/...``,
``gs://bucket/...``, ``hdfs://...``), as Ray Train and Tune's ``storage_path``. Writes are
whole-file and atomic where the file system allows (a local write goes to a temporary name and
is renamed; an object-store put is atomic by itself), so a reader never sees half a file.

Only object stores lack appends and renames: :func:`is_local` tells callers (the replay log)
which kind they have.
"""

from __future__ import annotations

import os
import posixpath
import shutil
from typing import Any

__all__ = ["resolve", "is_local", "local_path", "join", "makedirs", "exists", "is_file",
           "listdir", "write_bytes", "read_bytes", "write_text", "read_text", "delete_file",
           "delete_dir", "upload_dir", "upload_file", "download_file", "open_input", "copy_dir", "normalize", "display"]


def _has_scheme(location: str) -> bool:
    return "://" in str(location)


def resolve(location: str | os.PathLike) -> tuple[Any, str]:
    """``(pyarrow file system, path in it)`` of ``location``."""
    import pyarrow.fs

    location = os.fspath(location)
    if _has_scheme(location):
        try:
            return pyarrow.fs.FileSystem.from_uri(location)
        except Exception as exc:  # pyarrow raises ArrowInvalid / ArrowNotImplementedError
            raise ValueError(
                f"cannot open storage location {location!r}: {exc}. Use a path, file:///..., "
                "s3://bucket/..., gs://bucket/... or another URI pyarrow.fs supports"
            ) from exc
    return pyarrow.fs.LocalFileSystem(), os.path.abspath(os.path.expanduser(location))


def is_local(location: str | os.PathLike) -> bool:
    """True for a path or ``file://`` URI (appends and renames work), False for object stores."""
    location = os.fspath(location)
    return not _has_scheme(location) or location.startswith("file://")


def local_path(location: str | os.PathLike) -> str:
    """The OS path of a local location (``ValueError`` for an object store)."""
    if not is_local(location):
        raise ValueError(f"{location!r} is not on a local or mounted file system")
    return resolve(location)[1]


def join(location: str | os.PathLike, *parts: str) -> str:
    location = os.fspath(location)
    if _has_scheme(location):
        return posixpath.join(location.rstrip("/"), *parts)
    return os.path.join(location, *parts)


def display(location: str | os.PathLike) -> str:
    """``location`` as users typed it (a path stays a path)."""
    return os.fspath(location)


def makedirs(location: str | os.PathLike) -> None:
    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)


def _info(location: str | os.PathLike):
    fs, path = resolve(location)
    return fs.get_file_info(path)


def exists(location: str | os.PathLike) -> bool:
    import pyarrow.fs

    return _info(location).type != pyarrow.fs.FileType.NotFound


def is_file(location: str | os.PathLike) -> bool:
    import pyarrow.fs

    return _info(location).type == pyarrow.fs.FileType.File


def listdir(location: str | os.PathLike) -> list[str]:
    """Sorted names directly under ``location`` (``[]`` if it does not exist)."""
    import pyarrow.fs

    fs, path = resolve(location)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.Directory:
        return []
    infos = fs.get_file_info(pyarrow.fs.FileSelector(path, recursive=False))
    return sorted(posixpath.basename(i.path.rstrip("/")) for i in infos)


def write_bytes(location: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``location`` atomically (parent directories are created)."""
    location = os.fspath(location)
    if is_local(location):
        path = local_path(location)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
        return location
    fs, path = resolve(location)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(data)
    return location


def read_bytes(location: str | os.PathLike) -> bytes:
    """``FileNotFoundError`` naming ``location`` when there is no such file."""
    if not is_file(location):
        raise FileNotFoundError(f"no file at {os.fspath(location)!r}")
    fs, path = resolve(location)
    with fs.open_input_stream(path) as f:
        return f.readall()


def write_text(location: str | os.PathLike, text: str) -> str:
    return write_bytes(location, text.encode("utf-8"))


def read_text(location: str | os.PathLike) -> str:
    return read_bytes(location).decode("utf-8")


def delete_file(location: str | os.PathLike) -> None:
    """Remove a file; nothing happens if it is already gone."""
    fs, path = resolve(location)
    try:
        fs.delete_file(path)
    except (FileNotFoundError, OSError):
        pass


def delete_dir(location: str | os.PathLike) -> None:
    """Remove a directory tree; nothing happens if it is already gone."""
    if is_local(location):
        shutil.rmtree(local_path(location), ignore_errors=True)
        return
    fs, path = resolve(location)
    try:
        fs.delete_dir(path)
    except (FileNotFoundError, OSError):
        pass


def upload_dir(local_dir: str, location: str | os.PathLike) -> None:
    """Copy a local directory tree to ``location`` (files of the same name are replaced)."""
    import pyarrow.fs

    fs, path = resolve(location)
    fs.create_dir(path, recursive=True)
    pyarrow.fs.copy_files(os.path.abspath(local_dir), path,
                          source_filesystem=pyarrow.fs.LocalFileSystem(), destination_filesystem=fs)


def upload_file(local_file: str, location: str | os.PathLike) -> str:
    """Copy a local file to ``location`` (atomically, as :func:`write_bytes`)."""
    location = os.fspath(location)
    if is_local(location):
        path = local_path(location)
        if os.path.abspath(local_file) == path:
            return location
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        shutil.copyfile(local_file, tmp)
        os.replace(tmp, path)
        return location
    fs, path = resolve(location)
    fs.create_dir(posixpath.dirname(path), recursive=True)
    with open(local_file, "rb") as src, fs.open_output_stream(path) as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    return location


def download_file(location: str | os.PathLike, local_file: str) -> str:
    """Copy ``location`` to a local file; returns ``local_file``."""
    if not is_file(location):
        raise FileNotFoundError(f"no file at {os.fspath(location)!r}")
    fs, path = resolve(location)
    with fs.open_input_stream(path) as src, open(local_file, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    return local_file


def open_input(location: str | os.PathLike):
    """A readable binary stream of ``location`` (``read(n)``, context manager)."""
    fs, path = resolve(location)
    return fs.open_input_stream(path)


def copy_dir(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    """Copy a directory tree between any two locations (``FileNotFoundError`` if ``source``
    does not exist)."""
    import pyarrow.fs

    if not exists(source):
        raise FileNotFoundError(f"no directory at {os.fspath(source)!r}")
    src_fs, src = resolve(source)
    dst_fs, dst = resolve(destination)
    dst_fs.create_dir(dst, recursive=True)
    pyarrow.fs.copy_files(src, dst, source_filesystem=src_fs, destination_filesystem=dst_fs)


def normalize(location: str | os.PathLike) -> str:
    """A comparable form: an absolute path for a local path, a URI unchanged."""
    location = os.fspath(location)
    return location.rstrip("/") if _has_scheme(location) else os.path.abspath(os.path.expanduser(location))
