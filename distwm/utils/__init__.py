"""Building blocks shared by every model family.

Names are exported lazily: ``import distwm.utils`` imports neither torch nor any heavy library;
the torch-based helpers (``symlog``, ``TwoHotEncoder``, ``compute_lambda_return``, ...) load
their module on first access; ``Logger`` (``distwm.utils.run_logger``) does not import torch.
"""

from __future__ import annotations

from distwm._lazy import lazy_exports

_LAZY = {
    # return maths (torch), distwm.blocks.returns
    "symlog": "distwm.blocks.returns",
    "symexp": "distwm.blocks.returns",
    "TwoHotEncoder": "distwm.blocks.returns",
    "compute_return": "distwm.blocks.returns",
    "compute_lambda_return": "distwm.blocks.returns",
    # dreamer_utils (torch)
    "FreezeParameters": "distwm.utils.dreamer_utils",
    "get_parameters": "distwm.utils.dreamer_utils",
    # run_logger (no torch)
    "Logger": "distwm.utils.run_logger",
    # logging_utils
    "setup_logging": "distwm.utils.logging_utils",
    # utils (numpy; torch inside functions)
    "AttrDict": "distwm.utils.utils",
    "load_yml_config": "distwm.utils.utils",
    "bottle": "distwm.utils.utils",
    "flatten_dict": "distwm.utils.utils",
    "get_combined_params": "distwm.utils.utils",
    "get_mask": "distwm.utils.utils",
    "preprocess_img": "distwm.utils.utils",
    "postprocess_img": "distwm.utils.utils",
    "to_tensor_obs": "distwm.utils.utils",
    "normalize_frames_for_saving": "distwm.utils.utils",
    "lineplot": "distwm.utils.utils",
    "write_video": "distwm.utils.video_io",
    "save_video": "distwm.utils.video_io",
    "StreamingVideoWriter": "distwm.utils.video_io",
    "format_table": "distwm.utils.tables",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
