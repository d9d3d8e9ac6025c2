//! Text generation with a KV cache for decoder models (Hugging Face folders and
//! GGUF files).
//!
//! A [`Generator`] owns a cache of fixed capacity per layer (preallocated, f32,
//! `[1, kv_heads, capacity, head_dim]`). [`Generator::prefill`] runs the prompt once
//! and [`Generator::step`] one token at a time; both run the same compiled graph
//! (the model's KV-cache interface, [`Model::kv_cache`]; see
//! `kiln_frontends::hf::decoder`) with a mask that shows each query the filled
//! cache slots and the new tokens up to itself. Native code is built once per
//! shape: one build for the prompt length and one for single-token steps.
//!
//! ```no_run
//! use kiln::generate::{Generator, GenerateOptions, Sampling};
//! use kiln::{Model, Target};
//!
//! let model = Model::load("path/to/hf-folder")?;
//! let mut generator = Generator::new(&model, &Target::cpu(), &Default::default(), 512)?;
//! let prompt = [1u32, 450, 4996];
//! let options = GenerateOptions { max_tokens: 16, sampling: Sampling::Greedy, ..Default::default() };
//! let out = generator.generate(&prompt, &options, |token| { print!("{token} "); true })?;
//! println!("\n{} tokens, {:.1} tokens/s decode", out.tokens.len(), out.decode_tokens_per_s());
//! # Ok::<(), kiln::Error>(())
//! ```

mod sampling;
pub mod text;

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kiln_frontends::hf::decoder::{past_key, past_value, present_key, present_value};
use kiln_frontends::hf::{DecoderInfo, ModelKind};
use kiln_ir::{DType, Tensor};

pub use sampling::{Sampler, Sampling};

use crate::{CompileOptions, Error, Executable, Model, Target};

/// How [`Generator::generate`] runs.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// Most new tokens.
    pub max_tokens: usize,
    /// Greedy or sampled decoding.
    pub sampling: Sampling,
    /// Tokens that end generation (the end-of-sequence and end-of-turn tokens);
    /// empty: never stop early.
    pub stop_tokens: Vec<u32>,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        GenerateOptions {
            max_tokens: 64,
            sampling: Sampling::Greedy,
            stop_tokens: Vec::new(),
        }
    }
}

/// What [`Generator::generate`] produced, with its timings.
#[derive(Clone, Debug, PartialEq)]
pub struct Generation {
    /// The new tokens (a stop token that ended generation included).
    pub tokens: Vec<u32>,
    /// Whether a stop token ended it.
    pub stopped: bool,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Time to run the prompt (the first run at a shape includes building it).
    pub prefill: Duration,
    /// Time of the decode steps.
    pub decode: Duration,
}

impl Generation {
    /// Prompt tokens per second.
    pub fn prefill_tokens_per_s(&self) -> f64 {
        self.prompt_tokens as f64 / self.prefill.as_secs_f64().max(1e-9)
    }

    /// New tokens per second over the decode steps (the first new token comes from
    /// the prefill).
    pub fn decode_tokens_per_s(&self) -> f64 {
        let steps = self.tokens.len().saturating_sub(1);
        steps as f64 / self.decode.as_secs_f64().max(1e-9)
    }
}

/// One layer's cache: keys and values `[1, kv_heads, capacity, head_dim]`.
struct LayerCache {
    keys: BytesMut,
    values: BytesMut,
}

/// A decoder with its KV cache.
pub struct Generator {
    exe: Executable,
    info: DecoderInfo,
    capacity: usize,
    cache: Vec<LayerCache>,
    len: usize,
    tokens: Vec<u32>,
}

impl Generator {
    /// Compiles `model` (a decoder) for `target` with a cache of `capacity` tokens
    /// (prompt and generated together; at most the model's position count).
    pub fn new(
        model: &Model,
        target: &Target,
        options: &CompileOptions,
        capacity: usize,
    ) -> Result<Generator, Error> {
        let info = match model.kind() {
            Some(ModelKind::Decoder(info)) => info.clone(),
            Some(ModelKind::Encoder(_)) => {
                return Err(Error::Input(format!(
                    "`{}` is an encoder; text generation needs a decoder (causal LM)",
                    model.path().display()
                )))
            }
            None => {
                return Err(Error::Input(format!(
                    "`{}` is not a Hugging Face or GGUF decoder; generation needs one",
                    model.path().display()
                )))
            }
        };
        if capacity == 0 || capacity > info.max_positions {
            return Err(Error::Input(format!(
                "a KV cache of {capacity} tokens: it must be between 1 and the model's {} positions",
                info.max_positions
            )));
        }
        // The KV-cache interface, not the forward signature `Model::graph` has.
        let exe = match model.kv_cache() {
            Some(cached) => cached.compile_with(target, options)?,
            None => {
                return Err(Error::Internal(format!(
                    "`{}` is a decoder without its KV-cache graph",
                    model.path().display()
                )))
            }
        };
        let slot = info.kv_heads * capacity * info.head_dim * DType::F32.size();
        let cache = (0..info.layers)
            .map(|_| LayerCache {
                keys: BytesMut::zeroed(slot),
                values: BytesMut::zeroed(slot),
            })
            .collect();
        Ok(Generator {
            exe,
            info,
            capacity,
            cache,
            len: 0,
            tokens: Vec::new(),
        })
    }

    /// A generator sharing this one's compiled code, with a KV cache of its
    /// own (empty): generations that run at once each take one.
    pub fn fork(&self) -> Generator {
        let slot = self.info.kv_heads * self.capacity * self.info.head_dim * DType::F32.size();
        Generator {
            exe: self.exe.clone(),
            info: self.info.clone(),
            capacity: self.capacity,
            cache: (0..self.info.layers)
                .map(|_| LayerCache {
                    keys: BytesMut::zeroed(slot),
                    values: BytesMut::zeroed(slot),
                })
                .collect(),
            len: 0,
            tokens: Vec::new(),
        }
    }

    /// The model's interface.
    pub fn info(&self) -> &DecoderInfo {
        &self.info
    }

    /// Tokens the cache holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Tokens the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Empties the cache (the memory stays allocated).
    pub fn reset(&mut self) {
        self.len = 0;
        self.tokens.clear();
    }

    /// Builds the native code for runs of `tokens` new tokens now (the CPU target
    /// compiles per shape on first use; call it for the prompt length and for 1
    /// before timing).
    pub fn prepare(&self, tokens: usize) -> Result<(), Error> {
        let (cap, n) = (self.capacity, tokens.max(1));
        let cache = vec![1, self.info.kv_heads, cap, self.info.head_dim];
        let mut shapes = vec![
            ("input_ids".to_string(), vec![1, n]),
            ("position_ids".to_string(), vec![1, n]),
            ("attention_mask".to_string(), vec![1, 1, n, cap + n]),
        ];
        for l in 0..self.info.layers {
            shapes.push((past_key(l), cache.clone()));
            shapes.push((past_value(l), cache.clone()));
        }
        self.exe.prepare(&shapes)
    }

    /// Runs `tokens` after the cached ones; returns their logits `[n, vocab]`
    /// (row-major) and appends them to the cache.
    pub fn forward(&mut self, tokens: &[u32]) -> Result<Vec<f32>, Error> {
        let n = tokens.len();
        if n == 0 {
            return Err(Error::Input("no tokens to run".into()));
        }
        if self.len + n > self.capacity {
            return Err(Error::Input(format!(
                "the KV cache holds {} tokens; {} more do not fit (make it larger)",
                self.capacity - self.len,
                n
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.info.vocab_size) {
            return Err(Error::Input(format!(
                "token id {bad} is outside the vocabulary of {}",
                self.info.vocab_size
            )));
        }
        let (cap, start) = (self.capacity, self.len);
        let mut inputs = self.feed(tokens, start);
        let shape = vec![1, self.info.kv_heads, cap, self.info.head_dim];
        for (l, c) in self.cache.iter_mut().enumerate() {
            let k = std::mem::take(&mut c.keys).freeze();
            let v = std::mem::take(&mut c.values).freeze();
            inputs.push((past_key(l), cache_tensor(&shape, k)?));
            inputs.push((past_value(l), cache_tensor(&shape, v)?));
        }
        let result = self.exe.run(&inputs);
        // Take the cache buffers back (unique again once the inputs are dropped).
        let mut buffers: Vec<Bytes> = inputs.drain(3..).map(|(_, t)| t.bytes().clone()).collect();
        drop(inputs);
        for c in self.cache.iter_mut().rev() {
            c.values = reclaim(buffers.pop().expect("two buffers per layer"));
            c.keys = reclaim(buffers.pop().expect("two buffers per layer"));
        }
        let outputs = result?;
        let find = |name: &str| -> Result<&Tensor, Error> {
            outputs
                .iter()
                .find(|(o, _)| o == name)
                .map(|(_, t)| t)
                .ok_or_else(|| Error::Internal(format!("the decoder has no output `{name}`")))
        };
        let (hd, heads) = (self.info.head_dim, self.info.kv_heads);
        for l in 0..self.info.layers {
            let k = find(&present_key(l))?.to_f32_vec();
            let v = find(&present_value(l))?.to_f32_vec();
            let c = &mut self.cache[l];
            write_rows(&mut c.keys, &k, heads, n, cap, start, hd);
            write_rows(&mut c.values, &v, heads, n, cap, start, hd);
        }
        self.len += n;
        self.tokens.extend_from_slice(tokens);
        Ok(find("logits")?.to_f32_vec())
    }

    /// `input_ids`, `position_ids` and `attention_mask` for `tokens` at positions
    /// `start..`: query i sees the cache slots `..start` (within the sliding
    /// window, if any) and the new tokens up to itself.
    fn feed(&self, tokens: &[u32], start: usize) -> Vec<(String, Tensor)> {
        let (n, cap) = (tokens.len(), self.capacity);
        let ids: Vec<i64> = tokens.iter().map(|&t| t as i64).collect();
        let positions: Vec<i64> = (start..start + n).map(|p| p as i64).collect();
        let total = cap + n;
        let mut mask = vec![false; n * total];
        for i in 0..n {
            let pos = start + i;
            let oldest = self
                .info
                .sliding_window
                .map_or(0, |w| (pos + 1).saturating_sub(w));
            for j in oldest..start {
                mask[i * total + j] = true;
            }
            for j in 0..=i {
                if start + j >= oldest {
                    mask[i * total + cap + j] = true;
                }
            }
        }
        vec![
            ("input_ids".to_string(), Tensor::from_vec(vec![1, n], ids)),
            (
                "position_ids".to_string(),
                Tensor::from_vec(vec![1, n], positions),
            ),
            (
                "attention_mask".to_string(),
                Tensor::from_vec(vec![1, 1, n, total], mask),
            ),
        ]
    }

    /// The inputs of a run of `tokens` after the cached tokens, with copies of the
    /// cache (for profiling a program; `forward` lends the cache without copying).
    pub fn run_inputs(&self, tokens: &[u32]) -> Result<Vec<(String, Tensor)>, Error> {
        let n = tokens.len();
        if n == 0 || n > self.capacity {
            return Err(Error::Input(format!("{n} tokens do not fit the cache")));
        }
        let (cap, start) = (self.capacity, self.len.min(self.capacity - n));
        let mut inputs = self.feed(tokens, start);
        let shape = vec![1, self.info.kv_heads, cap, self.info.head_dim];
        for (l, c) in self.cache.iter().enumerate() {
            let k = Bytes::copy_from_slice(&c.keys);
            let v = Bytes::copy_from_slice(&c.values);
            inputs.push((past_key(l), cache_tensor(&shape, k)?));
            inputs.push((past_value(l), cache_tensor(&shape, v)?));
        }
        Ok(inputs)
    }

    /// The compiled decoder.
    pub fn executable(&self) -> &Executable {
        &self.exe
    }

    /// Runs the prompt; returns the logits of its last token.
    pub fn prefill(&mut self, prompt: &[u32]) -> Result<Vec<f32>, Error> {
        let logits = self.forward(prompt)?;
        let v = self.info.vocab_size;
        Ok(logits[logits.len() - v..].to_vec())
    }

    /// Runs one token; returns its logits.
    pub fn step(&mut self, token: u32) -> Result<Vec<f32>, Error> {
        self.forward(&[token])
    }

    /// Generates after `prompt` (resetting the cache first), calling `on_token` with
    /// each new token as it is chosen; `on_token` returning false stops.
    pub fn generate(
        &mut self,
        prompt: &[u32],
        options: &GenerateOptions,
        mut on_token: impl FnMut(u32) -> bool,
    ) -> Result<Generation, Error> {
        self.reset();
        let mut sampler = Sampler::new(options.sampling.clone());
        let t0 = Instant::now();
        let mut logits = self.prefill(prompt)?;
        let prefill = t0.elapsed();
        let t1 = Instant::now();
        let mut tokens = Vec::new();
        let mut stopped = false;
        while tokens.len() < options.max_tokens {
            let next = sampler.pick(&logits);
            tokens.push(next);
            let go_on = on_token(next);
            if options.stop_tokens.contains(&next) {
                stopped = true;
                break;
            }
            if !go_on || tokens.len() == options.max_tokens {
                break;
            }
            if self.len >= self.capacity {
                break;
            }
            logits = self.step(next)?;
        }
        Ok(Generation {
            tokens,
            stopped,
            prompt_tokens: prompt.len(),
            prefill,
            decode: t1.elapsed(),
        })
    }
}

/// A cache buffer as an input tensor (no copy).
fn cache_tensor(shape: &[usize], bytes: Bytes) -> Result<Tensor, Error> {
    Tensor::from_bytes(DType::F32, shape.to_vec(), bytes)
        .map_err(|e| Error::Internal(format!("KV cache buffer: {e}")))
}

/// The buffer back as mutable memory: without a copy when nothing else holds it.
fn reclaim(bytes: Bytes) -> BytesMut {
    match bytes.try_into_mut() {
        Ok(m) => m,
        Err(shared) => BytesMut::from(&shared[..]),
    }
}

/// Writes `rows` new rows per head (`new`: `[heads, rows, dim]`) at `start` of a
/// `[heads, capacity, dim]` f32 buffer.
fn write_rows(
    buf: &mut BytesMut,
    new: &[f32],
    heads: usize,
    rows: usize,
    capacity: usize,
    start: usize,
    dim: usize,
) {
    let floats: &mut [f32] = bytemuck_f32(buf);
    for h in 0..heads {
        let src = &new[h * rows * dim..(h + 1) * rows * dim];
        let at = (h * capacity + start) * dim;
        floats[at..at + rows * dim].copy_from_slice(src);
    }
}

/// Views an f32 buffer's bytes as floats (kiln's buffers are allocated for f32
/// and so 4-aligned; an unaligned one is a bug and panics here).
fn bytemuck_f32(buf: &mut BytesMut) -> &mut [f32] {
    let (head, floats, tail) = unsafe { buf.align_to_mut::<f32>() };
    assert!(
        head.is_empty() && tail.is_empty(),
        "KV cache buffer is not f32-aligned"
    );
    floats
}
