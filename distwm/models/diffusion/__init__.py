"""The seed's ``world_models.models.diffusion`` package: thin re-exports of the diffusion
families (DIAMOND's denoiser, reward / termination model and actor-critic live in
:mod:`distwm.models.diamond`)."""
