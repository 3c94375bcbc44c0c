"""Building blocks shared by every model family.

Names are exported lazily: ``import distwm.utils`` imports neither torch nor any heavy library;
the torch-based helpers (``symlog``, ``TwoHotEncoder``, ``compute_lambda_return``, ``Logger``,
...) load their module on first access.
"""

from __future__ import annotations

from distwm._lazy import lazy_exports

_LAZY = {
    # dreamer_utils (torch)
    "symlog": "distwm.utils.dreamer_utils",
    "symexp": "distwm.utils.dreamer_utils",
    "TwoHotEncoder": "distwm.utils.dreamer_utils",
    "compute_return": "distwm.utils.dreamer_utils",
    "compute_lambda_return": "distwm.utils.dreamer_utils",
    "FreezeParameters": "distwm.utils.dreamer_utils",
    "get_parameters": "distwm.utils.dreamer_utils",
    "Logger": "distwm.utils.dreamer_utils",
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
    "write_video": "distwm.utils.utils",
    "save_video": "distwm.utils.utils",
    "StreamingVideoWriter": "distwm.utils.utils",
    "format_table": "distwm.utils.tables",
}

__all__ = sorted(_LAZY)

__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
