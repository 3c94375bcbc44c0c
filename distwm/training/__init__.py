"""Single-process training entry points of the seed (``train_planet``, ``train_rssm``, ...)."""
