"""tfislr.model: the Keras 3 ISLR classifier; importing it registers every layer."""

from tfislr.model.classifier import (
    ISLRClassifier,
    build_classifier,
    parameter_groups,
)
from tfislr.model.deberta import (
    DebertaEncoder,
    DebertaLayer,
    DisentangledSelfAttention,
    log_bucket_position,
    relative_position_index,
    transformer_widths,
)
from tfislr.model.embedding import LandmarkEmbedding
from tfislr.model.part_mlps import PartMLP, PartMLPs

__all__ = [
    "DebertaEncoder",
    "DebertaLayer",
    "DisentangledSelfAttention",
    "ISLRClassifier",
    "LandmarkEmbedding",
    "PartMLP",
    "PartMLPs",
    "build_classifier",
    "log_bucket_position",
    "parameter_groups",
    "relative_position_index",
    "transformer_widths",
]
