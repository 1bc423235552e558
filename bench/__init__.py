"""contrastive-bench: compare contrastive image-text objectives under one protocol.

Entry points: ``python -m bench.run`` (run a grid) and ``python -m bench.report`` (tables from results).
"""

__version__ = "0.1.0"

from .errors import ConfigError, DataConfigError, ModelConfigError  # noqa: E402  (light: no torch)

__all__ = ["ConfigError", "DataConfigError", "ModelConfigError", "__version__"]
