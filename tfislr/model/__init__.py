"""tfislr.model: the Keras 3 ISLR classifier; importing it registers every layer."""

from tfislr.model.classifier import (
    ISLRClassifier,
    build_classifier,
    parameter_groups,
    transformer_widths,
)
from tfislr.model.deberta_encoder import DebertaEncoder
from tfislr.model.deberta_layer import DebertaLayer
from tfislr.model.disentangled_self_attention import DisentangledSelfAttention
from tfislr.model.embedding import LandmarkEmbedding
from tfislr.model.part_mlps import PartMLP, PartMLPs
from tfislr.model.relative_positions import log_bucket_position, relative_position_index

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
