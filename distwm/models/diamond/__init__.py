"""DIAMOND (Alonso et al. 2024): an EDM diffusion world model over frames (:mod:`.denoiser`),
a reward / termination model (:mod:`.reward_termination`) and an actor-critic
(:mod:`.actor_critic`) trained in its imagination."""
