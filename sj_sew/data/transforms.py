"""Transforms on event frames and batches: random temporal delete, frame integration, time-first batches."""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import default_collate


def random_temporal_delete(x: torch.Tensor, T_train: int, dim: int = 0,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """Keep ``T_train`` of the T slices of ``x`` along ``dim``, chosen at random, in their original order.

    The SEW paper's augmentation for sequences (Appendix A.2): delete T - T_train random slices during
    training; test on the whole sequence. The same slices are kept for every sample of a batch.
    """
    T = x.shape[dim]
    if not isinstance(T_train, int) or not 1 <= T_train <= T:
        raise ValueError(f"T_train must be an int in [1, {T}] (the sequence has {T} steps), got {T_train!r}")
    if T_train == T:
        return x
    keep = torch.randperm(T, generator=generator)[:T_train].sort().values
    return x.index_select(dim, keep.to(x.device))


class RandomTemporalDelete(torch.nn.Module):
    """:func:`random_temporal_delete` as a module: active in training mode, the identity in eval mode."""

    def __init__(self, T_train: int, dim: int = 0):
        super().__init__()
        self.T_train, self.dim = T_train, dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return random_temporal_delete(x, self.T_train, self.dim) if self.training else x

    def extra_repr(self) -> str:
        return f"T_train={self.T_train}, dim={self.dim}"


def frame_index_by_count(counts: np.ndarray, T: int) -> np.ndarray:
    """For streams of ``counts`` events (concatenated), the frame each event falls in when every stream
    is split into T frames by event count.

    This is SpikingJelly's ``split_by='number'`` rule (``cal_fixed_frames_number_segment_index``): with
    n events and d = n // T, frame i holds events [i*d, (i+1)*d) and the last frame also takes the
    remainder, so a stream with fewer than T events puts them all in the last frame.
    """
    counts = np.asarray(counts, dtype=np.int64)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    position = np.arange(counts.sum(), dtype=np.int64) - starts
    per_frame = np.repeat(counts // T, counts)
    frame = np.full_like(position, T - 1)
    has_width = per_frame > 0
    frame[has_width] = np.minimum(position[has_width] // per_frame[has_width], T - 1)
    return frame


def integrate_by_count(events: dict, T: int, H: int, W: int) -> np.ndarray:
    """Events ``{'t', 'x', 'y', 'p'}`` (time-ordered) to frames ``[T, 2, H, W]`` of event counts, split by
    event count; equal to SpikingJelly's ``integrate_events_by_fixed_frames_number(events, 'number', T, H, W)``
    (channel 0 holds p == 0, channel 1 the rest)."""
    x, y, p = (np.asarray(events[k]) for k in ("x", "y", "p"))
    frame = frame_index_by_count(np.array([x.size]), T)
    flat = ((frame * 2 + (p != 0)) * H + y.astype(np.int64)) * W + x.astype(np.int64)
    return np.bincount(flat, minlength=T * 2 * H * W).reshape(T, 2, H, W).astype(np.float64)


def time_first_collate(batch):
    """Default collate, then sequences ``[N, T, ...]`` become ``[T, N, ...]`` (what multi-step models take);
    static images ``[N, C, H, W]`` pass through."""
    x, y = default_collate(batch)
    if x.dim() == 5:
        x = x.transpose(0, 1).contiguous()
    return x, y
