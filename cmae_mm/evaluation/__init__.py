"""Evaluation of the frozen pretraining encoder: weighted k-NN, the quick linear
probe on cached features, and the k-NN validation loop (MMEngine ``LOOPS``)."""
from .features import (encoder_features, extract_features, gather_in_dataset_order,
                       get_encoder)
from .knn import knn_accuracy, knn_class_scores, topk_accuracy
from .knn_loop import KNNValLoop
from .linear_probe import fit_logistic_regression, linear_probe_accuracy

__all__ = [
    'KNNValLoop', 'encoder_features', 'extract_features', 'fit_logistic_regression',
    'gather_in_dataset_order', 'get_encoder', 'knn_accuracy', 'knn_class_scores',
    'linear_probe_accuracy', 'topk_accuracy'
]
