"""Type stubs of kiln's native extension (python/src, PyO3)."""

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal, overload

import numpy as np
import numpy.typing as npt

__version__: str

_Path = str | os.PathLike[str]
_Target = Literal["cpu", "ref", "cuda", "cuda-sim"]

class KilnError(Exception):
    """Base class of every error kiln raises."""

class InvalidModelError(KilnError):
    """The model file or folder is missing, malformed or inconsistent."""

class UnsupportedOpError(InvalidModelError):
    """The model uses operators kiln does not implement."""

    ops: list[tuple[str, list[str]]]
    """Every unsupported op type with the names of its nodes."""

class InputError(KilnError):
    """An input or argument is wrong (unknown or missing name, dtype, shape, option)."""

class TargetUnavailableError(KilnError):
    """The target cannot run here (no GPU, driver or NVRTC)."""

class ValueInfo:
    """An input or output: name, numpy dtype name and declared shape."""

    @property
    def name(self) -> str: ...
    @property
    def dtype(self) -> str | None:
        """numpy's dtype name (``float32``, ``int64``, ``bfloat16``...); None when unrecorded."""
    @property
    def shape(self) -> list[int | str | None] | None:
        """Known dims as ints, symbolic ones as strs, unknown ones as None."""

class Brick:
    """A functional module kiln recognized (layer, attention, FFN, norm...)."""

    name: str
    kind: str
    parent: str | None
    parameters: int
    bytes: int
    nodes: int

class Executable:
    """A model compiled for one target; safe to call from several threads."""

    @property
    def target(self) -> str: ...
    @property
    def inputs(self) -> list[ValueInfo]: ...
    @property
    def outputs(self) -> list[ValueInfo]: ...
    def run(
        self, feed: Mapping[str, npt.ArrayLike], output_names: Sequence[str] | None = None
    ) -> dict[str, np.ndarray]:
        """Runs on ``feed`` (input name → array); returns output name → array."""
    def prepare(self, shapes: Mapping[str, Sequence[int]]) -> None:
        """Builds the native code for these input shapes now."""

class Model:
    """A loaded model: ONNX file, Hugging Face folder, GGUF file or .kiln artifact."""

    @property
    def path(self) -> str: ...
    @property
    def inputs(self) -> list[ValueInfo]: ...
    @property
    def outputs(self) -> list[ValueInfo]: ...
    @property
    def kind(self) -> Literal["decoder", "encoder", "graph", "artifact"]: ...
    @property
    def bricks(self) -> list[Brick]: ...
    def compile(self, target: _Target = "cpu", threads: int | None = None, optimize: bool = True) -> Executable:
        """Compiles for ``target`` (the GIL is released meanwhile)."""
    def run(self, feed: Mapping[str, npt.ArrayLike]) -> dict[str, np.ndarray]:
        """Runs on the reference interpreter."""

class TextStream(Iterator[str]):
    """Pieces of generated text, as they are generated."""

    def __iter__(self) -> TextStream: ...
    def __next__(self) -> str: ...

def load(path: _Path, adapters: Sequence[_Path] | None = None) -> Model:
    """Loads a model (ONNX, Hugging Face folder, GGUF, .kiln artifact)."""

def compile_file(
    path: _Path,
    out: _Path,
    target: Literal["cpu", "cuda"] = "cpu",
    dims: Mapping[str, int] | None = None,
    threads: int | None = None,
    cpu: str = "generic",
) -> None:
    """Compiles ahead of time and writes a .kiln artifact atomically."""

@overload
def generate(
    model: Model | _Path,
    prompt: str,
    *,
    max_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    adapters: Sequence[_Path] | None = None,
    system: str | None = None,
    raw: bool = False,
    ignore_eos: bool = False,
    context: int | None = None,
    target: _Target = "cpu",
    threads: int | None = None,
    stream: Literal[False] = False,
) -> str: ...
@overload
def generate(
    model: Model | _Path,
    prompt: str,
    *,
    max_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    adapters: Sequence[_Path] | None = None,
    system: str | None = None,
    raw: bool = False,
    ignore_eos: bool = False,
    context: int | None = None,
    target: _Target = "cpu",
    threads: int | None = None,
    stream: Literal[True],
) -> TextStream: ...
@overload
def embed(model: Model | _Path, sentences: str, *, target: _Target = "cpu", threads: int | None = None) -> np.ndarray: ...
@overload
def embed(
    model: Model | _Path, sentences: Sequence[str], *, target: _Target = "cpu", threads: int | None = None
) -> np.ndarray: ...
def available_targets() -> list[str]:
    """The targets this machine can run."""

