"""IRIS (Micheli et al. 2023): discrete autoencoder (``distwm.vision.iris_encoder`` /
``iris_decoder``), transformer world model (:mod:`.transformer`, :mod:`.world_model`), the
agent with its three training steps (:mod:`.agent`), the protocol class the runtime drives
(:mod:`.core`) and its report (:mod:`.report`)."""
