//! Text in, text out: what `kiln generate` does with a prompt, as a library
//! (the command and the Python package share it, so that they give the same
//! text for the same request).
//!
//! A [`TextRequest`] says what to generate; [`TextJob::new`] checks it against
//! the model and tokenizes the prompt (through the chat template when the
//! tokenizer has one); [`TextJob::generator`] compiles the decoder for the
//! job's context; [`TextJob::run`] generates, handing each decoded piece of
//! text to a callback as soon as it is complete UTF-8.

use kiln_frontends::hf::ModelKind;
use kiln_frontends::tokenizer::{ChatMessage, TextTokenizer};

use super::{GenerateOptions, Generation, Generator, Sampling};
use crate::{CompileOptions, Error, Model, Target};

/// Longest KV cache a request allocates unless its `context` says otherwise.
pub const DEFAULT_MAX_CONTEXT: usize = 4096;

/// What to generate, as `kiln generate`'s options say it.
#[derive(Clone, Debug, PartialEq)]
pub struct TextRequest {
    /// The prompt (the user's message when the model has a chat template).
    pub prompt: String,
    /// A system message (chat models).
    pub system: Option<String>,
    /// Feed the prompt as it is, even when the tokenizer has a chat template.
    pub raw: bool,
    /// Most new tokens (at least 1).
    pub max_tokens: usize,
    /// Sampling temperature; 0 decodes greedily.
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this mass, in (0, 1].
    pub top_p: f32,
    /// Seed of the sampler (the same seed gives the same text).
    pub seed: u64,
    /// Keep generating past the end-of-sequence token.
    pub ignore_eos: bool,
    /// KV cache capacity in tokens; `None`: prompt + `max_tokens`, at most
    /// [`DEFAULT_MAX_CONTEXT`] (and never more than the model's positions).
    pub context: Option<usize>,
}

impl Default for TextRequest {
    fn default() -> Self {
        TextRequest {
            prompt: String::new(),
            system: None,
            raw: false,
            max_tokens: 128,
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
            ignore_eos: false,
            context: None,
        }
    }
}

impl TextRequest {
    /// The sampling rule: greedy at temperature 0, else nucleus sampling.
    pub fn sampling(&self) -> Sampling {
        if self.temperature == 0.0 {
            Sampling::Greedy
        } else {
            Sampling::Sample {
                temperature: self.temperature,
                top_p: self.top_p,
                seed: self.seed,
            }
        }
    }

    /// Checks the numbers (an error names the option at fault).
    pub fn validate(&self) -> Result<(), Error> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(Error::Input(format!(
                "temperature {} must be ≥ 0",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Input(format!(
                "top_p {} must be in (0, 1]",
                self.top_p
            )));
        }
        if self.max_tokens == 0 {
            return Err(Error::Input("max_tokens must be at least 1".into()));
        }
        Ok(())
    }
}

/// A checked request: the prompt's tokens, the cache it needs and when to stop.
pub struct TextJob {
    tokenizer: TextTokenizer,
    prompt_ids: Vec<u32>,
    capacity: usize,
    stop_tokens: Vec<u32>,
    options: GenerateOptions,
}

impl TextJob {
    /// Checks `request` against `model` (a decoder with a tokenizer) and
    /// tokenizes its prompt.
    pub fn new(model: &Model, request: &TextRequest) -> Result<TextJob, Error> {
        request.validate()?;
        let Some(ModelKind::Decoder(info)) = model.kind().cloned() else {
            return Err(Error::Input(format!(
                "`{}` is not a decoder (causal language model); embeddings come from encoders",
                model.path().display()
            )));
        };
        let tokenizer = model.tokenizer()?;
        let prompt_ids = if !request.raw && tokenizer.chat_template().is_some() {
            let mut messages = Vec::new();
            if let Some(system) = &request.system {
                messages.push(ChatMessage::new("system", system.clone()));
            }
            messages.push(ChatMessage::new("user", request.prompt.clone()));
            tokenizer.encode_chat(&messages)?
        } else {
            tokenizer.encode(&request.prompt, true)?
        };
        if prompt_ids.is_empty() {
            return Err(Error::Input("the prompt encodes to no tokens".into()));
        }
        let capacity = request
            .context
            .unwrap_or_else(|| (prompt_ids.len() + request.max_tokens).min(DEFAULT_MAX_CONTEXT))
            .min(info.max_positions);
        if prompt_ids.len() >= capacity {
            return Err(Error::Input(format!(
                "the prompt is {} tokens; the context holds {capacity} (the model's positions: {})",
                prompt_ids.len(),
                info.max_positions
            )));
        }
        let mut stop_tokens: Vec<u32> = tokenizer.eos_ids().to_vec();
        stop_tokens.extend(info.eos_token_ids.iter().copied());
        if request.ignore_eos {
            stop_tokens.clear();
        }
        let options = GenerateOptions {
            max_tokens: request.max_tokens,
            sampling: request.sampling(),
            stop_tokens: stop_tokens.clone(),
        };
        Ok(TextJob {
            tokenizer,
            prompt_ids,
            capacity,
            stop_tokens,
            options,
        })
    }

    /// The prompt's token ids.
    pub fn prompt_ids(&self) -> &[u32] {
        &self.prompt_ids
    }

    /// The KV cache capacity the job needs.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The model's tokenizer.
    pub fn tokenizer(&self) -> &TextTokenizer {
        &self.tokenizer
    }

    /// Compiles `model` for this job's context on `target`, with the native
    /// code for the prompt and for single-token steps built now.
    pub fn generator(
        &self,
        model: &Model,
        target: &Target,
        options: &CompileOptions,
    ) -> Result<Generator, Error> {
        let generator = Generator::new(model, target, options, self.capacity)?;
        self.prepare(&generator)?;
        Ok(generator)
    }

    /// Builds `generator`'s native code for this job's prompt and for steps
    /// (a generator compiled for another job of the same capacity is reused).
    pub fn prepare(&self, generator: &Generator) -> Result<(), Error> {
        generator.prepare(self.prompt_ids.len())?;
        generator.prepare(1)
    }

    /// Generates with `generator` (whose capacity must be at least the job's),
    /// handing each piece of decoded text to `on_text` (special tokens
    /// skipped); `on_text` returning false stops.
    pub fn run(
        &self,
        generator: &mut Generator,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<Generation, Error> {
        if generator.capacity() < self.capacity {
            return Err(Error::Internal(format!(
                "a generator of {} tokens for a job of {}",
                generator.capacity(),
                self.capacity
            )));
        }
        let mut stream = self.tokenizer.stream_with(true);
        let mut failure: Option<Error> = None;
        let out = generator.generate(&self.prompt_ids, &self.options, |token| {
            if self.stop_tokens.contains(&token) {
                return false;
            }
            match stream.push(token) {
                Ok(Some(piece)) => on_text(&piece),
                Ok(None) => true,
                Err(e) => {
                    failure = Some(e.into());
                    false
                }
            }
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        if let Some(rest) = stream.finish()? {
            on_text(&rest);
        }
        Ok(out)
    }
}
