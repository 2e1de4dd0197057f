"""Grouping voice embeddings into speakers: how many there are, and whose voice each centroid is.

Unit vectors in, unit centroids out (the caller gives every window its nearest centroid). The count comes
from the eigengap of a k-nearest-neighbour affinity's Laplacian, the neighbourhood size chosen per
recording by the smallest ratio of pruning to gap (NME-SC, Park et al. 2019, the method NeMo's clustering
diarizer uses), then clusters whose centroids are as alike as two halves of one voice are merged. With
few windows the eigengap is unreliable; there the most Ward clusters whose centroids all differ are taken.
A single cluster is checked once more: two halves each holding a share (10%) and clearly apart are two.
Thresholds are calibrated on real speech in bench/diarization.py, not on synthetic voices.
"""

from __future__ import annotations

import numpy as np


def unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


def centroids_of(vectors: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Unit mean of each label's vectors, in label order."""
    return unit(np.stack([vectors[labels == j].mean(axis=0) for j in np.unique(labels)]))


def ward_labels(vectors: np.ndarray, k: int) -> np.ndarray:
    from scipy.cluster.hierarchy import fcluster, linkage

    if k <= 1 or len(vectors) < 2:
        return np.zeros(len(vectors), int)
    return fcluster(linkage(vectors, method="ward"), t=k, criterion="maxclust") - 1


def ward_count(vectors: np.ndarray, low: int, high: int, same_voice: float) -> int:
    """The most Ward clusters (within [low, high]) whose centroids all differ: no two more alike than
    `same_voice` (cosine)."""
    best = 1
    for k in range(2, min(high, len(vectors)) + 1):
        centroids = centroids_of(vectors, ward_labels(vectors, k))
        similarity = centroids @ centroids.T
        if similarity[np.triu_indices(len(centroids), 1)].max() >= same_voice:
            break
        best = k
    return max(best, low)


def _laplacian(similarity: np.ndarray, neighbours: int) -> np.ndarray:
    """Unnormalised Laplacian of the symmetrised binary `neighbours`-nearest affinity."""
    affinity = np.zeros_like(similarity)
    nearest = np.argsort(-similarity, axis=1)[:, :neighbours]
    np.put_along_axis(affinity, nearest, 1.0, axis=1)
    affinity = (affinity + affinity.T) / 2
    return np.diag(affinity.sum(axis=1)) - affinity


def spectral_count(vectors: np.ndarray, high: int) -> tuple[int, int]:
    """(speakers, neighbourhood size): the eigengap count at the pruning with the smallest p/gap ratio."""
    similarity = vectors @ vectors.T
    n = len(vectors)
    best: tuple[float, int, int] | None = None
    for p in range(2, max(3, min(n // 4, 40))):
        eigen = np.linalg.eigvalsh(_laplacian(similarity, p))
        gaps = np.diff(eigen[: high + 1])
        gap = gaps.max() / (eigen[-1] + 1e-9)
        ratio = p / n / (gap + 1e-9)
        if best is None or ratio < best[0]:
            best = (ratio, int(np.argmax(gaps)) + 1, p)
    assert best is not None
    return best[1], best[2]


def spectral_labels(vectors: np.ndarray, k: int, neighbours: int) -> np.ndarray:
    """k clusters of the Laplacian's first k eigenvectors (Ward on the spectral embedding)."""
    _, eigenvectors = np.linalg.eigh(_laplacian(vectors @ vectors.T, neighbours))
    return ward_labels(eigenvectors[:, :k], k)


def refine(vectors: np.ndarray, centroids: np.ndarray, rounds: int = 3) -> np.ndarray:
    """A few spherical k-means rounds (every vector to its nearest centroid), keeping every cluster."""
    for _ in range(rounds):
        labels = np.argmax(vectors @ centroids.T, axis=1)
        if len(np.unique(labels)) < len(centroids):
            break
        centroids = centroids_of(vectors, labels)
    return centroids


def merge_alike(vectors: np.ndarray, centroids: np.ndarray, same_voice: float, low: int) -> np.ndarray:
    """Merge the most alike pair of clusters while their centroids are `same_voice` alike or more."""
    while len(centroids) > max(low, 1):
        similarity = centroids @ centroids.T
        np.fill_diagonal(similarity, -1.0)
        i, j = np.unravel_index(np.argmax(similarity), similarity.shape)
        if similarity[i, j] < same_voice:
            break
        kept = centroids[[x for x in range(len(centroids)) if x != j]]
        labels = np.argmax(vectors @ kept.T, axis=1)
        centroids = centroids_of(vectors, labels) if len(np.unique(labels)) == len(kept) else kept
    return centroids


def two_voices(vectors: np.ndarray, apart: float, share: float) -> np.ndarray | None:
    """Two centroids when Ward's two halves each hold `share` of the windows and are less alike than
    `apart`: the rule that two people who both talk are never reported as one."""
    if len(vectors) < 4:
        return None
    labels = ward_labels(vectors, 2)
    centroids = centroids_of(vectors, labels)
    if np.bincount(labels).min() / len(vectors) >= share and float(centroids[0] @ centroids[1]) < apart:
        return centroids
    return None
