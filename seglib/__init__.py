"""seglib: segment retail customers with self-organizing maps.

The pipeline, one module per step, data flowing forward only::

    load / clean  ->  features  ->  som  ->  cluster  ->  profile
    (seglib.load,     (seglib.      (seglib.  (seglib.      (seglib.profile)
     seglib.clean)     features)     som)      cluster)

``seglib.plots`` and ``seglib.widgets`` sit beside the steps; ``seglib.pipeline`` (the papermill
runner) and ``seglib.cli`` sit on top; ``seglib.synthetic`` (the data generator) stands apart.

Names are imported lazily, so ``import seglib`` stays cheap (the CLI starts fast).
"""

from __future__ import annotations

import importlib
import logging

__version__ = "0.1.0"

logging.getLogger(__name__).addHandler(logging.NullHandler())

# public name -> module that defines it
_EXPORTS = {
    # errors and configuration
    "SeglibError": "seglib.errors",
    "InputError": "seglib.errors",
    "ParameterError": "seglib.errors",
    "ModelFormatError": "seglib.errors",
    "PipelineError": "seglib.errors",
    "Layout": "seglib.config",
    # step 01: loading and cleaning
    "ROLES": "seglib.load",
    "DEFAULT_COLUMNS": "seglib.load",
    "load_transactions": "seglib.load",
    "clean_transactions": "seglib.clean",
    "clean_file": "seglib.clean",
    "clean_partition": "seglib.clean",
    "CleaningReport": "seglib.clean",
    # step 02: customer features and scaling
    "FeatureBuilder": "seglib.features",
    "FeatureScaler": "seglib.features",
    "customer_table": "seglib.features",
    "descriptor_columns": "seglib.features",
    "feature_pipeline": "seglib.features",
    "pipeline_to_dict": "seglib.features",
    "pipeline_from_dict": "seglib.features",
    "SOM": "seglib.som",
    "quality_table": "seglib.som",
    # step 03: prototype clustering
    "PrototypeClustering": "seglib.cluster",
    "prototype_linkage": "seglib.cluster",
    "assign_segments": "seglib.cluster",
    "cut": "seglib.cluster",
    "n_clusters_for_distance": "seglib.cluster",
    "distance_range_for_k": "seglib.cluster",
    "k_selection": "seglib.cluster",
    "suggest_k": "seglib.cluster",
    "segment_stability": "seglib.cluster",
    "som_reclusterer": "seglib.cluster",
    "StabilityResult": "seglib.cluster",
    "ClusterExplorer": "seglib.widgets",
    # step 04: profiles and output files
    "profile_segments": "seglib.profile",
    "result_table": "seglib.profile",
    "write_result": "seglib.profile",
    "write_segments": "seglib.profile",
    "read_result": "seglib.profile",
    # scoring new customers with a saved segmentation
    "Segmentation": "seglib.segmentation",
    "score_file": "seglib.segmentation",
    # synthetic data
    "make_transactions": "seglib.synthetic",
    "write_dataset": "seglib.synthetic",
    "write_parts": "seglib.synthetic",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'seglib' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__():
    return __all__
