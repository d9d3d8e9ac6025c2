//! `kiln explain`: what the optimizer did to a model, brick by brick (modelled cost
//! before → after, rules fired, fused regions and composite ops chosen) and phase
//! by phase (stop reason, e-graph sizes, iterations, time); `--json` prints the same
//! data; `--egraph-dot` writes the saturated e-graph as Graphviz for small models.
//! Last, the nodes the scheduled program leaves to the reference interpreter and
//! why ([`super::fallbacks`]; symbolic input dims bound by `--dim NAME=SIZE`).

use std::fmt::Write;
use std::path::PathBuf;

use clap::Args;
use kiln_passes::explain::{explain as explain_run, Explanation};

use super::compile::{optimize, pipeline, target_profile, DEFAULT_TARGET};
use super::fallbacks;
use crate::{io, Error};

/// Most e-nodes an e-graph may have to be written with `--egraph-dot`: Graphviz
/// layouts of larger graphs take minutes and are unreadable anyway.
pub const DOT_NODE_LIMIT: usize = 5_000;

/// Most rules listed on one brick's line; the rest are counted.
const RULES_SHOWN: usize = 6;

/// Arguments of `kiln explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The model (.onnx).
    pub model: PathBuf,
    /// The target the cost model prices for: h200, cpu (= cpu-default) or a
    /// profile file PATH.toml.
    #[arg(long, default_value = DEFAULT_TARGET, value_name = "h200|cpu|PATH.toml")]
    pub target: String,
    /// Print the report as JSON instead of text (the same data).
    #[arg(long)]
    pub json: bool,
    /// Also write the saturated e-graph as Graphviz to FILE.dot (refused above
    /// 5000 e-nodes: for small graphs and pass developers).
    #[arg(long, value_name = "FILE.dot")]
    pub egraph_dot: Option<PathBuf>,
    /// Size of a symbolic input dim, NAME=SIZE (repeatable): the optimized graph
    /// is scheduled for these shapes to report the nodes that run on the
    /// interpreter and why ("not scheduled" while a dim is unbound).
    #[arg(long = "dim", value_name = "NAME=SIZE")]
    pub dims: Vec<String>,
}

/// Runs `kiln explain`.
pub fn explain(args: &ExplainArgs) -> Result<i32, Error> {
    let dims = super::parse_dims(&args.dims)?;
    let profile = target_profile(&args.target)?;
    let c = optimize(&args.model, &pipeline(&[])?, &profile)?;
    if let Some(path) = &args.egraph_dot {
        let nodes = c.egraph.egraph.total_number_of_nodes();
        if nodes > DOT_NODE_LIMIT {
            return Err(Error::Input(format!(
                "--egraph-dot: the saturated e-graph has {nodes} e-nodes, over the limit of \
                 {DOT_NODE_LIMIT} for Graphviz output (use a smaller model)"
            )));
        }
        let dot = kiln_passes::explain::egraph_dot(&c.egraph.egraph);
        io::write_atomically(path, dot.as_bytes())?;
        eprintln!("wrote the e-graph ({nodes} e-nodes) to {}", path.display());
    }
    let e = explain_run(&c.source, &c.optimized, &c.report, &c.cost);
    let scheduling = fallbacks::schedule_for_dims(&c.optimized, &dims)?;
    if args.json {
        let json = |e: serde_json::Error| Error::Output(e.to_string());
        let mut value = serde_json::to_value(&e).map_err(json)?;
        value["host_fallbacks"] = serde_json::to_value(&scheduling).map_err(json)?;
        println!("{}", serde_json::to_string_pretty(&value).map_err(json)?);
    } else {
        print!("{}", render(&e));
        print!("\n{}", fallbacks::render(&scheduling));
    }
    Ok(0)
}

/// A count list `a×2, b×1` of at most `max` entries, most frequent first.
fn counts(map: &std::collections::BTreeMap<String, usize>, max: usize) -> String {
    let mut v: Vec<(&String, &usize)> = map.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut parts: Vec<String> = v
        .iter()
        .take(max)
        .map(|(k, n)| format!("{k}×{n}"))
        .collect();
    if v.len() > max {
        parts.push(format!("… {} more", v.len() - max));
    }
    parts.join(", ")
}

/// The text report.
pub fn render(e: &Explanation) -> String {
    let mut out = String::new();
    let speedup = if e.cost_after_us > 0.0 {
        format!(" ({:.2}× faster)", e.cost_before_us / e.cost_after_us)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "model `{}` on {}: modelled {:.1} µs → {:.1} µs{speedup}, {} → {} nodes",
        e.model, e.target, e.cost_before_us, e.cost_after_us, e.nodes_before, e.nodes_after
    );
    if let Some(why) = &e.fallback {
        let _ = writeln!(out, "note: {why}");
    }
    let name_w = e
        .bricks
        .iter()
        .map(|b| 2 * b.depth + b.name.chars().count())
        .max()
        .unwrap_or(0)
        .max("brick".len());
    let _ = writeln!(
        out,
        "\n{:name_w$}  {:9}  {:>11}  {:>11}  {:>9}",
        "brick", "kind", "before µs", "after µs", "nodes"
    );
    for b in &e.bricks {
        let name = format!("{}{}", "  ".repeat(b.depth), b.name);
        let _ = writeln!(
            out,
            "{name:name_w$}  {:9}  {:>11.2}  {:>11.2}  {:>4}→{:<4}",
            b.kind.as_deref().unwrap_or("-"),
            b.cost_before_us,
            b.cost_after_us,
            b.nodes_before,
            b.nodes_after
        );
        let indent = "  ".repeat(b.depth + 1);
        if !b.rules.is_empty() {
            let _ = writeln!(out, "{indent}rules: {}", counts(&b.rules, RULES_SHOWN));
        }
        if !b.chosen.is_empty() {
            let _ = writeln!(out, "{indent}chosen: {}", counts(&b.chosen, usize::MAX));
        }
    }
    let phase_w = e
        .phases
        .iter()
        .map(|p| p.name.len())
        .max()
        .unwrap_or(0)
        .max("phase".len());
    let stop_w = e
        .phases
        .iter()
        .map(|p| p.stop_reason.len())
        .max()
        .unwrap_or(0)
        .max("stop".len());
    let _ = writeln!(
        out,
        "\n{:phase_w$}  {:stop_w$}  {:>15}  {:>15}  {:>5}  {:>9}  {:>7}",
        "phase", "stop", "classes", "e-nodes", "iters", "time ms", "applied"
    );
    for p in &e.phases {
        let _ = writeln!(
            out,
            "{:phase_w$}  {:stop_w$}  {:>15}  {:>15}  {:>5}  {:>9.1}  {:>7}",
            p.name,
            p.stop_reason,
            format!("{}→{}", p.classes_before, p.classes_after),
            format!("{}→{}", p.nodes_before, p.nodes_after),
            p.iterations,
            p.time_ms,
            p.applied.values().sum::<usize>()
        );
    }
    let _ = writeln!(out, "\nfused bricks (kind: fused/all, what was chosen)");
    for (kind, c) in e.coverage() {
        let chosen: Vec<String> = c.chosen.iter().map(|(l, n)| format!("{l}×{n}")).collect();
        let _ = writeln!(
            out,
            "  {kind:<10} {:>4}/{:<4} {}",
            c.fused,
            c.bricks,
            chosen.join(", ")
        );
    }
    let (before, after) = e.bricks.iter().fold((0.0, 0.0), |(b, a), r| {
        (b + r.cost_before_us, a + r.cost_after_us)
    });
    let _ = writeln!(
        out,
        "\ntotal: bricks {before:.1} µs → {after:.1} µs (priced per node); \
         e-graph built in {:.1} ms, phases {:.1} ms, extraction {:.1} ms, run {:.1} ms",
        e.to_egraph_ms,
        e.phases.iter().map(|p| p.time_ms).sum::<f64>(),
        e.extract_ms,
        e.total_ms
    );
    out
}
