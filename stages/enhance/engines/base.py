"""The one interface every enhancement backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from core.models import ModelKey, model_key
from stages.enhance.settings import EnhanceSettings

if TYPE_CHECKING:
    import numpy as np


Progress = Callable[[float, int, int], None]  # (share of the work done, tiles done, tiles in all)


@dataclass(frozen=True)
class EngineOutput:
    image: np.ndarray  # BGR uint8, any size (resized to the exact target afterwards)
    faces: int | None = None
    faithful: np.ndarray | None = None  # a faithful enlargement faces are kept to (else the input)


class EnhanceEngine(ABC):
    """One enhancement backend: constructed (loaded) once per process, then called for every image."""

    name: ClassVar[str]
    uses_gpu: ClassVar[bool] = False  # a GPU engine: takes a GPU slot (a CUDA host's GPU when it has one)
    resident: ClassVar[bool] = True  # kept loaded per process (engines whose heavy part is served say False)
    invents_detail: ClassVar[bool] = False  # a generative network that can repaint faces (kept faithful)
    load_fields: ClassVar[frozenset[str]]  # settings the loaded object depends on: the resident model's key

    def __init__(self, settings: EnhanceSettings) -> None:
        self.settings = settings

    @classmethod
    def model_key(cls, settings: EnhanceSettings) -> ModelKey:
        """Keyed by the settings the engine's loaded object depends on (its `load_fields`)."""
        model = settings.model or settings.gfpgan_weights or ""
        loads = {"engine", "device", *cls.load_fields}
        return model_key("enhance", settings, only=loads, resolved={"model": model})

    @classmethod
    def runs_on_gpu(cls) -> bool:
        """Whether a run of this engine takes a GPU slot (and so gets a GPU where this host has one)."""
        return cls.uses_gpu

    @abstractmethod
    def enhance(
        self, image: np.ndarray, settings: EnhanceSettings, progress: Progress | None = None
    ) -> EngineOutput:
        """Enhance 8-bit BGR pixels to about `settings.scale` times their size (call-time settings);
        `progress(fraction, tiles_done, tiles)` is told how far it got, tile by tile where it tiles."""

    def close(self) -> None:  # noqa: B027 - an optional hook, not abstract
        """Free what the engine holds (called when the resident model is evicted)."""
