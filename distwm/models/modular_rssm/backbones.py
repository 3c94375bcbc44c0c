"""The modular RSSM's dynamics backbones: GRU, LSTM and a windowed transformer."""

from __future__ import annotations

from abc import abstractmethod
from typing import Dict, Union

import torch
from torch import Tensor, nn

from distwm.blocks.gaussian_rssm import GaussianRSSMLayers, gaussian_sample
from distwm.blocks.layers import build_mlp, gaussian_params
from distwm.blocks.mhsa import TransformerBlock
from distwm.models.modular_rssm.base import MIN_STD, BackboneBase, _positive_int

__all__ = ["GRUBackbone", "LSTMBackbone", "TransformerBackbone"]


def _stochastic(mean: Tensor, std: Tensor) -> Dict[str, Tensor]:
    """The Gaussian stochastic state of ``(mean, std)``, with a sample."""
    return {"mean": mean, "std": std, "stoch": gaussian_sample(mean, std)}


def _nonterm_column(nonterm: Union[float, Tensor], like: Tensor) -> Union[float, Tensor]:
    """``nonterm`` as a float or a ``(B, 1)`` tensor that broadcasts over features."""
    if not torch.is_tensor(nonterm):
        return float(nonterm)
    nonterm = nonterm.to(like.dtype)
    if nonterm.dim() == 0:
        return nonterm
    return nonterm.reshape(like.shape[0], 1)


class _RecurrentBackbone(BackboneBase, GaussianRSSMLayers):
    """The GRU and LSTM backbones: PlaNet's Gaussian RSSM
    (:class:`~distwm.blocks.gaussian_rssm.GaussianRSSMLayers`) with their own cell."""

    def __init__(self, action_size, stoch_size, deter_size, hidden_size, embed_size, activation):
        owner = type(self).__name__
        for name, value in (("action_size", action_size), ("stoch_size", stoch_size),
                            ("deter_size", deter_size), ("hidden_size", hidden_size),
                            ("embed_size", embed_size)):
            _positive_int(owner, name, value)
        GaussianRSSMLayers.__init__(self, action_size, stoch_size, deter_size, hidden_size,
                                    embed_size, activation, MIN_STD)
        self.action_size, self.stoch_size, self.deter_size = action_size, stoch_size, deter_size
        self.hidden_size, self.embed_size = hidden_size, embed_size

    def init_state(self, batch_size: int, device: torch.device) -> Dict[str, Tensor]:
        zeros = lambda n: torch.zeros(batch_size, n, device=device)  # noqa: E731
        return {"mean": zeros(self.stoch_size), "std": zeros(self.stoch_size),
                "stoch": zeros(self.stoch_size), "deter": zeros(self.deter_size)}

    @abstractmethod
    def _recur(self, hidden: Tensor, state: Dict[str, Tensor], nonterm) -> Dict[str, Tensor]:
        """The cell step: ``hidden`` and the previous state -> ``{"deter": ...}`` (+ cell state)."""

    def forward(self, state, action, obs_embed=None, nonterm=1.0):
        nonterm = _nonterm_column(nonterm, state["deter"])
        hidden = self.cell_input(state["stoch"] * nonterm, action * nonterm)
        recurrent = self._recur(hidden, state, nonterm)
        prior = {**_stochastic(*self.prior_stats(recurrent["deter"])), **recurrent}
        if obs_embed is None:
            return prior, prior
        posterior = self.posterior_stats(recurrent["deter"], obs_embed)
        return prior, {**_stochastic(*posterior), **recurrent}


class GRUBackbone(_RecurrentBackbone):
    """GRU-based recurrent dynamics backbone (standard RSSM)."""

    def __init__(self, action_size: int, stoch_size: int, deter_size: int, hidden_size: int,
                 embed_size: int, activation: str = "elu"):
        super().__init__(action_size, stoch_size, deter_size, hidden_size, embed_size, activation)
        self.rnn = nn.GRUCell(deter_size, deter_size)

    def _recur(self, hidden, state, nonterm):
        return {"deter": self.rnn(hidden, state["deter"] * nonterm)}


class LSTMBackbone(_RecurrentBackbone):
    """LSTM-based recurrent dynamics backbone (the cell state travels as ``state['cell']``)."""

    def __init__(self, action_size: int, stoch_size: int, deter_size: int, hidden_size: int,
                 embed_size: int, activation: str = "elu"):
        super().__init__(action_size, stoch_size, deter_size, hidden_size, embed_size, activation)
        self.rnn = nn.LSTMCell(deter_size, deter_size)

    def init_state(self, batch_size, device):
        state = super().init_state(batch_size, device)
        state["cell"] = torch.zeros(batch_size, self.deter_size, device=device)
        return state

    def _recur(self, hidden, state, nonterm):
        cell = state.get("cell", torch.zeros_like(state["deter"]))
        deter, cell = self.rnn(hidden, (state["deter"] * nonterm, cell * nonterm))
        return {"deter": deter, "cell": cell}


class TransformerBackbone(BackboneBase):
    """Transformer-based dynamics backbone for long-range dependencies.

    Each step embeds ``(stoch, action)`` as a token and appends it to a sliding window of the
    last ``context_length`` tokens (``state['context']`` (B, W, embed_size) with validity
    ``state['context_mask']`` (B, W); an episode start clears it). ``num_layers`` transformer
    layers attend over the window; the newest token's output, projected to ``deter_size``,
    is ``deter``. ``embed_size`` is both the token width and the observation embedding size.
    """

    def __init__(
        self,
        action_size: int,
        stoch_size: int,
        deter_size: int,
        embed_size: int,
        num_heads: int = 4,
        num_layers: int = 2,
        activation: str = "gelu",
        context_length: int = 8,
    ):
        super().__init__()
        owner = "TransformerBackbone"
        self.action_size = _positive_int(owner, "action_size", action_size)
        self.stoch_size = _positive_int(owner, "stoch_size", stoch_size)
        self.deter_size = _positive_int(owner, "deter_size", deter_size)
        self.embed_size = _positive_int(owner, "embed_size", embed_size)
        self.context_length = _positive_int(owner, "context_length", context_length)
        _positive_int(owner, "num_layers", num_layers)
        if embed_size % num_heads:
            raise ValueError(f"{owner}: embed_size ({embed_size}) must be divisible by num_heads ({num_heads})")
        self.token = nn.Linear(stoch_size + action_size, embed_size)
        self.pos_embed = nn.Parameter(torch.randn(1, context_length, embed_size) * 0.02)
        self.blocks = nn.ModuleList(
            TransformerBlock(embed_size, num_heads, 4.0, activation) for _ in range(num_layers)
        )
        self.fc_deter = nn.Sequential(nn.LayerNorm(embed_size), nn.Linear(embed_size, deter_size))
        self.fc_prior = build_mlp(deter_size, [deter_size], 2 * stoch_size, activation)
        self.fc_posterior = build_mlp(deter_size + embed_size, [deter_size], 2 * stoch_size, activation)

    def init_state(self, batch_size: int, device: torch.device) -> Dict[str, Tensor]:
        zeros = lambda *shape: torch.zeros(batch_size, *shape, device=device)  # noqa: E731
        return {"mean": zeros(self.stoch_size), "std": zeros(self.stoch_size),
                "stoch": zeros(self.stoch_size), "deter": zeros(self.deter_size),
                "context": zeros(self.context_length, self.embed_size),
                "context_mask": zeros(self.context_length)}

    def forward(self, state, action, obs_embed=None, nonterm=1.0):
        stoch = state["stoch"]
        batch = stoch.shape[0]
        context = state.get("context")
        mask = state.get("context_mask")
        if context is None or mask is None:
            empty = self.init_state(batch, stoch.device)
            context, mask = empty["context"], empty["context_mask"]
        nonterm = _nonterm_column(nonterm, stoch)
        token = self.token(torch.cat([stoch * nonterm, action * nonterm], dim=-1))
        mask = torch.cat([mask[:, 1:] * nonterm, torch.ones_like(mask[:, :1])], dim=1)
        context = torch.cat([context[:, 1:], token.unsqueeze(1)], dim=1)
        hidden = context + self.pos_embed
        for block in self.blocks:
            hidden = block(hidden, key_padding_mask=mask < 0.5)
        deter = self.fc_deter(hidden[:, -1])
        carried = {"deter": deter, "context": context, "context_mask": mask}
        prior = {**_stochastic(*gaussian_params(self.fc_prior(deter), MIN_STD)), **carried}
        if obs_embed is None:
            return prior, prior
        raw = self.fc_posterior(torch.cat([deter, obs_embed], dim=-1))
        posterior = {**_stochastic(*gaussian_params(raw, MIN_STD)), **carried}
        return prior, posterior
