//! The library's error type.

use kiln_frontends::onnx::OnnxError;
use kiln_ir::interp::EvalError;

/// Everything that can go wrong in kiln, with a one-line message for people.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model could not be imported.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// A Hugging Face folder, GGUF file or adapter could not be loaded.
    #[error(transparent)]
    HuggingFace(#[from] kiln_frontends::hf::HfError),
    /// A tokenizer could not be loaded or failed on a text.
    #[error(transparent)]
    Tokenizer(#[from] kiln_frontends::tokenizer::TokenizerError),
    /// Evaluation failed (bad inputs or an op rejected its operands).
    #[error(transparent)]
    Eval(#[from] EvalError),
    /// An input file or argument is unusable.
    #[error("{0}")]
    Input(String),
    /// An output could not be written.
    #[error("{0}")]
    Output(String),
    /// The requested target is not built into this kiln.
    #[error("target `{0}` is not available yet: this kiln runs models with `--target cpu` (native code) or `--target ref` (the reference interpreter)")]
    TargetUnavailable(String),
    /// An imported graph broke an IR invariant: a bug in kiln's frontend, reported
    /// instead of running a malformed graph.
    #[error("the imported graph is ill-formed (a bug in kiln's frontend, please report it): {0}")]
    IllFormed(#[from] kiln_ir::VerifyError),
    /// The optimizer returned a graph that broke an IR invariant: a bug in kiln's
    /// optimizer, reported instead of compiling a malformed graph.
    #[error(
        "the optimized graph is ill-formed (a bug in kiln's optimizer, please report it): {0}"
    )]
    OptimizedIllFormed(kiln_ir::VerifyError),
    /// Code generation failed (a bug in kiln's backend).
    #[error("code generation failed (a bug in kiln, please report it): {0}")]
    Codegen(String),
    /// Running compiled code failed.
    #[error(transparent)]
    Run(#[from] kiln_runtime::RunError),
    /// The GPU toolchain or device is unusable (no NVRTC, no driver); the
    /// message says what is missing and how to get it.
    #[error("{0}")]
    Gpu(String),
    /// An inconsistency inside kiln.
    #[error("internal error: {0}")]
    Internal(String),
    /// The optimizer rejected the graph.
    #[error("optimizing the model failed: {0}")]
    Optimize(String),
    /// The model path is not something kiln can load.
    #[error("{0}")]
    UnknownModel(String),
}
