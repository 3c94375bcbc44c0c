"""``distwm play``: drive a trained generative world model from the command line.

::

    distwm play genie --checkpoint RUN_DIR --prompt frame.png --actions 0,3,3,5,1 --out play.gif
    distwm play genie --checkpoint RUN_DIR/train/ckpt-000004000 --prompt DATA --actions 2x8

``--checkpoint``: a run directory of ``distwm train`` (its newest checkpoint), a checkpoint
directory (``learner.pt`` inside) or a ``learner.pt`` / single-process checkpoint file.
``--prompt``: an image file (PNG, JPEG, ...), a ``.npy`` frame, or a dataset directory of
``distwm collect`` (its first frame; ``--prompt-index`` picks another step). ``--actions``: the
latent actions, comma separated, each optionally repeated as ``AxN``. The video (the prompt then
one generated frame per action) is written with :func:`distwm.utils.media.save_video` (GIF, or
MP4 when imageio-ffmpeg is installed), and an image strip of its frames beside it.

The model's protocol class (its registry ``protocol_path``) must offer ``from_state(state)``
and ``play_video(prompt, actions, maskgit_steps=None, seed=0) -> (T, H, W, 3) uint8``; this
module knows nothing else about the model.
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np

__all__ = ["add_play_parser", "cmd_play", "find_checkpoint_file", "parse_actions", "read_prompt"]


def parse_actions(text: str) -> list[int]:
    """``"0,3,3"`` or ``"2x4,1"`` -> ``[0, 3, 3]`` / ``[2, 2, 2, 2, 1]``."""
    out: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        value, _, count = item.partition("x")
        try:
            ids = [int(value)] * (int(count) if count else 1)
        except ValueError:
            raise ValueError(f"--actions: {item!r} is not an action id or ID x COUNT "
                             f"(e.g. 0,3,2x4)") from None
        out += ids
    if not out:
        raise ValueError(f"--actions {text!r} names no action")
    return out


def find_checkpoint_file(path: str) -> str:
    """The checkpoint file ``path`` names (see the module docstring)."""
    from distwm.runtime.checkpoints import CHECKPOINT_FILE

    if os.path.isfile(path):
        return path
    if not os.path.isdir(path):
        raise ValueError(f"--checkpoint {path!r} does not exist")
    direct = os.path.join(path, CHECKPOINT_FILE)
    if os.path.isfile(direct):
        return direct
    found = glob.glob(os.path.join(path, "**", CHECKPOINT_FILE), recursive=True)
    if not found:
        raise ValueError(f"--checkpoint {path!r} holds no {CHECKPOINT_FILE} (give a run directory, "
                         f"a checkpoint directory or a checkpoint file)")
    return max(found, key=os.path.getmtime)


def read_prompt(path: str, index: int = 0) -> np.ndarray:
    """The prompt frame: ``(H, W, C)`` or ``(C, H, W)`` uint8."""
    if os.path.isdir(path):
        from distwm.datasets.video_shards import ClipDataset

        clips = ClipDataset(path, 1, keys=("image",))
        if not 0 <= index < len(clips):
            raise ValueError(f"--prompt-index {index} is outside the dataset's {len(clips)} steps")
        return clips[index]["image"][0]
    if not os.path.isfile(path):
        raise ValueError(f"--prompt {path!r} is neither an image file nor a dataset directory")
    if path.endswith(".npy"):
        image = np.load(path, allow_pickle=False)
    else:
        import imageio.v3 as iio

        image = iio.imread(path)
    if image.ndim == 2:
        image = image[..., None]
    if image.dtype != np.uint8:
        raise ValueError(f"--prompt {path!r}: expected uint8 pixels, got {image.dtype}")
    return image


def _protocol_class(model: str):
    from distwm import api
    from distwm.agent import import_object

    spec = api.get_model_spec(model)
    if spec.protocol_path is None:
        raise ValueError(f"model {spec.name!r} has no trainable protocol class to play")
    cls = import_object(spec.protocol_path)
    if not hasattr(cls, "play_video"):
        raise ValueError(f"model {spec.name!r} cannot be played (its {cls.__name__} has no "
                         f"play_video)")
    return cls


def cmd_play(args: argparse.Namespace) -> int:
    from distwm.utils.checkpoint import agent_state, load_file
    from distwm.utils.media import save_png, save_video

    cls = _protocol_class(args.model)
    actions = parse_actions(args.actions)
    prompt = read_prompt(args.prompt, args.prompt_index)
    file = find_checkpoint_file(args.checkpoint)
    state = agent_state(load_file(file, None, "checkpoint"))
    trainable = cls.from_state(state, device=args.device)
    frames = trainable.play_video(prompt, actions, maskgit_steps=args.maskgit_steps, seed=args.seed)
    out = save_video(frames, args.out, fps=args.fps)
    strip = save_png(np.concatenate(list(frames), axis=1), os.path.splitext(out)[0] + ".png")
    print(f"[distwm] played {len(actions)} latent actions from {file}: {out} (frames: {strip})")
    return 0


def add_play_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser("play", help="generate a video from a trained world model and "
                                           "latent actions", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="a model from `distwm models` (e.g. genie)")
    p.add_argument("--checkpoint", required=True, help="run dir, checkpoint dir or file")
    p.add_argument("--prompt", required=True, help="image file, .npy frame or dataset directory")
    p.add_argument("--prompt-index", type=int, default=0, dest="prompt_index",
                   help="the dataset step to prompt with (a dataset --prompt)")
    p.add_argument("--actions", required=True, help="latent actions: 0,3,3 or 2x8,1")
    p.add_argument("--out", default="play.gif", help="video file (.gif, .mp4)")
    p.add_argument("--fps", type=float, default=5.0)
    p.add_argument("--maskgit-steps", type=int, default=None, dest="maskgit_steps",
                   help="MaskGIT steps per frame (default: the model's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_play)
    return p

