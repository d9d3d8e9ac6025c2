//! The soundness checker: instantiates both sides of a rule as small graphs and
//! compares them under the reference interpreter.
//!
//! For each seed it draws instances until [`INSTANCES`] are accepted (or
//! [`MAX_TRIES`] are drawn): every pattern variable gets a random f32 shape (rank
//! 1–4, dims drawn from a pool of two sizes in 1–5, so that matmul and broadcast
//! dims often agree) and random values in [-1, 1]; variables a condition needs as
//! constants get the constant it describes (zeros, ones, a reshape target with the
//! right element count). An instance counts when the left side type-checks and the
//! rule really fires on it: the left graph is put in an e-graph and the rule's
//! pattern and conditions are matched there, so the conditions' own code decides.
//! Both sides are then evaluated and compared (`|a - b| <= 1e-5 · max(1, |a|, |b|)`).

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use egg::{ENodeOrVar, Id, Language, Pattern, RecExpr, Searcher, Var};
use kiln_ir::op::LayoutOp;
use kiln_ir::{DType, Graph, Op, Shape, Tensor, TensorType, ValueId};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::conditions::CondCall;
use super::conditions::{Cond, ConstKind, Guard};
use super::{Native, Rule, RuleBody, RuleSet};
use crate::{to_egraph, KilnLang};

/// Instances compared per seed.
pub const INSTANCES: usize = 4;
/// Instances drawn per seed before giving up.
pub const MAX_TRIES: usize = 4000;
/// Relative tolerance of the comparison (f32).
pub const RTOL: f64 = 1e-5;

/// What a successful check covered.
#[derive(Clone, Debug)]
pub struct CheckReport {
    /// The rule.
    pub rule: String,
    /// The seeds used.
    pub seeds: Vec<u64>,
    /// Instances compared.
    pub instances: usize,
    /// The variable shapes of the first instance, e.g. `?x: [2, 3]`.
    pub example: String,
}

/// A counterexample: the two sides of a rule disagree.
#[derive(Clone, Debug)]
pub struct Unsound {
    /// The rule.
    pub rule: String,
    /// The seed that found it.
    pub seed: u64,
    /// Each variable's shape and values.
    pub bindings: Vec<(String, Vec<usize>, Vec<f64>)>,
    /// How the sides differ.
    pub message: String,
}

/// Why a rule failed the check.
#[derive(Clone, Debug)]
pub enum CheckFailure {
    /// The sides disagree.
    Unsound(Unsound),
    /// No instance on which the rule fires was found (or a pattern uses a form the
    /// checker cannot build).
    Untested {
        /// The rule.
        rule: String,
        /// The seeds tried.
        seeds: Vec<u64>,
        /// Why.
        message: String,
    },
}

impl CheckFailure {
    /// The rule's name.
    pub fn rule(&self) -> &str {
        match self {
            CheckFailure::Unsound(u) => &u.rule,
            CheckFailure::Untested { rule, .. } => rule,
        }
    }
}

impl fmt::Display for Unsound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rule `{}` is unsound (seed {}): {}",
            self.rule, self.seed, self.message
        )?;
        for (v, shape, vals) in &self.bindings {
            writeln!(f, "  {v}: {shape:?} = {vals:?}")?;
        }
        Ok(())
    }
}

impl fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CheckFailure::Unsound(u) => write!(f, "{u}"),
            CheckFailure::Untested {
                rule,
                seeds,
                message,
            } => write!(f, "rule `{rule}` untested (seeds {seeds:?}): {message}"),
        }
    }
}

/// Checks every rule with one fresh seed each (reported in the results).
pub fn check_all(set: &RuleSet) -> Vec<Result<CheckReport, CheckFailure>> {
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    set.rules
        .iter()
        .enumerate()
        .map(|(i, r)| check_rule(r, &[base.wrapping_add(i as u64)]))
        .collect()
}

/// Checks `rule` on [`INSTANCES`] random instances per seed.
pub fn check_rule(rule: &Rule, seeds: &[u64]) -> Result<CheckReport, CheckFailure> {
    let untested = |message: String| CheckFailure::Untested {
        rule: rule.name.clone(),
        seeds: seeds.to_vec(),
        message,
    };
    let mut instances = 0;
    let mut example = String::new();
    for &seed in seeds {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut found = 0;
        let mut last_reason = String::from("no instance type-checks");
        for _ in 0..MAX_TRIES {
            match instance(rule, &mut rng) {
                Outcome::Skip(reason) => last_reason = reason,
                Outcome::Unsupported(m) => return Err(untested(m)),
                Outcome::Agree(shapes) => {
                    if example.is_empty() {
                        example = shapes;
                    }
                    found += 1;
                    if found == INSTANCES {
                        break;
                    }
                }
                Outcome::Disagree(bindings, message) => {
                    return Err(CheckFailure::Unsound(Unsound {
                        rule: rule.name.clone(),
                        seed,
                        bindings,
                        message,
                    }))
                }
            }
        }
        if found == 0 {
            return Err(untested(format!(
                "no instance in {MAX_TRIES} tries ({last_reason})"
            )));
        }
        instances += found;
    }
    Ok(CheckReport {
        rule: rule.name.clone(),
        seeds: seeds.to_vec(),
        instances,
        example,
    })
}

enum Outcome {
    Skip(String),
    Unsupported(String),
    Agree(String),
    Disagree(Vec<(String, Vec<usize>, Vec<f64>)>, String),
}

/// A variable's value: an input or a constant.
struct Binding {
    tensor: Tensor,
    constant: bool,
}

fn instance(rule: &Rule, rng: &mut StdRng) -> Outcome {
    match &rule.body {
        RuleBody::Pattern {
            lhs,
            rhs,
            conditions,
        } => try_instance(lhs, rhs, conditions, rng),
        RuleBody::Native(n) => native_instance(rule, *n, rng),
    }
}

/// Runs a native rule on its own instance graph, extracts the program that uses the
/// rule's new e-nodes wherever it can ([`PreferNew`]: a rewrite need not be smaller,
/// e.g. QKV concatenation) and compares it with the instance; the rule must have
/// fired (the extracted program differs from the instance).
fn native_instance(rule: &Rule, native: Native, rng: &mut StdRng) -> Outcome {
    let g = native.instance(rng);
    let mut model = to_egraph(&g);
    let old: Vec<KilnLang> = model
        .egraph
        .classes()
        .flat_map(|c| c.nodes.iter().cloned())
        .collect();
    let rewrites = [rule.rewrite()];
    let runner = egg::Runner::default()
        .with_iter_limit(4)
        .with_egraph(std::mem::take(&mut model.egraph))
        .run(&rewrites);
    model.egraph = runner.egraph;
    model.roots = model.roots.iter().map(|&r| model.egraph.find(r)).collect();
    let old: std::collections::HashSet<KilnLang> = old
        .into_iter()
        .map(|n| n.map_children(|k| model.egraph.find(k)))
        .collect();
    let prefer_new = PreferNew {
        egraph: &model.egraph,
        old: &old,
    };
    let out = match crate::extract_with(&model, prefer_new) {
        Ok(out) => out,
        Err(e) => return Outcome::Unsupported(format!("extraction failed: {e}")),
    };
    let mut bindings = BTreeMap::new();
    let x = g.inputs.iter().map(|&v| {
        let dims = g.value(v).ty.shape.as_known().expect("known input");
        let n: usize = dims.iter().product();
        let t = Tensor::from_vec(
            dims,
            (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        );
        (g.value(v).name.clone(), t)
    });
    let inputs: Vec<(String, Tensor)> = x.collect();
    for (name, t) in &inputs {
        bindings.insert(
            format!("?{name}").parse::<Var>().expect("a variable"),
            Binding {
                tensor: t.clone(),
                constant: false,
            },
        );
    }
    let ops = |g: &Graph| {
        g.nodes()
            .iter()
            .map(|n| n.op.to_text())
            .collect::<Vec<_>>()
            .join(" → ")
    };
    let described = format!("{} rewritten to {}", ops(&g), ops(&out));
    if kiln_ir::text::print(&out) == kiln_ir::text::print(&g) {
        return Outcome::Disagree(
            describe(&bindings),
            format!("the rule did not fire: {described}"),
        );
    }
    compare(&g, &out, &inputs, &bindings, &described)
}

/// Tree cost that prefers e-nodes a rule added: an op e-node of the instance costs
/// 1, a new one 1/100 (positive, so extraction never picks a cycle); leaves cost
/// nothing (tree cost would count a shared leaf once per use).
struct PreferNew<'a> {
    egraph: &'a crate::KilnEGraph,
    old: &'a std::collections::HashSet<KilnLang>,
}

impl egg::CostFunction<KilnLang> for PreferNew<'_> {
    type Cost = f64;

    fn cost<C>(&mut self, enode: &KilnLang, mut costs: C) -> f64
    where
        C: FnMut(Id) -> f64,
    {
        let canon = enode.clone().map_children(|k| self.egraph.find(k));
        let own = if enode.is_leaf() {
            0.0
        } else if self.old.contains(&canon) {
            1.0
        } else {
            0.01
        };
        enode.children().iter().fold(own, |acc, &c| acc + costs(c))
    }
}

fn describe(bindings: &BTreeMap<Var, Binding>) -> Vec<(String, Vec<usize>, Vec<f64>)> {
    bindings
        .iter()
        .map(|(v, b)| {
            (
                v.to_string(),
                b.tensor.shape().to_vec(),
                b.tensor.to_f64_vec(),
            )
        })
        .collect()
}

/// Evaluates both graphs on `inputs` and compares their first outputs.
fn compare(
    lhs: &Graph,
    rhs: &Graph,
    inputs: &[(String, Tensor)],
    bindings: &BTreeMap<Var, Binding>,
    context: &str,
) -> Outcome {
    let run = |g: &Graph| kiln_ir::interp::run(g, inputs).map_err(|e| e.to_string());
    let (a, b) = match (run(lhs), run(rhs)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) => return Outcome::Skip(format!("the left side fails to run: {e}")),
        (_, Err(e)) => {
            return Outcome::Disagree(
                describe(bindings),
                format!("the right side fails to run: {e} ({context})"),
            )
        }
    };
    let (a, b) = (&a[0], &b[0]);
    if a.shape() != b.shape() || a.dtype() != b.dtype() {
        return Outcome::Disagree(
            describe(bindings),
            format!(
                "left gives {:?} {:?}, right gives {:?} {:?} ({context})",
                a.dtype(),
                a.shape(),
                b.dtype(),
                b.shape()
            ),
        );
    }
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    for (i, (p, q)) in x.iter().zip(&y).enumerate() {
        let bad = (p - q).abs() > RTOL * 1f64.max(p.abs()).max(q.abs());
        if bad && !(p.is_nan() && q.is_nan()) {
            return Outcome::Disagree(
                describe(bindings),
                format!("element {i}: left {p}, right {q} (left {x:?}, right {y:?}) ({context})"),
            );
        }
    }
    let shapes: Vec<String> = bindings
        .iter()
        .map(|(v, b)| format!("{v}: {:?}", b.tensor.shape()))
        .collect();
    let mut s = shapes.join(", ");
    if !context.is_empty() {
        s = format!("{s} ({context})");
    }
    Outcome::Agree(s)
}

fn try_instance(
    lhs_pat: &Pattern<KilnLang>,
    rhs_pat: &Pattern<KilnLang>,
    conditions: &[CondCall],
    rng: &mut StdRng,
) -> Outcome {
    let lhs_ast = lhs_pat.ast.as_ref();
    let mut kinds: HashMap<Var, ConstKind> = HashMap::new();
    for c in conditions {
        for (i, v) in c.args.iter().enumerate() {
            if let Some(k) = c.cond.const_kind(i) {
                kinds.insert(*v, k);
            }
        }
    }
    // A variable read as a control operand (a reshape's target shape) is a
    // constant drawn when the instance is built, not random data.
    for n in lhs_ast {
        if let ENodeOrVar::ENode(KilnLang::Op(key, ch)) = n {
            for j in key.op().shape_operands() {
                if let Some(ENodeOrVar::Var(v)) = ch.get(j).map(|&c| &lhs_ast[usize::from(c)]) {
                    kinds.insert(*v, ConstKind::ShapeTarget);
                }
            }
        }
    }
    let pool = [rng.random_range(1..=5usize), rng.random_range(1..=5usize)];
    let base_rank = rng.random_range(1..=4usize);
    let mut shapes: BTreeMap<Var, Vec<usize>> = BTreeMap::new();
    for v in lhs_pat.vars() {
        let rank = if rng.random_bool(0.7) {
            base_rank
        } else {
            rng.random_range(1..=4usize)
        };
        let dims = (0..rank).map(|_| pool[rng.random_range(0..2)]).collect();
        shapes.insert(v, dims);
    }
    for c in conditions {
        if c.cond == Cond::SameType && rng.random_bool(0.8) {
            let s = shapes[&c.args[0]].clone();
            shapes.insert(c.args[1], s);
        }
    }
    let mut bindings: BTreeMap<Var, Binding> = BTreeMap::new();
    for (v, dims) in &shapes {
        let kind = kinds.get(v).copied();
        let dims = match kind {
            Some(ConstKind::Scalar) if rng.random_bool(0.5) => vec![],
            Some(ConstKind::Scalar) => vec![1],
            _ => dims.clone(),
        };
        let n: usize = dims.iter().product();
        let values: Vec<f32> = match kind {
            Some(ConstKind::ShapeTarget) => continue,
            Some(ConstKind::Zeros) => vec![0.0; n],
            Some(ConstKind::Ones) => vec![1.0; n],
            _ => (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
        };
        bindings.insert(
            *v,
            Binding {
                tensor: Tensor::from_vec(dims, values),
                constant: kind.is_some(),
            },
        );
    }
    let lhs = match build(&lhs_pat.ast, &mut bindings, rng) {
        Ok(g) => g,
        Err(Build::Unsupported(m)) => return Outcome::Unsupported(m),
        Err(Build::Ill(m)) => return Outcome::Skip(m),
    };
    // Does the rule fire here? Match its pattern and conditions in the e-graph.
    let model = to_egraph(&lhs);
    let root = model.roots[0];
    let guard = Guard(conditions.to_vec());
    let fires = lhs_pat.search_eclass(&model.egraph, root).is_some_and(|m| {
        m.substs
            .iter()
            .any(|s| guard.holds(&model.egraph, m.eclass, s))
    });
    if !fires {
        return Outcome::Skip("the conditions never hold".into());
    }
    let rhs = match build(&rhs_pat.ast, &mut bindings, rng) {
        Ok(g) => g,
        Err(Build::Unsupported(m)) => return Outcome::Unsupported(m),
        Err(Build::Ill(m)) => {
            return Outcome::Disagree(
                describe(&bindings),
                format!("the right side is ill-typed: {m}"),
            )
        }
    };
    let inputs: Vec<(String, Tensor)> = bindings
        .iter()
        .filter(|(_, b)| !b.constant)
        .map(|(v, b)| (var_name(*v), b.tensor.clone()))
        .collect();
    compare(&lhs, &rhs, &inputs, &bindings, "")
}

enum Build {
    /// The instance does not type-check: draw another.
    Ill(String),
    /// The pattern has a form the checker cannot build.
    Unsupported(String),
}

fn var_name(v: Var) -> String {
    v.to_string().trim_start_matches('?').to_string()
}

/// Builds the graph of a pattern with the variables bound as in `bindings` (reshape
/// targets are bound on first use).
fn build(
    ast: &RecExpr<ENodeOrVar<KilnLang>>,
    bindings: &mut BTreeMap<Var, Binding>,
    rng: &mut StdRng,
) -> Result<Graph, Build> {
    let mut g = Graph::new("rule");
    let mut vars: HashMap<Var, ValueId> = HashMap::new();
    for (v, b) in bindings.iter() {
        if !b.constant {
            let ty = TensorType::new(DType::F32, Shape::known(b.tensor.shape()));
            vars.insert(*v, g.add_input(var_name(*v), ty));
        }
    }
    let nodes = ast.as_ref();
    let mut values: Vec<Option<ValueId>> = Vec::with_capacity(nodes.len());
    for (i, n) in nodes.iter().enumerate() {
        let value = match n {
            ENodeOrVar::Var(v) => match (vars.get(v), bindings.get(v)) {
                (Some(&id), _) => Some(id),
                (None, Some(b)) => {
                    let id = g.add_const(var_name(*v), b.tensor.clone());
                    vars.insert(*v, id);
                    Some(id)
                }
                (None, None) => None,
            },
            ENodeOrVar::ENode(KilnLang::Op(key, children)) => {
                let mut inputs = Vec::with_capacity(children.len());
                for (j, c) in children.iter().enumerate() {
                    let c = usize::from(*c);
                    let id = match (values[c], &nodes[c]) {
                        (Some(id), _) => id,
                        (None, ENodeOrVar::Var(v)) if key.op().shape_operands().contains(&j) => {
                            let data = inputs
                                .first()
                                .and_then(|&x: &ValueId| g.value(x).ty.shape.as_known());
                            let t = control_value(key.op(), data, rng)?;
                            bindings.insert(
                                *v,
                                Binding {
                                    tensor: t.clone(),
                                    constant: true,
                                },
                            );
                            let id = g.add_const(var_name(*v), t);
                            vars.insert(*v, id);
                            id
                        }
                        _ => return Err(Build::Unsupported("an unbound variable".into())),
                    };
                    inputs.push(id);
                }
                let out = g
                    .add_node(
                        format!("n{i}"),
                        key.op().clone(),
                        inputs,
                        &[format!("v{i}")],
                        None,
                    )
                    .map_err(|e| Build::Ill(e.to_string()))?;
                Some(out[0])
            }
            ENodeOrVar::ENode(other) => {
                return Err(Build::Unsupported(format!(
                    "the checker builds ops and variables only, not `{other}` ({} operands)",
                    other.children().len()
                )))
            }
        };
        values.push(value);
    }
    let out = values
        .last()
        .copied()
        .flatten()
        .ok_or_else(|| Build::Unsupported("a pattern that is a bare variable".into()))?;
    g.outputs = vec![out];
    Ok(g)
}

/// A random reshape target (`i64`, no zero) with `numel` elements, sometimes with a
/// `-1`.
/// A value for a control operand of `op` ([`Op::shape_operands`]) whose data
/// operand has dims `data`: a reshape's target keeps the element count. Other
/// control operands the checker cannot draw (yet).
fn control_value(op: &Op, data: Option<Vec<usize>>, rng: &mut StdRng) -> Result<Tensor, Build> {
    match op {
        Op::Layout(LayoutOp::Reshape { .. }) => {
            let dims = data.ok_or_else(|| Build::Ill("reshape of an unknown shape".into()))?;
            Ok(shape_target(dims.iter().product(), rng))
        }
        other => Err(Build::Unsupported(format!(
            "a variable as a control operand of {}",
            other.name()
        ))),
    }
}

/// A random target shape of `numel` elements (one dim `-1` at times).
fn shape_target(numel: usize, rng: &mut StdRng) -> Tensor {
    let rank = rng.random_range(1..=4usize);
    let mut rest = numel;
    let mut dims: Vec<i64> = vec![];
    for _ in 1..rank {
        let divisors: Vec<usize> = (1..=rest).filter(|&d| rest.is_multiple_of(d)).collect();
        let d = divisors[rng.random_range(0..divisors.len())];
        dims.push(d as i64);
        rest /= d;
    }
    dims.push(rest as i64);
    if rng.random_bool(0.3) {
        let i = rng.random_range(0..dims.len());
        dims[i] = -1;
    }
    let n = dims.len();
    Tensor::from_vec(vec![n], dims)
}
