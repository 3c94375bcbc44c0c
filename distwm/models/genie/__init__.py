"""Genie (Bruce et al. 2024, arXiv:2402.15391): the generative interactive environment family.

Modules: :mod:`.latent_action_model` (the LAM, discrete latent actions learnt from pixels);
the video tokenizer it works beside lives in :mod:`distwm.vision.video_tokenizer`. Importing
this package imports no torch; the modules do on use.
"""
