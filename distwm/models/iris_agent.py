"""The seed's module path of the IRIS agent: :mod:`distwm.models.iris.agent`."""

from distwm.models.iris.agent import IRISAgent, compute_lambda_return

__all__ = ["IRISAgent", "compute_lambda_return"]
