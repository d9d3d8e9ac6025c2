//! Rewrite rules as data: the `passes/rules/*.rules` files, their loader and their
//! soundness checker.
//!
//! A rule file holds `;;` comments and rules:
//!
//! ```text
//! ;; x + 0 = x (when 0 broadcasts into x's shape)
//! (rule add-zero (Add ?x ?z) ?x :if (is-zero ?z) (same-type-as-output ?x))
//! ```
//!
//! Patterns use the syntax of [`crate::KilnLang`]; conditions are the named
//! [`Cond`]s of [`conditions`]. The built-in files are compiled in, so the binary
//! needs no rule directory; [`RuleSet::load_from_str`] reads any other text.

pub mod check;
mod class_rule;
pub mod conditions;
pub mod fusion;
pub mod native;
pub mod native_bricks;
mod native_fold;
mod native_regions;

use std::fmt;

use egg::{ConditionalApplier, Pattern, Rewrite, Var};

pub use check::{check_all, check_rule, CheckFailure, CheckReport, Unsound};
pub use conditions::{Cond, CondCall, Guard};
pub use native::Native;
pub use native_fold::FOLD_MAX_ELEMENTS;

use crate::{KilnAnalysis, KilnLang};

/// The built-in rule files: (file name, theme, text).
pub const BUILTIN: [(&str, &str, &str); 5] = [
    (
        "layout.rules",
        "layout",
        include_str!("../../rules/layout.rules"),
    ),
    (
        "algebra.rules",
        "algebra",
        include_str!("../../rules/algebra.rules"),
    ),
    (
        "fusion.rules",
        "fusion",
        include_str!("../../rules/fusion.rules"),
    ),
    (
        "bricks.rules",
        "bricks",
        include_str!("../../rules/bricks.rules"),
    ),
    (
        "regions.rules",
        "regions",
        include_str!("../../rules/regions.rules"),
    ),
];

/// One rule of a rule file.
#[derive(Clone, Debug)]
pub struct Rule {
    /// The rule's name (unique in a [`RuleSet`]).
    pub name: String,
    /// The theme (the file's stem: `layout`, `algebra`...).
    pub theme: String,
    /// The file it came from.
    pub file: String,
    /// The line its `(rule` starts on (1-based).
    pub line: usize,
    /// The comment above it (its algebra), without `;;`.
    pub doc: String,
    /// What it does.
    pub body: RuleBody,
}

/// What a rule does.
// A rule set holds tens of rules: the size of the small variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum RuleBody {
    /// A pattern rule: `(rule NAME LHS RHS :if ...)`.
    Pattern {
        /// What it matches.
        lhs: Pattern<KilnLang>,
        /// What it rewrites to.
        rhs: Pattern<KilnLang>,
        /// Its conditions (all must hold).
        conditions: Vec<CondCall>,
    },
    /// A rule implemented in Rust: `(native NAME)`.
    Native(Native),
}

impl Rule {
    /// The `egg` rewrite of this rule.
    pub fn rewrite(&self) -> Rewrite<KilnLang, KilnAnalysis> {
        let (lhs, rhs, conditions) = match &self.body {
            RuleBody::Native(n) => return n.rewrite(&self.name),
            RuleBody::Pattern {
                lhs,
                rhs,
                conditions,
            } => (lhs, rhs, conditions),
        };
        let r = if conditions.is_empty() {
            Rewrite::new(self.name.as_str(), lhs.clone(), rhs.clone())
        } else {
            Rewrite::new(
                self.name.as_str(),
                lhs.clone(),
                ConditionalApplier {
                    condition: Guard(conditions.clone()),
                    applier: rhs.clone(),
                },
            )
        };
        r.expect("the loader checked the rule's variables")
    }
}

/// A syntax or meaning error in a rule file, located by file, line and rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadError {
    /// The file.
    pub file: String,
    /// The line (1-based).
    pub line: usize,
    /// The rule's name, when it got that far.
    pub rule: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.line)?;
        if let Some(r) = &self.rule {
            write!(f, "rule `{r}`: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for LoadError {}

/// A set of rules, in file order.
#[derive(Clone, Debug, Default)]
pub struct RuleSet {
    /// The rules.
    pub rules: Vec<Rule>,
}

impl RuleSet {
    /// The built-in rules of `passes/rules/` (compiled in).
    pub fn builtin() -> RuleSet {
        let mut set = RuleSet::default();
        for (file, theme, text) in BUILTIN {
            set.load_from_str(file, theme, text)
                .unwrap_or_else(|e| panic!("built-in rules: {e}"));
        }
        set
    }

    /// Parses `text` (named `file`, theme `theme`) and adds its rules.
    pub fn load_from_str(&mut self, file: &str, theme: &str, text: &str) -> Result<(), LoadError> {
        let err = |line, rule: Option<&str>, message: String| LoadError {
            file: file.to_string(),
            line,
            rule: rule.map(str::to_string),
            message,
        };
        let mut doc: Vec<String> = vec![];
        for sexp in parse_sexps(text).map_err(|(line, m)| err(line, None, m))? {
            let (line, items) = match sexp {
                Sexp::Comment(c) => {
                    doc.push(c);
                    continue;
                }
                Sexp::Blank => {
                    doc.clear();
                    continue;
                }
                Sexp::List(line, items) => (line, items),
                Sexp::Atom(line, a) => return Err(err(line, None, format!("stray `{a}`"))),
            };
            let head = items.first().and_then(Sexp::atom);
            if head != Some("rule") && head != Some("native") {
                return Err(err(
                    line,
                    None,
                    "expected `(rule NAME LHS RHS ...)` or `(native NAME)`".into(),
                ));
            }
            let name = items
                .get(1)
                .and_then(Sexp::atom)
                .ok_or_else(|| err(line, None, "the rule has no name".into()))?
                .to_string();
            let e = |m: String| err(line, Some(&name), m);
            if self.rules.iter().any(|r| r.name == name) {
                return Err(e("a rule of this name exists already".into()));
            }
            if doc.is_empty() {
                return Err(e("no `;;` comment stating its algebra above it".into()));
            }
            if head == Some("native") {
                let native = Native::from_name(&name)
                    .ok_or_else(|| e("no native rule of this name in native.rs".into()))?;
                if items.len() > 2 {
                    return Err(e("`(native NAME)` takes nothing else".into()));
                }
                self.rules.push(Rule {
                    name,
                    theme: theme.to_string(),
                    file: file.to_string(),
                    line,
                    doc: doc.join("\n"),
                    body: RuleBody::Native(native),
                });
                doc.clear();
                continue;
            }
            let (Some(lhs), Some(rhs)) = (items.get(2), items.get(3)) else {
                return Err(e("expected a left and a right pattern".into()));
            };
            let pattern = |s: &Sexp, side: &str| {
                s.to_string()
                    .parse::<Pattern<KilnLang>>()
                    .map_err(|m| e(format!("{side} pattern: {m}")))
            };
            let (lhs, rhs) = (pattern(lhs, "left")?, pattern(rhs, "right")?);
            let mut conditions = vec![];
            match items.get(4) {
                None => {}
                Some(s) if s.atom() == Some(":if") => {
                    for c in &items[5..] {
                        conditions.push(parse_cond(c).map_err(&e)?);
                    }
                }
                Some(s) => return Err(e(format!("expected `:if`, found `{s}`"))),
            }
            let bound = lhs.vars();
            for v in rhs
                .vars()
                .iter()
                .chain(conditions.iter().flat_map(|c| &c.args))
            {
                if !bound.contains(v) {
                    return Err(e(format!("{v} is not bound by the left pattern")));
                }
            }
            self.rules.push(Rule {
                name,
                theme: theme.to_string(),
                file: file.to_string(),
                line,
                doc: doc.join("\n"),
                body: RuleBody::Pattern {
                    lhs,
                    rhs,
                    conditions,
                },
            });
            doc.clear();
        }
        Ok(())
    }

    /// The rule named `name`.
    pub fn get(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.name == name)
    }

    /// The rules' names, in order.
    pub fn names(&self) -> Vec<&str> {
        self.rules.iter().map(|r| r.name.as_str()).collect()
    }

    /// The themes, in order of first appearance.
    pub fn themes(&self) -> Vec<&str> {
        let mut t: Vec<&str> = vec![];
        for r in &self.rules {
            if !t.contains(&r.theme.as_str()) {
                t.push(&r.theme);
            }
        }
        t
    }

    /// The rules of one theme.
    pub fn theme(&self, theme: &str) -> RuleSet {
        RuleSet {
            rules: self
                .rules
                .iter()
                .filter(|r| r.theme == theme)
                .cloned()
                .collect(),
        }
    }

    /// The `egg` rewrites of every rule.
    pub fn rewrites(&self) -> Vec<Rewrite<KilnLang, KilnAnalysis>> {
        self.rules.iter().map(Rule::rewrite).collect()
    }
}

/// Parses `(NAME ?var ...)`.
fn parse_cond(s: &Sexp) -> Result<CondCall, String> {
    let Sexp::List(_, items) = s else {
        return Err(format!(
            "expected a condition `(NAME ?var ...)`, found `{s}`"
        ));
    };
    let name = items.first().and_then(Sexp::atom).unwrap_or("");
    let cond = Cond::from_name(name).ok_or_else(|| format!("unknown condition `{name}`"))?;
    let args = items[1..]
        .iter()
        .map(|a| {
            a.atom()
                .and_then(|a| a.parse::<Var>().ok())
                .ok_or_else(|| format!("condition `{name}`: `{a}` is not a variable"))
        })
        .collect::<Result<Vec<Var>, String>>()?;
    if args.len() != cond.arity() {
        return Err(format!(
            "condition `{name}` takes {} variable(s), given {}",
            cond.arity(),
            args.len()
        ));
    }
    Ok(CondCall { cond, args })
}

/// A top-level item of a rule file, or a nested s-expression.
#[derive(Clone, Debug)]
enum Sexp {
    /// An atom, with its line.
    Atom(usize, String),
    /// A list, with the line it opens on.
    List(usize, Vec<Sexp>),
    /// A `;;` comment line (top level only).
    Comment(String),
    /// A blank line (top level only): ends a comment block.
    Blank,
}

impl Sexp {
    fn atom(&self) -> Option<&str> {
        match self {
            Sexp::Atom(_, a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for Sexp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Sexp::Atom(_, a) => f.write_str(a),
            Sexp::List(_, items) => {
                f.write_str("(")?;
                for (i, s) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(" ")?;
                    }
                    write!(f, "{s}")?;
                }
                f.write_str(")")
            }
            Sexp::Comment(c) => write!(f, ";;{c}"),
            Sexp::Blank => Ok(()),
        }
    }
}

/// Reads a rule file into top-level items; errors carry the line.
fn parse_sexps(text: &str) -> Result<Vec<Sexp>, (usize, String)> {
    let mut out = vec![];
    // Open lists: (line, items).
    let mut stack: Vec<(usize, Vec<Sexp>)> = vec![];
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let trimmed = raw.trim();
        if stack.is_empty() {
            if trimmed.is_empty() {
                out.push(Sexp::Blank);
                continue;
            }
            if let Some(c) = trimmed.strip_prefix(";;") {
                out.push(Sexp::Comment(c.trim().to_string()));
                continue;
            }
        }
        let mut chars = raw.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            match c {
                ';' => break,
                c if c.is_whitespace() => {}
                '(' => stack.push((line, vec![])),
                ')' => {
                    let (l, items) = stack.pop().ok_or((line, "unbalanced `)`".to_string()))?;
                    let list = Sexp::List(l, items);
                    match stack.last_mut() {
                        Some((_, parent)) => parent.push(list),
                        None => out.push(list),
                    }
                }
                '"' => {
                    let mut end = None;
                    for (j, d) in chars.by_ref() {
                        if d == '"' {
                            end = Some(j);
                            break;
                        }
                    }
                    let end = end.ok_or((line, "unterminated string".to_string()))?;
                    let atom = Sexp::Atom(line, raw[at..=end].to_string());
                    match stack.last_mut() {
                        Some((_, parent)) => parent.push(atom),
                        None => out.push(atom),
                    }
                }
                _ => {
                    let mut end = at + c.len_utf8();
                    while let Some(&(j, d)) = chars.peek() {
                        if d.is_whitespace() || d == '(' || d == ')' || d == ';' {
                            break;
                        }
                        end = j + d.len_utf8();
                        chars.next();
                    }
                    let atom = Sexp::Atom(line, raw[at..end].to_string());
                    match stack.last_mut() {
                        Some((_, parent)) => parent.push(atom),
                        None => out.push(atom),
                    }
                }
            }
        }
    }
    if let Some((line, _)) = stack.first() {
        return Err((*line, "unclosed `(`".to_string()));
    }
    Ok(out)
}
