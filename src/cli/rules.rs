//! `kiln rules`: list the rewrite rules (`list`) and run the soundness checker on
//! them (`check`): both sides of each rule instantiated on random shapes and values
//! and compared on the reference interpreter.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use kiln_passes::rules::{check_rule, CheckFailure, RuleBody, RuleSet};

use crate::Error;

/// Most values of a counterexample's variable printed.
const VALUES_SHOWN: usize = 8;
/// Most close matches suggested for an unknown rule name.
const SUGGESTIONS: usize = 5;

/// The `kiln rules` subcommands.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Print every rule with its theme and the algebra it states.
    List(RuleFiles),
    /// Check rules for soundness on random instances (reference interpreter); exit
    /// status 1 when any rule is unsound or cannot be instantiated.
    Check(CheckArgs),
}

/// Extra rule files, loaded after the built-in ones.
#[derive(Debug, Args)]
pub struct RuleFiles {
    /// Also load the rules of FILE (theme: the file's stem); repeatable.
    #[arg(long = "rules", value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

/// Arguments of `kiln rules check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The rules to check (default: all).
    pub rules: Vec<String>,
    /// Seeds per rule (each compares several instances).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub seeds: u64,
    /// The first seed (default: drawn from the clock, and printed so that a
    /// failure can be replayed).
    #[arg(long, value_name = "S")]
    pub seed: Option<u64>,
    /// Extra rule files.
    #[command(flatten)]
    pub files: RuleFiles,
}

/// Runs a `kiln rules` subcommand.
pub fn rules(command: &RulesCommand) -> Result<i32, Error> {
    match command {
        RulesCommand::List(files) => list(&load(&files.files)?),
        RulesCommand::Check(args) => check(args),
    }
}

/// The built-in rules plus those of `files`.
fn load(files: &[PathBuf]) -> Result<RuleSet, Error> {
    let mut set = RuleSet::builtin();
    for f in files {
        let text = std::fs::read_to_string(f)
            .map_err(|e| Error::Input(format!("--rules `{}`: {e}", f.display())))?;
        let theme = f
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("extra")
            .to_string();
        let name = f.display().to_string();
        set.load_from_str(&name, &theme, &text)
            .map_err(|e| Error::Input(format!("--rules: {e}")))?;
    }
    Ok(set)
}

fn list(set: &RuleSet) -> Result<i32, Error> {
    let theme_w = set.themes().iter().map(|t| t.len()).max().unwrap_or(0);
    let name_w = set.names().iter().map(|n| n.len()).max().unwrap_or(0);
    for r in &set.rules {
        let native = if matches!(r.body, RuleBody::Native(_)) {
            " (native)"
        } else {
            ""
        };
        println!(
            "{:theme_w$}  {:name_w$}  {}{native}",
            r.theme,
            r.name,
            r.doc.replace('\n', " ")
        );
    }
    Ok(0)
}

/// Levenshtein distance (characters).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Rule names close to `name`: containing it, or within a third of its length in
/// edits; closest first.
fn close_matches<'a>(name: &str, names: &[&'a str]) -> Vec<&'a str> {
    let limit = (name.chars().count() / 3).max(2);
    let mut v: Vec<(usize, &str)> = names
        .iter()
        .map(|n| (distance(name, n), *n))
        .filter(|(d, n)| *d <= limit || n.contains(name))
        .collect();
    v.sort();
    v.into_iter().take(SUGGESTIONS).map(|(_, n)| n).collect()
}

fn check(args: &CheckArgs) -> Result<i32, Error> {
    let set = load(&args.files.files)?;
    let names = set.names();
    for r in &args.rules {
        if set.get(r).is_none() {
            let close = close_matches(r, &names);
            let hint = if close.is_empty() {
                "; `kiln rules list` shows them all".to_string()
            } else {
                format!("; did you mean {}?", close.join(", "))
            };
            return Err(Error::Input(format!("no rule named `{r}`{hint}")));
        }
    }
    if args.seeds == 0 {
        return Err(Error::Input("--seeds must be at least 1".into()));
    }
    let base = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
    });
    let chosen: Vec<_> = if args.rules.is_empty() {
        set.rules.iter().collect()
    } else {
        args.rules.iter().filter_map(|r| set.get(r)).collect()
    };
    let name_w = chosen.iter().map(|r| r.name.len()).max().unwrap_or(0);
    let (mut ok, mut unsound, mut untested) = (0, 0, 0);
    for (i, rule) in chosen.iter().enumerate() {
        let first = base.wrapping_add(i as u64 * args.seeds);
        let seeds: Vec<u64> = (0..args.seeds).map(|k| first.wrapping_add(k)).collect();
        match check_rule(rule, &seeds) {
            Ok(r) => {
                ok += 1;
                println!(
                    "ok                  {:name_w$}  {} instances, e.g. {}",
                    rule.name, r.instances, r.example
                );
            }
            Err(CheckFailure::Unsound(u)) => {
                unsound += 1;
                println!(
                    "UNSOUND             {:name_w$}  seed {}: {}",
                    rule.name, u.seed, u.message
                );
                for (var, shape, values) in &u.bindings {
                    let more = if values.len() > VALUES_SHOWN {
                        ", …"
                    } else {
                        ""
                    };
                    let shown: Vec<String> = values
                        .iter()
                        .take(VALUES_SHOWN)
                        .map(|v| format!("{v:.4}"))
                        .collect();
                    println!("    {var}: {shape:?} = [{}{more}]", shown.join(", "));
                }
            }
            Err(CheckFailure::Untested { message, .. }) => {
                untested += 1;
                println!("cannot instantiate  {:name_w$}  {message}", rule.name);
            }
        }
    }
    println!(
        "{} rule{} checked with {} seed{} each from seed {base}: {ok} ok, {unsound} unsound, \
         {untested} cannot be instantiated",
        chosen.len(),
        if chosen.len() == 1 { "" } else { "s" },
        args.seeds,
        if args.seeds == 1 { "" } else { "s" },
    );
    Ok(if unsound + untested > 0 { 1 } else { 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_matches_prefer_small_edits() {
        let names = ["add-zero", "zero-add", "mul-one", "transpose-compose"];
        assert_eq!(close_matches("add-zeros", &names), vec!["add-zero"]);
        assert_eq!(
            close_matches("transpose", &names),
            vec!["transpose-compose"]
        );
        assert!(close_matches("qqqqqqqq", &names).is_empty());
    }
}
