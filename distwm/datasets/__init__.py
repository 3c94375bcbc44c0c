"""Datasets that feed world-model training: :mod:`distwm.datasets.diamond_dataset` (DIAMOND's
transition replay buffer, its sequence windows as a torch ``Dataset`` and their collate)."""
