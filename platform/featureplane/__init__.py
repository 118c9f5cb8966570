"""featureplane: a multi-tenant feature platform built on Feast.

The package root stays light (no Feast import): `featureplane serve` must own
``PROMETHEUS_MULTIPROC_DIR`` before Feast or prometheus_client load.
"""

from featureplane.errors import FeatureplaneError
from featureplane.settings import Settings

__version__ = "0.1.0"
__all__ = ["FeatureplaneError", "Settings", "__version__"]
