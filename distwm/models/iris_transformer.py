"""The seed's module path of IRIS's transformer world model: :mod:`distwm.models.iris.transformer`."""

from distwm.models.iris.transformer import IRISTransformer, KVCache

__all__ = ["IRISTransformer", "KVCache"]
