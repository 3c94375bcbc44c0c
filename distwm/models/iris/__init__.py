"""IRIS (Micheli et al. 2023): discrete autoencoder (``distwm.vision.iris_encoder`` /
``iris_decoder``), transformer world model (:mod:`.transformer`). The agent, its actor-critic
and its runtime adapter are not written yet."""
