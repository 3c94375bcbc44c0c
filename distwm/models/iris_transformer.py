"""The seed's module path of IRIS's transformer world model: :mod:`distwm.models.iris.transformer` and
:mod:`distwm.models.iris.world_model`."""

from distwm.models.iris.transformer import IRISTransformer, KVCache
from distwm.models.iris.world_model import IRISWorldModel

__all__ = ["IRISTransformer", "IRISWorldModel", "KVCache"]
