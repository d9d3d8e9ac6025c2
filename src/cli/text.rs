//! `kiln generate` and `kiln embed`: text in, text or embeddings out.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use crate::generate::text::{TextJob, TextRequest};
use crate::{CompileOptions, Error, LoadOptions, Model, Target};

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
    let request = TextRequest {
        prompt: args.prompt.clone(),
        system: args.system.clone(),
        raw: args.raw,
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        ignore_eos: args.ignore_eos,
        context: args.context,
    };
    request
        .validate()
        .map_err(|e| Error::Input(format!("--{}", e.to_string().replace('_', "-"))))?;
    let model = with_spinner(format!("loading {}", args.model.display()), || {
        Model::load_with(
            &args.model,
            &LoadOptions {
                adapters: args.adapters.clone(),
            },
        )
    })?;
    let job = TextJob::new(&model, &request)?;
    let options = CompileOptions {
        threads: args.threads,
        ..CompileOptions::default()
    };
    let mut generator = with_spinner(
        format!("compiling {} for {target}", args.model.display()),
        || job.generator(&model, &target, &options),
    )?;
    let stdout = std::io::stdout();
    let out = job.run(&mut generator, |piece| {
        let mut lock = stdout.lock();
        let _ = lock.write_all(piece.as_bytes());
        let _ = lock.flush();
        true
    })?;
    println!();
    if args.show_ids {
        println!("prompt ids: {:?}", job.prompt_ids());
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
