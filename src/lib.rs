//! kiln: a model compiler for neural networks.
//!
//! Load a model, choose a target, run it:
//!
//! ```
//! use kiln::{Model, Target, Tensor};
//!
//! // A small BERT the repository ships (random weights, vocabulary of 1,000).
//! let model = Model::load("models/demo/tiny-bert.onnx")?;
//! let exe = model.compile(&Target::reference())?;
//! let ids = Tensor::from_vec(vec![1, 4], vec![101i64, 592, 88, 102]);
//! let mask = Tensor::from_vec(vec![1, 4], vec![1i64; 4]);
//! let types = Tensor::from_vec(vec![1, 4], vec![0i64; 4]);
//! let outputs = exe.run(&[
//!     ("input_ids".into(), ids),
//!     ("attention_mask".into(), mask),
//!     ("token_type_ids".into(), types),
//! ])?;
//! assert_eq!(outputs[0].0, "last_hidden_state");
//! assert_eq!(outputs[0].1.shape(), &[1, 4, 64]);
//! # Ok::<(), kiln::Error>(())
//! ```
//!
//! The same model compiled to native code for this CPU (optimized, then code
//! generated for each set of input shapes on first use and cached), on two
//! threads; it agrees with the reference interpreter to float rounding:
//!
//! ```
//! use kiln::{CompileOptions, Model, Target, Tensor};
//!
//! let model = Model::load("models/demo/tiny-bert.onnx")?;
//! let options = CompileOptions { threads: Some(2), ..CompileOptions::default() };
//! let cpu = model.compile_with(&Target::cpu(), &options)?;
//! let inputs = vec![
//!     ("input_ids".to_string(), Tensor::from_vec(vec![1, 4], vec![101i64, 592, 88, 102])),
//!     ("attention_mask".to_string(), Tensor::from_vec(vec![1, 4], vec![1i64; 4])),
//!     ("token_type_ids".to_string(), Tensor::from_vec(vec![1, 4], vec![0i64; 4])),
//! ];
//! let fast = cpu.run(&inputs)?;
//! let exact = model.run(&inputs)?;
//! let (a, b) = (fast[0].1.to_f32_vec(), exact[0].1.to_f32_vec());
//! let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
//! assert!(worst < 1e-4, "max difference {worst}");
//! # Ok::<(), kiln::Error>(())
//! ```
#![warn(missing_docs)]

pub mod aot;
pub mod aot_cuda;
pub mod cli;
pub mod cpu;
pub mod embed;
mod error;
pub mod fuzz;
pub mod generate;
mod gguf;
pub mod gpu;
pub mod inspect;
pub mod io;
mod model;
mod signature;

pub use error::Error;
pub use kiln_codegen::llvm::isa::IsaLevel;
pub use kiln_ir as ir;
pub use kiln_ir::{DType, Tensor};
pub use model::{CompileOptions, Executable, LoadOptions, Model, Target};
pub use signature::Signature;
