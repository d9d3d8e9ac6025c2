//! The e-graph language of kiln graphs.
//!
//! One generic variant carries every IR op ([`OpKey`]): rules name ops by their
//! text form, so a new op in `ir` needs no wiring here. Leaves are graph inputs and
//! constants, both named by their value name; constant tensors live in a side
//! table ([`crate::KilnAnalysis::consts`]) and are never hashed into the e-graph.
//!
//! Pattern syntax (what [`std::fmt::Display`] prints and [`egg::FromOp`] reads):
//!
//! - an op is its text form with spaces removed and parentheses written as braces,
//!   so that it is one s-expression atom: `(MatMul ?a ?b)`,
//!   `(Transpose{perm:[1,0]} ?x)`, `(Softmax{axis:-1} ?x)`; the exact text of
//!   [`kiln_ir::Op::to_text`] is accepted too when quoted: `("Transpose(perm: [1, 0])" ?x)`;
//! - output `i` of a multi-output node: `(proj1 ?n)`;
//! - graph input `x`: `input:x`; constant `w`: `const:w`.
//!
//! **Bricks are not nodes.** Brick membership is kept per e-class in the analysis
//! data ([`crate::Origin`]), not as `(brick NAME x)` markers: markers would sit
//! between every producer and consumer at brick boundaries, so every rule would have
//! to look through them (and rules such as QKV concatenation cross brick
//! boundaries), and they would add an e-node per boundary value. Extraction puts a
//! node in the brick of the e-class it computes.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use egg::{Id, Language, Symbol};
use kiln_ir::Op;

/// An IR op as an e-node operator: compared, hashed and ordered by its canonical
/// text (attributes included, so `f32` attributes compare by their printed form),
/// with the parsed op kept alongside for type inference.
#[derive(Clone)]
pub struct OpKey {
    text: Symbol,
    op: Arc<Op>,
}

impl OpKey {
    /// The key of `op`.
    pub fn new(op: &Op) -> OpKey {
        OpKey {
            text: Symbol::from(canonical_text(op)),
            op: Arc::new(op.clone()),
        }
    }

    /// Parses the pattern form (`Transpose{perm:[1,0]}`) or the IR text form.
    pub fn parse(s: &str) -> Result<OpKey, String> {
        let text: String = s
            .chars()
            .map(|c| match c {
                '{' => '(',
                '}' => ')',
                c => c,
            })
            .collect();
        Op::from_text(&text).map(|op| OpKey::new(&op))
    }

    /// The op.
    pub fn op(&self) -> &Op {
        &self.op
    }

    /// The canonical text (RON without spaces), the key's identity.
    pub fn text(&self) -> Symbol {
        self.text
    }
}

/// The op's text without spaces: `Transpose(perm:[1,0])`.
fn canonical_text(op: &Op) -> String {
    op.to_text().chars().filter(|c| *c != ' ').collect()
}

impl PartialEq for OpKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}
impl Eq for OpKey {}
impl Hash for OpKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.hash(state)
    }
}
impl PartialOrd for OpKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OpKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.text.as_str().cmp(other.text.as_str())
    }
}
impl fmt::Debug for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl fmt::Display for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.text.as_str();
        if t.contains(['{', '}']) {
            write!(f, "\"{}\"", self.op.to_text())
        } else {
            let s: String = t
                .chars()
                .map(|c| match c {
                    '(' => '{',
                    ')' => '}',
                    c => c,
                })
                .collect();
            f.write_str(&s)
        }
    }
}

/// An e-node of a kiln graph.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KilnLang {
    /// An op applied to its operands; as a value it is the op's output 0.
    Op(OpKey, Vec<Id>),
    /// Output `index` of a multi-output node.
    Proj(usize, [Id; 1]),
    /// A graph input, by name.
    Input(Symbol),
    /// A constant, by value name (its tensor is in the analysis' side table).
    Const(Symbol),
}

/// What tells e-nodes apart before their children are compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KilnDiscriminant {
    /// An op, by canonical text.
    Op(Symbol),
    /// A projection, by index.
    Proj(usize),
    /// An input, by name.
    Input(Symbol),
    /// A constant, by name.
    Const(Symbol),
}

impl Language for KilnLang {
    type Discriminant = KilnDiscriminant;

    fn discriminant(&self) -> KilnDiscriminant {
        match self {
            KilnLang::Op(k, _) => KilnDiscriminant::Op(k.text),
            KilnLang::Proj(i, _) => KilnDiscriminant::Proj(*i),
            KilnLang::Input(s) => KilnDiscriminant::Input(*s),
            KilnLang::Const(s) => KilnDiscriminant::Const(*s),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        match (self, other) {
            (KilnLang::Op(a, x), KilnLang::Op(b, y)) => a == b && x.len() == y.len(),
            (KilnLang::Proj(a, _), KilnLang::Proj(b, _)) => a == b,
            (KilnLang::Input(a), KilnLang::Input(b)) => a == b,
            (KilnLang::Const(a), KilnLang::Const(b)) => a == b,
            _ => false,
        }
    }

    fn children(&self) -> &[Id] {
        match self {
            KilnLang::Op(_, c) => c,
            KilnLang::Proj(_, c) => c,
            KilnLang::Input(_) | KilnLang::Const(_) => &[],
        }
    }

    fn children_mut(&mut self) -> &mut [Id] {
        match self {
            KilnLang::Op(_, c) => c,
            KilnLang::Proj(_, c) => c,
            KilnLang::Input(_) | KilnLang::Const(_) => &mut [],
        }
    }
}

impl fmt::Display for KilnLang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KilnLang::Op(k, _) => write!(f, "{k}"),
            KilnLang::Proj(i, _) => write!(f, "proj{i}"),
            KilnLang::Input(s) => write!(f, "input:{s}"),
            KilnLang::Const(s) => write!(f, "const:{s}"),
        }
    }
}

impl egg::FromOp for KilnLang {
    type Error = String;

    fn from_op(op: &str, children: Vec<Id>) -> Result<Self, String> {
        let leaf = |what: &str| {
            if children.is_empty() {
                Ok(())
            } else {
                Err(format!("`{what}` takes no operands"))
            }
        };
        if let Some(name) = op.strip_prefix("input:") {
            leaf(op)?;
            return Ok(KilnLang::Input(Symbol::from(name)));
        }
        if let Some(name) = op.strip_prefix("const:") {
            leaf(op)?;
            return Ok(KilnLang::Const(Symbol::from(name)));
        }
        if let Some(i) = op
            .strip_prefix("proj")
            .and_then(|i| i.parse::<usize>().ok())
        {
            let [c]: [Id; 1] = children
                .try_into()
                .map_err(|_| format!("`{op}` takes one operand"))?;
            return Ok(KilnLang::Proj(i, [c]));
        }
        Ok(KilnLang::Op(OpKey::parse(op)?, children))
    }
}
