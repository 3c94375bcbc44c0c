"""Datasets that feed world-model training.

* :mod:`distwm.datasets.video_shards`: collected datasets on disk (sharded HDF5 files of the
  transition stream plus a manifest): the writer, the manifest, each data-parallel rank's files
  and clips inside episodes (torch-free: the Ray driver uses it).
* :mod:`distwm.datasets.video_datasets`: video clips ``(C, T, H, W)`` from video / image folders,
  numpy and HDF5 arrays, RL recordings and shard directories, and their DataLoaders (Genie);
  :mod:`distwm.datasets.video_readers` reads and resizes their frames.
* :mod:`distwm.datasets.training_data`: one opener for what ``distwm train MODEL --data`` reads
  (shard directories, CIFAR-10 and image folders, ``sklearn:digits``), per data-parallel rank
  (torch-free); :mod:`distwm.datasets.cifar10` (a restricted unpickler: numpy arrays only),
  :mod:`distwm.datasets.imagenet1k` and :mod:`distwm.datasets.image_folder` (I-JEPA, DiT).
* :mod:`distwm.datasets.tinyworlds`: the TinyWorlds game videos (HuggingFace) for Genie.
* :mod:`distwm.datasets.diamond_dataset`: DIAMOND's transition replay buffer, its sequence
  windows as a torch ``Dataset`` and their collate.

Importing this package imports no module of it (nor torch).
"""
