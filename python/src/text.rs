//! `kiln.generate` and `kiln.embed`: text models as `kiln generate` and
//! `kiln embed` run them.
//!
//! A `kiln.Model` keeps what these compile (a generator per target, threads
//! and context length; an embedder per target and threads), so that calling
//! them again on the same model object costs no compile. Each generation
//! forks the kept generator (its compiled code, a KV cache of its own), so
//! generations run at once without waiting on each other, and a stream left
//! unread never blocks another call.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Mutex};

use kiln::embed::Embedder;
use kiln::generate::text::{TextJob, TextRequest};
use kiln::generate::Generator;
use kiln_ir::Tensor;
use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3::types::PyString;

use crate::arrays::tensor_to_py;
use crate::errors::{input_error, to_py, IntoPyResult};
use crate::model::{compile_options, target_named, PyModel};

/// Pieces of text a stream may run ahead of its reader.
const STREAM_AHEAD: usize = 16;

/// Something `kiln.generate` / `kiln.embed` compiled for a model.
pub enum Compiled {
    /// A decoder, forked for each generation.
    Generator(Box<Generator>),
    /// A sentence encoder.
    Embedder(Box<Embedder>),
}

/// The model argument: a `kiln.Model`, or a path to load.
fn model_arg(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    adapters: Vec<PathBuf>,
) -> PyResult<Py<PyModel>> {
    if let Ok(m) = model.cast::<PyModel>() {
        if adapters.is_empty() {
            return Ok(m.clone().unbind());
        }
        let path = m.get().model()?.path().to_path_buf();
        return Py::new(py, PyModel::load(py, path, adapters)?);
    }
    let path: PathBuf = model.extract().map_err(|_| {
        input_error(format!(
            "model must be a kiln.Model or a path, not {}",
            model
                .get_type()
                .name()
                .map_or("?".into(), |n| n.to_string())
        ))
    })?;
    Py::new(py, PyModel::load(py, path, adapters)?)
}

/// The generator of `model` for `target`, `threads` and `job`'s context,
/// compiled on first use (the GIL released meanwhile).
fn generator_for(
    py: Python<'_>,
    model: &PyModel,
    target: &str,
    threads: Option<usize>,
    job: &TextJob,
) -> PyResult<Arc<Compiled>> {
    let key = (format!("generate:{target}"), threads, job.capacity());
    if let Some(c) = model.compiled.lock().unwrap().get(&key) {
        return Ok(c.clone());
    }
    let t = target_named(target)?;
    let options = compile_options(threads, true)?;
    let m = model.model()?;
    let generator = py.detach(|| job.generator(m, &t, &options)).py()?;
    let compiled = Arc::new(Compiled::Generator(Box::new(generator)));
    model.compiled.lock().unwrap().insert(key, compiled.clone());
    Ok(compiled)
}

/// Generates text after `prompt` with the decoder `model` (a `kiln.Model`
/// or a path to a Hugging Face folder or GGUF file), as `kiln generate`
/// does: through the chat template when the tokenizer has one (unless
/// `raw`), greedy at temperature 0, else sampled (`top_p`, `seed`).
/// Returns the new text, or with `stream=True` an iterator of its pieces as
/// they are generated.
#[pyfunction]
#[pyo3(signature = (
    model, prompt, *, max_tokens = 128, temperature = 0.0, top_p = 1.0, seed = 0,
    adapters = None, system = None, raw = false, ignore_eos = false, context = None,
    target = "cpu", threads = None, stream = false
))]
#[allow(clippy::too_many_arguments)]
pub fn generate<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    prompt: String,
    max_tokens: usize,
    temperature: f32,
    top_p: f32,
    seed: u64,
    adapters: Option<Vec<PathBuf>>,
    system: Option<String>,
    raw: bool,
    ignore_eos: bool,
    context: Option<usize>,
    target: &str,
    threads: Option<usize>,
    stream: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let request = TextRequest {
        prompt,
        system,
        raw,
        max_tokens,
        temperature,
        top_p,
        seed,
        ignore_eos,
        context,
    };
    let model = model_arg(py, model, adapters.unwrap_or_default())?;
    let model_ref = model.get();
    let job = {
        let m = model_ref.model()?;
        py.detach(|| TextJob::new(m, &request)).py()?
    };
    let compiled = generator_for(py, model_ref, target, threads, &job)?;
    if stream {
        return Ok(Bound::new(py, TextStream::start(job, compiled))?.into_any());
    }
    let text = py
        .detach(|| {
            let Compiled::Generator(g) = &*compiled else {
                unreachable!("generators are cached under generate keys")
            };
            let mut g = g.fork();
            let mut text = String::new();
            job.run(&mut g, |piece| {
                text.push_str(piece);
                true
            })
            .map(|_| text)
        })
        .py()?;
    Ok(PyString::new(py, &text).into_any())
}

/// One message of a stream: a piece of text, or the end.
enum Message {
    Piece(String),
    Done(Result<(), kiln::Error>),
}

/// The pieces of text `kiln.generate(..., stream=True)` yields, generated on
/// a thread of their own; dropping the iterator stops the generation.
#[pyclass(name = "TextStream", module = "kiln")]
pub struct TextStream {
    /// None once the stream has ended.
    receiver: Mutex<Option<Receiver<Message>>>,
}

impl TextStream {
    fn start(job: TextJob, compiled: Arc<Compiled>) -> TextStream {
        let (sender, receiver) = sync_channel(STREAM_AHEAD);
        std::thread::spawn(move || {
            let Compiled::Generator(g) = &*compiled else {
                unreachable!("generators are cached under generate keys")
            };
            let mut g = g.fork();
            drop(compiled);
            let result = job.run(&mut g, |piece| {
                sender.send(Message::Piece(piece.to_string())).is_ok()
            });
            let _ = sender.send(Message::Done(result.map(|_| ())));
        });
        TextStream {
            receiver: Mutex::new(Some(receiver)),
        }
    }
}

#[pymethods]
impl TextStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&self, py: Python<'_>) -> PyResult<String> {
        // The receiver leaves the lock while this thread waits without the
        // GIL; another thread calling next() meanwhile sees the end.
        let Some(receiver) = self.receiver.lock().unwrap().take() else {
            return Err(PyStopIteration::new_err(()));
        };
        let (receiver, message) = py.detach(move || {
            let m = receiver.recv();
            (receiver, m)
        });
        match message {
            Ok(Message::Piece(p)) => {
                *self.receiver.lock().unwrap() = Some(receiver);
                Ok(p)
            }
            Ok(Message::Done(result)) => {
                result.map_err(to_py)?;
                Err(PyStopIteration::new_err(()))
            }
            Err(_) => Err(crate::errors::KilnError::new_err(
                "the generation thread ended without a result (a bug in kiln)",
            )),
        }
    }
}

/// Sentence embeddings from a sentence-transformers model (a `kiln.Model`
/// or a folder path), as `kiln embed` computes them: an `(n, d)` float32
/// array for a list of n sentences, a `(d,)` array for one string.
#[pyfunction]
#[pyo3(signature = (model, sentences, *, target = "cpu", threads = None))]
pub fn embed<'py>(
    py: Python<'py>,
    model: &Bound<'py, PyAny>,
    sentences: &Bound<'py, PyAny>,
    target: &str,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let single = sentences.is_instance_of::<PyString>();
    let texts: Vec<String> = if single {
        vec![sentences.extract()?]
    } else {
        sentences
            .extract()
            .map_err(|_| input_error("sentences must be a str or a list of str"))?
    };
    let model = model_arg(py, model, Vec::new())?;
    let model_ref = model.get();
    let key = (format!("embed:{target}"), threads, 0);
    let cached = model_ref.compiled.lock().unwrap().get(&key).cloned();
    let compiled = match cached {
        Some(c) => c,
        None => {
            let t = target_named(target)?;
            let options = compile_options(threads, true)?;
            let m = model_ref.model()?;
            let e = py.detach(|| Embedder::new(m, &t, &options)).py()?;
            let c = Arc::new(Compiled::Embedder(Box::new(e)));
            model_ref.compiled.lock().unwrap().insert(key, c.clone());
            c
        }
    };
    let Compiled::Embedder(embedder) = &*compiled else {
        unreachable!("embedders are cached under embed keys")
    };
    let dim = embedder.dim();
    let vectors = py
        .detach(|| {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            if refs.is_empty() {
                return Ok(Vec::new());
            }
            embedder.embed(&refs)
        })
        .py()?;
    let n = vectors.len();
    let flat: Vec<f32> = vectors.into_iter().flatten().collect();
    let shape = if single { vec![dim] } else { vec![n, dim] };
    tensor_to_py(py, Tensor::from_vec(shape, flat), true)
}
