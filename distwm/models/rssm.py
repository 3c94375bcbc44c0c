"""The seed's path of PlaNet's RSSM: re-exports :mod:`distwm.models.planet.networks`."""

from distwm.models.planet.networks import RecurrentStateSpaceModel, RSSMSequence, VectorDecoder

__all__ = ["RecurrentStateSpaceModel", "RSSMSequence", "VectorDecoder"]
