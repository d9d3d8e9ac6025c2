//! Sentence embeddings from sentence-transformers folders (BERT encoders with a
//! pooling module), e.g. all-MiniLM-L6-v2.
//!
//! ```no_run
//! use kiln::embed::Embedder;
//! use kiln::{Model, Target};
//!
//! let model = Model::load("path/to/all-MiniLM-L6-v2")?;
//! let embedder = Embedder::new(&model, &Target::cpu(), &Default::default())?;
//! let vectors = embedder.embed(&["A cat sits on the mat.", "Ein Hund bellt."])?;
//! assert_eq!(vectors.len(), 2);
//! # Ok::<(), kiln::Error>(())
//! ```

use kiln_frontends::hf::{EncoderInfo, ModelKind};
use kiln_frontends::tokenizer::TextTokenizer;
use kiln_ir::Tensor;

use crate::{CompileOptions, Error, Executable, Model, Target};

/// A compiled sentence encoder with its tokenizer.
pub struct Embedder {
    exe: Executable,
    tokenizer: TextTokenizer,
    info: EncoderInfo,
}

impl Embedder {
    /// Compiles `model` (a sentence-transformers folder) for `target`.
    pub fn new(
        model: &Model,
        target: &Target,
        options: &CompileOptions,
    ) -> Result<Embedder, Error> {
        let info = match model.kind() {
            Some(ModelKind::Encoder(info)) if info.pooling.is_some() => info.clone(),
            Some(ModelKind::Encoder(_)) => {
                return Err(Error::Input(format!(
                    "`{}` is an encoder without a sentence-transformers pooling module (modules.json + 1_Pooling/config.json); it has no sentence embeddings",
                    model.path().display()
                )))
            }
            _ => {
                return Err(Error::Input(format!(
                    "`{}` is not a sentence-transformers folder",
                    model.path().display()
                )))
            }
        };
        let tokenizer = model.tokenizer()?;
        let exe = model.compile_with(target, options)?;
        Ok(Embedder {
            exe,
            tokenizer,
            info,
        })
    }

    /// The embedding width.
    pub fn dim(&self) -> usize {
        self.info.hidden
    }

    /// Longest input in tokens (longer texts are cut there, as sentence-transformers does).
    pub fn max_tokens(&self) -> usize {
        self.info
            .max_seq_length
            .unwrap_or(self.info.max_positions)
            .min(self.info.max_positions)
    }

    /// The token ids of `text` as the model sees it (special tokens added, cut at
    /// [`Embedder::max_tokens`] keeping the final separator).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>, Error> {
        let mut ids = self.tokenizer.encode(text, true)?;
        let max = self.max_tokens();
        if ids.len() > max {
            let last = *ids.last().expect("non-empty");
            ids.truncate(max);
            ids[max - 1] = last;
        }
        Ok(ids)
    }

    /// One embedding per text, in one batch padded to the longest.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.tokenize(t))
            .collect::<Result<_, _>>()?;
        self.embed_ids(&ids)
    }

    /// One embedding per token sequence (from [`Embedder::tokenize`]), in one
    /// batch padded to the longest.
    pub fn embed_ids(&self, ids: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, Error> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let seq = ids.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let n = ids.len();
        let mut flat = vec![0i64; n * seq];
        let mut mask = vec![0i64; n * seq];
        for (r, row) in ids.iter().enumerate() {
            for (c, &t) in row.iter().enumerate() {
                flat[r * seq + c] = t as i64;
                mask[r * seq + c] = 1;
            }
        }
        let inputs = vec![
            (
                "input_ids".to_string(),
                Tensor::from_vec(vec![n, seq], flat),
            ),
            (
                "attention_mask".to_string(),
                Tensor::from_vec(vec![n, seq], mask),
            ),
            (
                "token_type_ids".to_string(),
                Tensor::from_vec(vec![n, seq], vec![0i64; n * seq]),
            ),
        ];
        let outputs = self.exe.run(&inputs)?;
        let e = outputs
            .iter()
            .find(|(name, _)| name == "sentence_embedding")
            .map(|(_, t)| t.to_f32_vec())
            .ok_or_else(|| {
                Error::Internal("the encoder has no sentence_embedding output".into())
            })?;
        let d = self.info.hidden;
        Ok(e.chunks(d).map(<[f32]>::to_vec).collect())
    }
}
