//! `kiln generate` and `kiln embed`: text in, text or embeddings out.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use kiln_frontends::tokenizer::ChatMessage;

use crate::generate::{GenerateOptions, Generator, Sampling};
use crate::{CompileOptions, Error, LoadOptions, Model, Target};

/// Longest KV cache `kiln generate` allocates unless `--context` says otherwise.
const DEFAULT_MAX_CONTEXT: usize = 4096;

/// `kiln generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A Hugging Face decoder folder (config.json + model.safetensors +
    /// tokenizer.json) or a GGUF file.
    pub model: PathBuf,
    /// The prompt (the user's message when the model has a chat template).
    #[arg(long, short = 'p')]
    pub prompt: String,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Nucleus sampling: keep the most likely tokens up to this probability mass.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Seed of the sampler (the same seed gives the same text).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// A PEFT LoRA adapter folder (repeat for several).
    #[arg(long = "adapter", value_name = "DIR")]
    pub adapters: Vec<PathBuf>,
    /// A system message (chat models).
    #[arg(long)]
    pub system: Option<String>,
    /// Feed the prompt as it is, even when the tokenizer has a chat template.
    #[arg(long)]
    pub raw: bool,
    /// Keep generating past the end-of-sequence token.
    #[arg(long)]
    pub ignore_eos: bool,
    /// KV cache capacity in tokens [default: prompt + max tokens, at most the model's positions].
    #[arg(long, value_name = "TOKENS")]
    pub context: Option<usize>,
    /// Where to run: cpu, cuda (an NVIDIA GPU), cuda-sim (the GPU program on the SIMT interpreter: slow) or ref.
    #[arg(long, default_value = "cpu")]
    pub target: String,
    /// Threads for the cpu target [default: all available].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Print the prompt's token ids and the generated ids (after the text).
    #[arg(long)]
    pub show_ids: bool,
}

/// `kiln embed`.
#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A sentence-transformers folder (modules.json, 1_Pooling/, config.json,
    /// model.safetensors, tokenizer.json).
    pub model: PathBuf,
    /// A text to embed (repeat for several; they run as one batch).
    #[arg(long = "text", short = 't', required = true)]
    pub texts: Vec<String>,
    /// Print JSON: {"model", "dim", "embeddings": [{"text", "tokens", "embedding"}]}.
    #[arg(long)]
    pub json: bool,
    /// Where to run: cpu, cuda (an NVIDIA GPU), cuda-sim (the GPU program on the SIMT interpreter: slow) or ref.
    #[arg(long, default_value = "cpu")]
    pub target: String,
    /// Threads for the cpu target [default: all available].
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
}

fn target_of(name: &str) -> Result<Target, Error> {
    match Target::from_name(name) {
        Some(t) => Ok(t),
        None => Err(Error::Input(format!(
            "unknown target `{name}` (choose cpu, cuda, cuda-sim or ref)"
        ))),
    }
}

/// A spinner on stderr while `work` runs (hidden when stderr is not a terminal).
fn with_spinner<T>(message: String, work: impl FnOnce() -> Result<T, Error>) -> Result<T, Error> {
    let bar = super::spinner(&message);
    let out = work();
    bar.finish_and_clear();
    out
}

/// Runs `kiln generate`.
pub fn generate(args: &GenerateArgs) -> Result<i32, Error> {
    let target = target_of(&args.target)?;
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        return Err(Error::Input(format!(
            "--temperature {} must be ≥ 0",
            args.temperature
        )));
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        return Err(Error::Input(format!(
            "--top-p {} must be in (0, 1]",
            args.top_p
        )));
    }
    if args.max_tokens == 0 {
        return Err(Error::Input("--max-tokens must be at least 1".into()));
    }
    let model = with_spinner(format!("loading {}", args.model.display()), || {
        Model::load_with(
            &args.model,
            &LoadOptions {
                adapters: args.adapters.clone(),
            },
        )
    })?;
    let tokenizer = model.tokenizer()?;
    let chat = !args.raw && tokenizer.chat_template().is_some();
    let prompt_ids = if chat {
        let mut messages = Vec::new();
        if let Some(system) = &args.system {
            messages.push(ChatMessage::new("system", system.clone()));
        }
        messages.push(ChatMessage::new("user", args.prompt.clone()));
        tokenizer.encode_chat(&messages)?
    } else {
        tokenizer.encode(&args.prompt, true)?
    };
    if prompt_ids.is_empty() {
        return Err(Error::Input("the prompt encodes to no tokens".into()));
    }
    let Some(kiln_frontends::hf::ModelKind::Decoder(info)) = model.kind().cloned() else {
        return Err(Error::Input(format!(
            "`{}` is not a decoder (causal language model); `kiln embed` runs encoders",
            args.model.display()
        )));
    };
    let capacity = args
        .context
        .unwrap_or_else(|| (prompt_ids.len() + args.max_tokens).min(DEFAULT_MAX_CONTEXT))
        .min(info.max_positions);
    if prompt_ids.len() >= capacity {
        return Err(Error::Input(format!(
            "the prompt is {} tokens; the context holds {capacity} (the model's positions: {})",
            prompt_ids.len(),
            info.max_positions
        )));
    }
    let options = CompileOptions {
        threads: args.threads,
        ..CompileOptions::default()
    };
    let mut generator = with_spinner(
        format!("compiling {} for {target}", args.model.display()),
        || {
            let g = Generator::new(&model, &target, &options, capacity)?;
            g.prepare(prompt_ids.len())?;
            g.prepare(1)?;
            Ok(g)
        },
    )?;
    let sampling = if args.temperature == 0.0 {
        Sampling::Greedy
    } else {
        Sampling::Sample {
            temperature: args.temperature,
            top_p: args.top_p,
            seed: args.seed,
        }
    };
    let mut stop_tokens: Vec<u32> = tokenizer.eos_ids().to_vec();
    stop_tokens.extend(info.eos_token_ids.iter().copied());
    if args.ignore_eos {
        stop_tokens.clear();
    }
    let gen_options = GenerateOptions {
        max_tokens: args.max_tokens,
        sampling,
        stop_tokens: stop_tokens.clone(),
    };
    let mut stream = tokenizer.stream_with(true);
    let stdout = std::io::stdout();
    let mut failure: Option<Error> = None;
    let out = generator.generate(&prompt_ids, &gen_options, |token| {
        if stop_tokens.contains(&token) {
            return false;
        }
        match stream.push(token) {
            Ok(Some(piece)) => {
                let mut lock = stdout.lock();
                let _ = lock.write_all(piece.as_bytes());
                let _ = lock.flush();
                true
            }
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
        print!("{rest}");
    }
    println!();
    if args.show_ids {
        println!("prompt ids: {prompt_ids:?}");
        println!("generated ids: {:?}", out.tokens);
    }
    eprintln!(
        "prefill: {} tokens in {:.3} s ({:.1} tokens/s); decode: {} tokens in {:.3} s ({:.1} tokens/s){}",
        out.prompt_tokens,
        out.prefill.as_secs_f64(),
        out.prefill_tokens_per_s(),
        out.tokens.len().saturating_sub(1),
        out.decode.as_secs_f64(),
        out.decode_tokens_per_s(),
        if out.stopped { "; stopped at end of sequence" } else { "" }
    );
    Ok(0)
}

/// Runs `kiln embed`.
pub fn embed(args: &EmbedArgs) -> Result<i32, Error> {
    let target = target_of(&args.target)?;
    let model = Model::load(&args.model)?;
    let options = CompileOptions {
        threads: args.threads,
        ..CompileOptions::default()
    };
    let embedder = crate::embed::Embedder::new(&model, &target, &options)?;
    let texts: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let ids: Vec<Vec<u32>> = texts
        .iter()
        .map(|t| embedder.tokenize(t))
        .collect::<Result<_, _>>()?;
    let vectors = with_spinner(format!("embedding {} texts", texts.len()), || {
        embedder.embed_ids(&ids)
    })?;
    if args.json {
        let items: Vec<serde_json::Value> = texts
            .iter()
            .zip(&ids)
            .zip(&vectors)
            .map(|((t, i), v)| {
                serde_json::json!({
                    "text": t,
                    "tokens": i.len(),
                    "embedding": v,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "model": args.model.display().to_string(),
            "dim": embedder.dim(),
            "embeddings": items,
        });
        println!(
            "{}",
            serde_json::to_string(&doc).map_err(|e| Error::Output(e.to_string()))?
        );
    } else {
        for (t, v) in texts.iter().zip(&vectors) {
            let shown: Vec<String> = v.iter().map(|x| format!("{x:.6}")).collect();
            println!("{t}\t[{}]", shown.join(", "));
        }
    }
    Ok(0)
}
