"""Image data sets: CIFAR-10 from its python batches (restricted unpickler) and binary files,
distwm's ImageFolder, the seed's ImageNet / image-folder loaders, and the data-parallel path's
``open_training_data`` / ``describe_training_data`` over every kind of source. All data is
written small into ``tmp_path``, except scikit-learn's bundled digits."""

from __future__ import annotations

import os
import pickle
import struct
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from distwm.datasets import cifar10
from distwm.datasets.cifar10 import (CIFAR10, UnsafePickleError, describe_cifar10, load_batch_file,
                                     make_cifar10, read_cifar10)
from distwm.datasets.image_folder import DatasetNotFoundError, ImageFolder
from distwm.datasets.imagenet1k import (ImageNet, ImageNetSubset, copy_imgnt_locally,
                                        make_imagefolder, make_imagenet1k)
from distwm.datasets.training_data import (ClipTrainingData, check_ranks, data_layout,
                                           describe_training_data, open_training_data, rank_limit)

PER_BATCH = 4  # rows per CIFAR batch file here (10,000 in the real files)


# -- writing small data sets ------------------------------------------------------------------

def cifar_rows(batch: int) -> tuple[np.ndarray, list[int]]:
    """``PER_BATCH`` rows whose red plane is the row's global index, green 100 + batch, blue
    200; labels ``index % 10``."""
    rows = np.zeros((PER_BATCH, 3072), np.uint8)
    first = batch * PER_BATCH
    rows[:, :1024] = np.arange(first, first + PER_BATCH)[:, None]
    rows[:, 1024:2048] = 100 + batch
    rows[:, 2048:] = 200
    return rows, [(first + i) % 10 for i in range(PER_BATCH)]


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 ``str`` (BINSTRING), as the cPickle that wrote the real
    CIFAR-10 batches did."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def py2_dumps(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    # numpy 1.x (which the Python 2 files were written with) lived in numpy.core
    return buffer.getvalue().replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")


def write_cifar_python(root, *, py2: bool = False):
    folder = root / cifar10.PYTHON_DIR
    folder.mkdir(parents=True)
    dumps = py2_dumps if py2 else pickle.dumps
    names = [*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH]
    for batch, name in enumerate(names):
        rows, labels = cifar_rows(batch)
        entry = {b"batch_label": name.encode(), b"data": rows, b"labels": labels} if py2 else \
            {"batch_label": name, "data": rows, "labels": labels, "filenames": [f"{i}.png" for i in labels]}
        (folder / name).write_bytes(dumps(entry))
    meta = {b"label_names": [n.encode() for n in cifar10.CLASSES], b"num_cases_per_batch": PER_BATCH,
            b"num_vis": 3072} if py2 else \
        {"label_names": list(cifar10.CLASSES), "num_cases_per_batch": PER_BATCH, "num_vis": 3072}
    (folder / cifar10.PYTHON_META).write_bytes(dumps(meta))
    return folder


def write_cifar_binary(root):
    folder = root / cifar10.BINARY_DIR
    folder.mkdir(parents=True)
    for batch, name in enumerate([*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH]):
        rows, labels = cifar_rows(batch)
        (folder / f"{name}.bin").write_bytes(
            np.concatenate([np.asarray(labels, np.uint8)[:, None], rows], axis=1).tobytes())
    (folder / cifar10.BINARY_META).write_text("\n".join(cifar10.CLASSES) + "\n\n")
    return folder


def write_png(path, value: int, size=(6, 5), mode="RGB"):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    channels = 3 if mode == "RGB" else 1
    array = np.full((height, width, channels), value, np.uint8).squeeze()
    Image.fromarray(array, mode=mode).save(path)


def write_image_folder(root, classes=("cat", "dog"), per_class=3):
    for c, name in enumerate(classes):
        for i in range(per_class):
            write_png(root / name / f"img{i}.png", 10 * c + i)
    return root


# -- CIFAR-10 -----------------------------------------------------------------------------------

@pytest.mark.parametrize("py2", [False, True], ids=["python3-pickles", "python2-pickles"])
def test_cifar_python_batches_load_through_the_restricted_unpickler(tmp_path, py2):
    write_cifar_python(tmp_path, py2=py2)
    images, labels, classes = read_cifar10(tmp_path, train=True)
    assert images.shape == (5 * PER_BATCH, 3, 32, 32) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and labels.tolist() == [i % 10 for i in range(5 * PER_BATCH)]
    assert images[:, 0, 5, 7].tolist() == list(range(5 * PER_BATCH))  # the red plane comes first
    assert (images[PER_BATCH:2 * PER_BATCH, 1] == 101).all() and (images[:, 2] == 200).all()
    assert classes == list(cifar10.CLASSES)
    test_images, test_labels, _ = read_cifar10(tmp_path / cifar10.PYTHON_DIR, train=False)
    assert test_images.shape == (PER_BATCH, 3, 32, 32) and (test_images[:, 1] == 105).all()
    assert describe_cifar10(tmp_path)["train_size"] == 5 * PER_BATCH


class Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_with_another_global_is_refused_and_nothing_runs(tmp_path):
    folder = write_cifar_python(tmp_path)
    marker = tmp_path / "executed"
    (folder / "data_batch_2").write_bytes(pickle.dumps({"data": Evil(marker), "labels": [0]}))
    with pytest.raises(UnsafePickleError, match=r"data_batch_2: refusing to unpickle the global "
                                                r"(posix|os|nt)\.system"):
        read_cifar10(tmp_path)
    assert not marker.exists()
    path = tmp_path / "builtins.pkl"
    path.write_bytes(pickle.dumps({"data": eval}))
    with pytest.raises(UnsafePickleError, match="builtins.eval"):
        load_batch_file(str(path))


def test_a_malformed_batch_is_named(tmp_path):
    folder = write_cifar_python(tmp_path)
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((2, 10), np.uint8),
                                                        "labels": [0, 1]}))
    with pytest.raises(ValueError, match=r"data_batch_3: 'data' must be a uint8 array \(N, 3072\)"):
        read_cifar10(tmp_path)
    rows, _ = cifar_rows(0)
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": rows, "labels": [0, 1, 2, 12]}))
    with pytest.raises(ValueError, match="'labels' must be 4 integers in 0..9"):
        read_cifar10(tmp_path)


def test_cifar_binary_files_read_as_the_python_ones(tmp_path):
    write_cifar_python(tmp_path / "py")
    write_cifar_binary(tmp_path / "bin")
    for train in (True, False):
        py_images, py_labels, _ = read_cifar10(tmp_path / "py", train)
        bin_images, bin_labels, classes = read_cifar10(tmp_path / "bin", train)
        np.testing.assert_array_equal(py_images, bin_images)
        np.testing.assert_array_equal(py_labels, bin_labels)
    assert classes == list(cifar10.CLASSES)
    assert describe_cifar10(tmp_path / "bin")["test_size"] == PER_BATCH
    bad = tmp_path / "bin" / cifar10.BINARY_DIR / "test_batch.bin"
    bad.write_bytes(bad.read_bytes()[:-5])
    with pytest.raises(ValueError, match="not a whole number of 3073-byte rows"):
        read_cifar10(tmp_path / "bin", train=False)


def test_missing_or_incomplete_cifar_is_named_with_what_belongs_there(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=rf"no CIFAR-10 at {tmp_path}: expected "
                                                   r"cifar-10-batches-py/ .*never downloads"):
        read_cifar10(tmp_path)
    folder = write_cifar_python(tmp_path)
    (folder / "test_batch").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"incomplete: missing \['test_batch'\].*cs.toronto"):
        CIFAR10(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="make_cifar10 needs root_path"):
        make_cifar10(None, 4)


def test_cifar10_dataset_and_make_cifar10_follow_the_seed(tmp_path):
    import torch

    write_cifar_python(tmp_path)
    dataset = CIFAR10(str(tmp_path), train=True, transform=lambda im: np.asarray(im).sum())
    assert len(dataset) == 5 * PER_BATCH and dataset.data.shape == (5 * PER_BATCH, 32, 32, 3)
    assert dataset.targets[:3] == [0, 1, 2] and dataset.class_to_idx["truck"] == 9
    value, label = dataset[3]
    assert label == 3 and value == 32 * 32 * (3 + 100 + 200)
    raw, _ = CIFAR10(str(tmp_path), train=False)[0]
    assert raw.mode == "RGB" and raw.size == (32, 32)

    def to_tensor(image):
        return torch.as_tensor(np.array(image)).permute(2, 0, 1)

    ds, loader, sampler = make_cifar10(to_tensor, batch_size=4, num_workers=0, world_size=2,
                                       rank=1, root_path=str(tmp_path), pin_mem=False)
    assert isinstance(ds, CIFAR10)
    assert isinstance(sampler, torch.utils.data.distributed.DistributedSampler) and len(sampler) == 10
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 32, 32) and images.dtype == torch.uint8 and labels.shape == (4,)
    assert len(loader) == 2  # 10 rows of rank 1, drop_last


# -- image folders ------------------------------------------------------------------------------

def test_image_folder_lists_classes_and_images(tmp_path):
    root = write_image_folder(tmp_path / "pets")
    (root / "cat" / "notes.txt").write_text("not an image")
    write_png(root / "dog" / "deeper" / "img9.PNG", 99)
    folder = ImageFolder(str(root))
    assert folder.classes == ["cat", "dog"] and folder.class_to_idx == {"cat": 0, "dog": 1}
    assert len(folder) == 7 and folder.targets == [0, 0, 0, 1, 1, 1, 1]
    assert folder.samples[6][0].endswith(os.path.join("dog", "deeper", "img9.PNG"))  # as torchvision
    image, label = folder[4]
    assert label == 1 and image.mode == "RGB" and np.asarray(image)[0, 0, 0] == 11
    with pytest.raises(DatasetNotFoundError, match=rf"no image folder at {tmp_path / 'none'}: "
                                                   r"expected root/<class name>/<image file>"):
        ImageFolder(str(tmp_path / "none"))
    (root / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match=r"no image files .* in the class folders \['empty'\]"):
        ImageFolder(str(root))


def test_make_imagefolder_and_its_val_split(tmp_path):
    import torch

    root = write_image_folder(tmp_path / "pets", per_class=5)
    ds, loader, sampler = make_imagefolder(None, 2, num_workers=0, root_path=str(tmp_path),
                                           image_folder="pets", pin_mem=False)
    assert isinstance(ds, ImageFolder) and len(ds) == 10 and len(sampler) == 10
    assert isinstance(loader, torch.utils.data.DataLoader)
    halves = [make_imagefolder(None, 1, num_workers=0, root_path=str(root), val_split=0.3,
                               split=split, split_seed=3)[0] for split in ("train", "val")]
    train, val = (set(h.indices) for h in halves)
    assert len(val) == 3 and not train & val and train | val == set(range(10))
    with pytest.raises(ValueError, match="split must be 'train' or 'val'"):
        make_imagefolder(None, 1, root_path=str(root), split="test")


def test_imagenet_layout_subset_and_local_copy(tmp_path, monkeypatch):
    base = tmp_path / "net" / "imagenet_full_size" / "061417"
    for split in ("train", "val"):
        write_image_folder(base / split, classes=("n01440764", "n01443537"), per_class=2)
    for folder in (base / "train" / "n01440764",):
        for i, path in enumerate(sorted(folder.iterdir())):
            path.rename(folder / f"n01440764_{i}.png")
    train = ImageNet(str(tmp_path / "net"), copy_data=False, index_targets=True)
    assert train.classes == ["n01440764", "n01443537"] and len(train) == 4
    assert train.target_indices == [[0, 1], [2, 3]]
    assert len(ImageNet(str(tmp_path / "net"), train=False, copy_data=False)) == 4
    subset_file = tmp_path / "subset.txt"
    subset_file.write_text("n01440764_1.png\n\n")
    subset = ImageNetSubset(train, str(subset_file))
    assert len(subset) == 1 and subset[0][1] == 0 and subset.classes == train.classes
    subset_file.write_text("n09999999_1.png\n")
    with pytest.raises(ValueError, match="line 1: 'n09999999_1.png' names the class 'n09999999'"):
        ImageNetSubset(train, str(subset_file))
    with pytest.raises(DatasetNotFoundError, match=r"no ImageNet train folder at .*missing.*"
                                                   r"<root>/<image_folder>/\{train,val\}"):
        ImageNet(str(tmp_path / "missing"), copy_data=False)
    ds, _, sampler = make_imagenet1k(None, 2, num_workers=0, root_path=str(tmp_path / "net"),
                                     pin_mem=False)
    assert len(ds) == 4 and len(sampler) == 4

    monkeypatch.delenv("SLURM_JOBID", raising=False)
    assert copy_imgnt_locally(str(tmp_path / "net"), "train/") is None  # not a SLURM job
    with tarfile.open(tmp_path / "net" / "images.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "net" / "imagenet_full_size", arcname="imagenet_full_size")
    scratch = tmp_path / "scratch"
    path = copy_imgnt_locally(str(tmp_path / "net"), "val/", tar_file="images.tar.gz", job_id="7",
                              local_rank=0, scratch=str(scratch))
    assert path == os.path.join(scratch, "7", "imagenet_full_size/061417/", "val/")
    assert (scratch / "7" / "copy_signal.txt").is_file()
    assert len(ImageFolder(path)) == 4
    assert copy_imgnt_locally(str(tmp_path / "net"), "val/", tar_file="images.tar.gz", job_id="7",
                              local_rank=1, scratch=str(scratch)) == path  # no waiting: it is done


# -- training data: every kind of source ----------------------------------------------------------

def test_shard_directories_open_as_the_genie_path_read_them(tmp_path):
    from dataset_trainable import write_moving_square

    manifest = write_moving_square(tmp_path, files=4)
    data = open_training_data(str(tmp_path), 4, rank=1, world_size=2)
    assert isinstance(data, ClipTrainingData) and data.info == manifest
    assert data.files == [manifest["shards"][1]["file"], manifest["shards"][3]["file"]]
    batch = data.batch([0, 3])
    assert batch["image"].shape == (2, 4, 1, 8, 8) and batch["action"].shape == (2, 4, 2)
    assert data.holdout(8) is None
    assert describe_training_data(tmp_path) == manifest
    assert rank_limit(manifest) == 4 and data_layout(manifest) == "4 shard files"
    with pytest.raises(ValueError, match="4 shard files but 5 data-parallel ranks"):
        check_ranks(manifest, 5)
    with pytest.raises(ValueError, match="shard directory: it has no 'test' split"):
        open_training_data(str(tmp_path), 4, split="test")


@pytest.mark.parametrize("writer", [write_cifar_python, write_cifar_binary], ids=["python", "binary"])
def test_cifar_sources_shard_rows_over_ranks(tmp_path, writer):
    writer(tmp_path)
    info = describe_training_data(str(tmp_path))
    assert info == {"kind": "images", "frame_shape": [3, 32, 32], "num_classes": 10,
                    "size": 5 * PER_BATCH, "test_size": PER_BATCH, "classes": list(cifar10.CLASSES),
                    "split": "train", "source": str(tmp_path)}
    ranks = [open_training_data(str(tmp_path), 1, rank, 3) for rank in range(3)]
    assert [len(r) for r in ranks] == [7, 7, 6] and ranks[0].info == info
    red = [r.batch(np.arange(len(r)))["image"][:, 0, 0, 0].tolist() for r in ranks]
    assert red == [list(range(rank, 20, 3)) for rank in range(3)]  # rows rank::world_size
    batch = ranks[2].batch([1, 1, -1])
    assert batch["image"].shape == (3, 3, 32, 32) and batch["label"].tolist() == [5, 5, 7]
    held = ranks[0].holdout(100)
    assert held["label"].tolist() == [0, 1, 2, 3] and (held["image"][:, 1] == 105).all()
    test = open_training_data(str(tmp_path), 1, split="test")
    assert len(test) == PER_BATCH and test.info["split"] == "test" and test.info["size"] == PER_BATCH


def test_image_folder_sources_with_and_without_a_test_split(tmp_path):
    flat = write_image_folder(tmp_path / "flat")
    write_png(flat / "dog" / "big.png", 77, size=(12, 20))  # another size: fit to 5 x 6
    data = open_training_data(str(flat), 1)
    assert data.info["frame_shape"] == [3, 5, 6] and data.info["size"] == 7
    assert data.info["classes"] == ["cat", "dog"] and data.holdout(4) is None
    batch = data.batch([3, 0])
    assert batch["image"].shape == (2, 3, 5, 6) and batch["label"].tolist() == [1, 0]
    assert (batch["image"][0] == 77).all() and (batch["image"][1] == 0).all()
    assert describe_training_data(str(flat)) == data.info

    split = tmp_path / "split"
    write_image_folder(split / "train")
    write_image_folder(split / "val", classes=("dog",), per_class=2)
    data = open_training_data(str(split), 1, rank=1, world_size=2)
    assert len(data) == 3 and data.info["size"] == 6 and data.info["test_size"] == 2
    assert data.holdout(10)["label"].tolist() == [1, 1]
    assert open_training_data(str(split), 1, split="test").batch([0, 1])["label"].tolist() == [1, 1]
    write_image_folder(split / "val", classes=("cow",), per_class=1)
    with pytest.raises(ValueError, match=r"val has the classes \['cow'\], which .*train does not have"):
        open_training_data(str(split), 1)


def digits_pixels():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return np.rint(digits.images * (255 / 16)).astype(np.uint8), digits.target


def test_digits_sizes_channels_and_the_held_out_split():
    pixels, targets = digits_pixels()
    data = open_training_data("sklearn:digits:8", 1)
    assert data.info == {"kind": "images", "frame_shape": [1, 8, 8], "num_classes": 10,
                         "size": 1438, "test_size": 359, "classes": [str(d) for d in range(10)],
                         "split": "train", "source": "sklearn:digits:8"}
    train = data.batch(np.arange(len(data)))
    np.testing.assert_array_equal(train["image"][:, 0], pixels[:1438])
    np.testing.assert_array_equal(train["label"], targets[:1438])
    held = data.holdout(359)  # the last 20%: never a training row
    np.testing.assert_array_equal(held["image"][:, 0], pixels[1438:])
    assert sorted(set(held["label"].tolist())) == list(range(10))
    assert len(data.holdout(5)["label"]) == 5

    default = open_training_data("sklearn:digits", 1)
    assert default.info["frame_shape"] == [1, 32, 32] and default.info["source"] == "sklearn:digits:32"
    rgb = open_training_data("sklearn:digits:16:rgb:nearest", 1).batch([0, 1])["image"]
    assert rgb.shape == (2, 3, 16, 16) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[:, 0], rgb[:, 2])
    np.testing.assert_array_equal(rgb[:, 0], pixels[:2].repeat(2, axis=1).repeat(2, axis=2))
    smooth = open_training_data("sklearn:digits:24", 1).batch([0])["image"][0, 0].astype(int)
    assert smooth.max() <= pixels[0].max() and smooth.min() >= pixels[0].min()
    assert len(np.unique(smooth)) > len(np.unique(pixels[0]))  # bilinear: in-between values
    assert describe_training_data("sklearn:digits:24:rgb")["frame_shape"] == [3, 24, 24]


def test_digits_ranks_are_disjoint_and_cover_the_train_split():
    whole = open_training_data("sklearn:digits:8", 1)
    rows = whole.batch(np.arange(len(whole)))
    parts = [open_training_data("sklearn:digits:8", 1, rank, 3) for rank in range(3)]
    assert sum(len(p) for p in parts) == len(whole)
    for rank, part in enumerate(parts):
        got = part.batch(np.arange(len(part)))
        np.testing.assert_array_equal(got["image"], rows["image"][rank::3])
        np.testing.assert_array_equal(got["label"], rows["label"][rank::3])


def test_describe_training_data_imports_no_torch(tmp_path):
    write_cifar_python(tmp_path)
    code = ("import sys; from distwm.datasets.training_data import describe_training_data as d; "
            f"info = d({str(tmp_path)!r}); digits = d('sklearn:digits:8'); "
            "assert info['size'] == 20 and digits['size'] == 1438, (info, digits); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_bad_sources_and_requests_are_refused_by_name(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match=rf"no training data at {tmp_path / 'nope'} .*expected a "
                                         r"shard directory .*'sklearn:digits"):
        open_training_data(str(tmp_path / "nope"), 1)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file, not a training data source"):
        describe_training_data(str(tmp_path / "file.txt"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no training data"):
        describe_training_data(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="unknown scikit-learn data set 'iris'"):
        open_training_data("sklearn:iris", 1)
    with pytest.raises(ValueError, match="unknown option 'big'.*'rgb' or 'grey'"):
        open_training_data("sklearn:digits:big", 1)
    with pytest.raises(ValueError, match="the size must be in 8..1024"):
        open_training_data("sklearn:digits:4", 1)
    with pytest.raises(ValueError, match="samples are single images, so the sample's seq_len must "
                                         "be 1, got 4"):
        open_training_data("sklearn:digits:8", 4)
    tiny = write_image_folder(tmp_path / "tiny", classes=("a",), per_class=3)
    with pytest.raises(ValueError, match="has 3 images but 4 data-parallel ranks"):
        open_training_data(str(tiny), 1, rank=0, world_size=4)
    with pytest.raises(ValueError, match="has 3 images but 4 data-parallel ranks"):
        check_ranks(describe_training_data(str(tiny)), 4)
    with pytest.raises(ValueError, match=r"rank must be an integer in \[0, 2\), got 2"):
        open_training_data(str(tiny), 1, rank=2, world_size=2)
    with pytest.raises(ValueError, match="has no test split"):
        open_training_data(str(tiny), 1, split="test")
    with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\)"):
        open_training_data(str(tiny), 1, split="val")
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)  # scikit-learn not installed
    with pytest.raises(ImportError, match=r"needs scikit-learn.*pip install 'distwm\[digits\]'"):
        describe_training_data("sklearn:digits")
