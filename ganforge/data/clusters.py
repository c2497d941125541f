"""Unsupervised labels for self-conditioning (Liu et al. 2020): k-means clusters of the samples."""
from __future__ import annotations

import torch
from torch import Tensor


def cluster_labels(x: Tensor, k: int, seed: int = 0) -> Tensor:
    """k-means (scikit-learn) on the flattened samples; the cluster id of each sample (int64)."""
    from sklearn.cluster import KMeans  # scikit-learn is imported only when self-conditioning is used

    flat = x.reshape(len(x), -1).float().numpy()
    return torch.from_numpy(KMeans(k, n_init=1, random_state=seed).fit(flat).labels_.astype("int64"))
