#!/usr/bin/env python
"""Genie's paper metrics on many clips of a dataset (e.g. held-out episodes collected with another
seed): reconstruction PSNR and Delta_t PSNR (inferred vs random latent actions), with the spread
over clips. ``report()`` during training sees one batch; this is the number to quote.

    python scripts/genie_eval.py --checkpoint RUN_DIR --data DATA [--clips 256] [--t 4] \
        [--maskgit-steps 25] [--out docs/benchmarks/genie_eval.json]
"""

from __future__ import annotations

import argparse

import numpy as np
from bench_timing import print_result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="run dir, checkpoint dir or file")
    p.add_argument("--data", required=True, help="a shard directory of distwm collect")
    p.add_argument("--clips", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--t", type=int, default=None, help="Delta_t horizon (default: the config's)")
    p.add_argument("--maskgit-steps", type=int, default=None, dest="maskgit_steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None)
    args = p.parse_args()

    import torch


    from distwm.datasets.video_shards import ClipDataset
    from distwm.models.genie.maskgit import MaskGITSampler
    from distwm.models.genie.report import delta_psnr, psnr
    from distwm.models.genie.trainable import GenieTrainable, video_from_batch
    from distwm.runtime.play import find_checkpoint_file
    from distwm.utils.checkpoint import agent_state, load_file

    torch.set_num_threads(1)
    file = find_checkpoint_file(args.checkpoint)
    trainable = GenieTrainable.from_state(agent_state(load_file(file, None, "checkpoint")))
    config, model = trainable.config, trainable.model.eval()
    if args.maskgit_steps:
        model.sampler = MaskGITSampler(args.maskgit_steps, config.sample_temperature)
    t = min(args.t or config.delta_psnr_t, config.num_frames - 1)
    clips = ClipDataset(args.data, config.num_frames, keys=("image",), stride=config.num_frames)
    rng = np.random.default_rng(args.seed)
    picks = rng.choice(len(clips), size=min(args.clips, len(clips)), replace=False)
    generator = torch.Generator().manual_seed(args.seed)
    recon, inferred, random = [], [], []
    with torch.no_grad():
        for start in range(0, len(picks), args.batch):
            batch = clips.batch(np.sort(picks[start:start + args.batch]))
            video = video_from_batch(batch, config.image_size, config.in_channels, "cpu")
            recon.append(psnr(model.video_tokenizer(video)[0], video))
            scores = delta_psnr(model, video, t, generator, per_clip=True)
            inferred.append(scores["inferred"])
            random.append(scores["random"])
    recon, inferred, random = (torch.cat(x).numpy() for x in (recon, inferred, random))
    delta = inferred - random
    n = len(delta)
    result = {"checkpoint": file, "data": args.data, "clips": n, "t": t,
              "maskgit_steps": model.sampler.num_steps,
              "psnr_reconstruction": float(recon.mean()),
              "psnr_generation_t": float(inferred.mean()),
              "psnr_random_actions_t": float(random.mean()),
              "delta_t_psnr": float(delta.mean()),
              "delta_t_psnr_standard_error": float(delta.std(ddof=1) / np.sqrt(n)) if n > 1 else None,
              "fraction_of_clips_delta_above_0": float((delta > 0).mean())}
    print_result(result, args.out)


if __name__ == "__main__":
    main()
