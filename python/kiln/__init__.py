"""kiln: a model compiler for neural networks, from Python.

Load an ONNX file, a Hugging Face folder, a GGUF file or a compiled ``.kiln``
artifact, compile it for a target, and run it on numpy arrays::

    import numpy as np
    import kiln

    model = kiln.load("models/demo/tiny-bert.onnx")
    exe = model.compile(target="cpu")          # native code for this CPU
    ids = np.array([[101, 592, 88, 102]], dtype=np.int64)
    out = exe.run({"input_ids": ids,
                   "attention_mask": np.ones_like(ids),
                   "token_type_ids": np.zeros_like(ids)})
    print(out["last_hidden_state"].shape)     # (1, 4, 64)

ONNX Runtime users can switch by changing an import: ``kiln.InferenceSession``
takes the same arguments and answers the same calls as
``onnxruntime.InferenceSession`` (see ``kiln.ort``)::

    import kiln as ort
    session = ort.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
    outputs = session.run(None, {"input": x})

Text models run as the ``kiln generate`` and ``kiln embed`` commands do:
``kiln.generate(model, prompt, ...)`` and ``kiln.embed(model, sentences)``.

Every error kiln raises is a ``kiln.KilnError``; the subclasses say what went
wrong: ``InvalidModelError`` (and ``UnsupportedOpError``, listing every
unsupported op with its nodes), ``InputError``, ``TargetUnavailableError``.
Compiling and running release the GIL, and an ``Executable`` may be called
from several threads at once.
"""

from ._kiln import (
    Brick,
    Executable,
    InputError,
    InvalidModelError,
    KilnError,
    Model,
    TargetUnavailableError,
    TextStream,
    UnsupportedOpError,
    ValueInfo,
    __version__,
    available_targets,
    compile_file,
    embed,
    generate,
    load,
)
from .ort import (
    ExecutionMode,
    GraphOptimizationLevel,
    InferenceSession,
    NodeArg,
    RunOptions,
    SessionOptions,
    get_available_providers,
    get_device,
)

__all__ = [
    "Brick",
    "Executable",
    "ExecutionMode",
    "GraphOptimizationLevel",
    "InferenceSession",
    "InputError",
    "InvalidModelError",
    "KilnError",
    "Model",
    "NodeArg",
    "RunOptions",
    "SessionOptions",
    "TargetUnavailableError",
    "TextStream",
    "UnsupportedOpError",
    "ValueInfo",
    "__version__",
    "available_targets",
    "compile_file",
    "embed",
    "generate",
    "get_available_providers",
    "get_device",
    "load",
]
