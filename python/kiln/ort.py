"""ONNX Runtime's ``InferenceSession`` API on top of kiln.

The subset of ``onnxruntime`` that inference code uses, with the same names,
arguments and return values, so that ``import kiln as ort`` (or
``from kiln import InferenceSession``) switches a program to kiln::

    import kiln as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession("model.onnx", options, providers=["CPUExecutionProvider"])
    print([i.name for i in session.get_inputs()])
    (logits,) = session.run(["logits"], {"input_ids": ids})

Providers map to kiln targets: ``CPUExecutionProvider`` compiles native code
for this CPU, ``CUDAExecutionProvider`` runs on an NVIDIA GPU (falling back to
the CPU with a warning where there is none, as ONNX Runtime does). Every
other part of ONNX Runtime's API raises ``NotImplementedError`` naming it:
kiln never silently does something different.
"""

from __future__ import annotations

import enum
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from . import _kiln

__all__ = [
    "ExecutionMode",
    "GraphOptimizationLevel",
    "InferenceSession",
    "NodeArg",
    "RunOptions",
    "SessionOptions",
    "get_available_providers",
    "get_device",
]

#: ONNX's tensor type strings, as ``NodeArg.type`` spells them, by numpy dtype name.
_ONNX_TYPES = {
    "float32": "tensor(float)",
    "float16": "tensor(float16)",
    "bfloat16": "tensor(bfloat16)",
    "float64": "tensor(double)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "int16": "tensor(int16)",
    "int8": "tensor(int8)",
    "uint8": "tensor(uint8)",
    "uint16": "tensor(uint16)",
    "uint32": "tensor(uint32)",
    "uint64": "tensor(uint64)",
    "bool": "tensor(bool)",
}

#: kiln targets by ONNX Runtime provider name.
_PROVIDER_TARGETS = {
    "CPUExecutionProvider": "cpu",
    "CUDAExecutionProvider": "cuda",
}

#: Provider names ONNX Runtime knows that kiln does not run: asked for, they
#: are skipped with a warning (as ONNX Runtime does with providers its build lacks).
_OTHER_ORT_PROVIDERS = {
    "TensorrtExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "OpenVINOExecutionProvider",
    "DnnlExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "QNNExecutionProvider",
    "XnnpackExecutionProvider",
    "NnapiExecutionProvider",
    "WebGpuExecutionProvider",
    "AzureExecutionProvider",
    "ACLExecutionProvider",
    "ArmNNExecutionProvider",
    "VitisAIExecutionProvider",
    "CANNExecutionProvider",
}


def get_available_providers() -> list[str]:
    """The providers this machine can run: the CPU, and CUDA where a GPU is present."""
    providers = ["CPUExecutionProvider"]
    if "cuda" in _kiln.available_targets():
        providers.insert(0, "CUDAExecutionProvider")
    return providers


def get_device() -> str:
    """``GPU`` where kiln can run on an NVIDIA GPU here, else ``CPU``."""
    return "GPU" if "cuda" in _kiln.available_targets() else "CPU"


class GraphOptimizationLevel(enum.IntEnum):
    """ONNX Runtime's optimization levels: kiln optimizes fully unless ``ORT_DISABLE_ALL``."""

    ORT_DISABLE_ALL = 0
    ORT_ENABLE_BASIC = 1
    ORT_ENABLE_EXTENDED = 2
    ORT_ENABLE_LAYOUT = 3
    ORT_ENABLE_ALL = 99


class ExecutionMode(enum.IntEnum):
    """ONNX Runtime's execution modes; kiln runs a model's steps in order."""

    ORT_SEQUENTIAL = 0
    ORT_PARALLEL = 1


class _Options:
    """Attribute holder that refuses unknown names (as ONNX Runtime's classes do)
    and raises ``NotImplementedError`` for settings kiln does not honour."""

    _defaults: dict[str, Any] = {}
    #: Settings that change results or behaviour, with the only value kiln supports.
    _fixed: dict[str, Any] = {}

    def __init__(self) -> None:
        for name, value in self._defaults.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self._defaults:
            raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")
        if name in self._fixed and value != self._fixed[name]:
            raise NotImplementedError(
                f"{type(self).__name__}.{name} = {value!r} is not supported by kiln "
                f"(only {self._fixed[name]!r})"
            )
        object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={getattr(self, k)!r}" for k in self._defaults)
        return f"{type(self).__name__}({fields})"


class SessionOptions(_Options):
    """The session settings of ONNX Runtime that kiln honours.

    ``intra_op_num_threads`` (0: every core) sets kiln's threads;
    ``graph_optimization_level`` ``ORT_DISABLE_ALL`` turns kiln's optimizer
    off. Logging, arena and memory-pattern settings are accepted (kiln plans
    memory its own way). Profiling, saving the optimized model, custom ops,
    parallel execution and session config entries raise ``NotImplementedError``.
    """

    _defaults = {
        "intra_op_num_threads": 0,
        "inter_op_num_threads": 0,
        "graph_optimization_level": GraphOptimizationLevel.ORT_ENABLE_ALL,
        "execution_mode": ExecutionMode.ORT_SEQUENTIAL,
        "log_severity_level": 2,
        "log_verbosity_level": 0,
        "logid": "",
        "enable_cpu_mem_arena": True,
        "enable_mem_pattern": True,
        "enable_mem_reuse": True,
        "enable_profiling": False,
        "optimized_model_filepath": "",
        "profile_file_prefix": "onnxruntime_profile_",
        "use_deterministic_compute": False,
    }
    _fixed = {
        "execution_mode": ExecutionMode.ORT_SEQUENTIAL,
        "enable_profiling": False,
        "optimized_model_filepath": "",
    }

    def add_session_config_entry(self, key: str, value: str) -> None:
        """Not supported: ONNX Runtime's config entries have no kiln meaning."""
        raise NotImplementedError(f"SessionOptions.add_session_config_entry({key!r}, ...) is not supported by kiln")

    def get_session_config_entry(self, key: str) -> str:
        """Not supported (no config entries are ever set)."""
        raise NotImplementedError("SessionOptions.get_session_config_entry is not supported by kiln")

    def register_custom_ops_library(self, path: str) -> None:
        """Not supported: kiln cannot load ONNX Runtime's custom-op libraries."""
        raise NotImplementedError("custom op libraries are not supported by kiln")

    def add_free_dimension_override_by_name(self, name: str, value: int) -> None:
        """Not supported: kiln compiles for the shapes it is run with."""
        raise NotImplementedError("SessionOptions.add_free_dimension_override_by_name is not supported by kiln")

    def add_free_dimension_override_by_denotation(self, denotation: str, value: int) -> None:
        """Not supported: kiln compiles for the shapes it is run with."""
        raise NotImplementedError("SessionOptions.add_free_dimension_override_by_denotation is not supported by kiln")

    def add_initializer(self, name: str, value: Any) -> None:
        """Not supported: initializers come from the model file."""
        raise NotImplementedError("SessionOptions.add_initializer is not supported by kiln")


class RunOptions(_Options):
    """ONNX Runtime's per-run settings: logging ones are accepted; ``terminate``
    (cancelling a run from another thread) is not supported."""

    _defaults = {
        "log_severity_level": 2,
        "log_verbosity_level": 0,
        "logid": "",
        "only_execution_path_to_fetches": False,
        "terminate": False,
    }
    _fixed = {"terminate": False}

    def add_run_config_entry(self, key: str, value: str) -> None:
        """Not supported: ONNX Runtime's run config entries have no kiln meaning."""
        raise NotImplementedError(f"RunOptions.add_run_config_entry({key!r}, ...) is not supported by kiln")


class NodeArg:
    """An input or output of a session: ``name``, ``type`` (``tensor(float)``)
    and ``shape`` (ints for known dims, strings for symbolic ones, None for
    unknown ones), as ONNX Runtime reports them."""

    __slots__ = ("name", "type", "shape")

    def __init__(self, name: str, type: str, shape: list[int | str | None] | None) -> None:
        self.name = name
        self.type = type
        self.shape = shape

    @classmethod
    def _of(cls, info: _kiln.ValueInfo) -> NodeArg:
        dtype = info.dtype
        return cls(info.name, _ONNX_TYPES.get(dtype, "tensor(undefined)") if dtype else "tensor(undefined)", info.shape)

    def __repr__(self) -> str:
        return f"NodeArg(name='{self.name}', type='{self.type}', shape={self.shape})"


#: Parts of ONNX Runtime's session API kiln does not have.
_UNSUPPORTED_SESSION = {
    "run_with_iobinding",
    "io_binding",
    "run_with_ort_values",
    "run_with_ortvaluevector",
    "run_async",
    "get_modelmeta",
    "get_overridable_initializers",
    "end_profiling",
    "get_profiling_start_time_ns",
    "get_provider_options",
}


class InferenceSession:
    """A model compiled by kiln, with ONNX Runtime's ``InferenceSession`` interface.

    ``path_or_bytes`` is an ONNX file (or its bytes); kiln also takes what
    ``kiln.load`` takes (Hugging Face folders, GGUF files, ``.kiln``
    artifacts). ``providers`` (names, or ``(name, options)`` pairs) choose
    where it runs; the default is the CPU.
    """

    def __init__(
        self,
        path_or_bytes: str | bytes | os.PathLike[str],
        sess_options: SessionOptions | None = None,
        providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
        provider_options: Sequence[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> None:
        if kwargs:
            raise NotImplementedError(
                f"InferenceSession({', '.join(sorted(kwargs))}=...) is not supported by kiln"
            )
        self._options = sess_options if sess_options is not None else SessionOptions()
        self._provider, self._target = _choose_provider(providers, provider_options)
        if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
            with tempfile.TemporaryDirectory(prefix="kiln-") as folder:
                path = os.path.join(folder, "model.onnx")
                with open(path, "wb") as f:
                    f.write(path_or_bytes)
                self._model = _kiln.load(path)
        else:
            self._model = _kiln.load(os.fspath(path_or_bytes))
        self._compile()

    def _compile(self) -> None:
        threads = self._options.intra_op_num_threads or None
        optimize = self._options.graph_optimization_level != GraphOptimizationLevel.ORT_DISABLE_ALL
        self._exe = self._model.compile(target=self._target, threads=threads, optimize=optimize)
        self._inputs = [NodeArg._of(i) for i in self._exe.inputs]
        self._outputs = [NodeArg._of(o) for o in self._exe.outputs]

    def get_inputs(self) -> list[NodeArg]:
        """The model's inputs, in order."""
        return list(self._inputs)

    def get_outputs(self) -> list[NodeArg]:
        """The model's outputs, in order."""
        return list(self._outputs)

    def get_providers(self) -> list[str]:
        """The providers in use (CUDA sessions list the CPU after it, as ONNX Runtime does)."""
        if self._provider == "CPUExecutionProvider":
            return ["CPUExecutionProvider"]
        return [self._provider, "CPUExecutionProvider"]

    def get_session_options(self) -> SessionOptions:
        """The options the session was made with."""
        return self._options

    def set_providers(
        self,
        providers: Sequence[str | tuple[str, dict[str, Any]]] | None = None,
        provider_options: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Recompiles the model for other providers."""
        self._provider, self._target = _choose_provider(providers, provider_options)
        self._compile()

    def disable_fallback(self) -> None:
        """Accepted: kiln never falls back from one provider to another after creation."""

    def enable_fallback(self) -> None:
        """Accepted: see ``disable_fallback``."""

    def run(
        self,
        output_names: Sequence[str] | None,
        input_feed: Mapping[str, Any],
        run_options: RunOptions | None = None,
    ) -> list[Any]:
        """Runs the model; returns the outputs named (all when None or empty), in that order."""
        if run_options is not None and not isinstance(run_options, RunOptions):
            raise NotImplementedError(f"run_options of type {type(run_options).__name__}")
        names = list(output_names) if output_names else None
        feed = input_feed if isinstance(input_feed, dict) else dict(input_feed)
        results = self._exe.run(feed, names)
        return list(results.values())

    def __getattr__(self, name: str) -> Any:
        if name in _UNSUPPORTED_SESSION:
            raise NotImplementedError(f"InferenceSession.{name} is not supported by kiln")
        raise AttributeError(f"'InferenceSession' object has no attribute '{name}'")

    def __repr__(self) -> str:
        return f"<kiln.InferenceSession {self._model.path} on {self._target}>"


def _choose_provider(
    providers: Sequence[str | tuple[str, dict[str, Any]]] | None,
    provider_options: Sequence[dict[str, Any]] | None,
) -> tuple[str, str]:
    """The first usable provider of the list and its kiln target."""
    if providers is None:
        providers = ["CPUExecutionProvider"]
    entries: list[tuple[str, dict[str, Any]]] = []
    for i, p in enumerate(providers):
        if isinstance(p, tuple):
            name, opts = p
        else:
            name, opts = p, {}
        if provider_options is not None and i < len(provider_options):
            opts = {**opts, **provider_options[i]}
        if not isinstance(name, str):
            raise TypeError(f"a provider is a name or a (name, options) pair, not {p!r}")
        entries.append((name, dict(opts)))
    available = set(get_available_providers())
    for name, opts in entries:
        if name in _PROVIDER_TARGETS:
            if name not in available:
                warnings.warn(
                    f"Specified provider '{name}' is not in available provider names. "
                    f"Available providers: {', '.join(repr(a) for a in sorted(available))}",
                    stacklevel=3,
                )
                continue
            extra = {k: v for k, v in opts.items() if not (k == "device_id" and int(v) == 0)}
            if extra:
                raise NotImplementedError(
                    f"{name} options {sorted(extra)} are not supported by kiln"
                )
            return name, _PROVIDER_TARGETS[name]
        if name in _OTHER_ORT_PROVIDERS:
            warnings.warn(f"kiln does not run '{name}'; skipping it", stacklevel=3)
            continue
        raise ValueError(f"Unknown provider name '{name}'")
    return "CPUExecutionProvider", "cpu"
