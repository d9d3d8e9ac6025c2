//! The e-graph language of kiln graphs.
//!
//! One generic variant carries every IR op ([`OpKey`]): rules name ops by their
//! text form, so a new op in `ir` needs no wiring here. Leaves are graph inputs and
//! constants, both named by their value name ([`Name`]); constant tensors live in a side
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
//!
//! **Keys are owned, not interned.** Op texts (a whole fused region's included) and
//! value names are reference-counted strings held by the e-nodes that use them, so
//! they are freed with the e-graph. egg's global `Symbol` table never frees: a
//! process compiling many models would grow by every op text and value name it
//! ever saw. Only rule names (from the builtin rule files) are `Symbol`s.

use std::collections::hash_map::DefaultHasher;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use egg::{Id, Language};
use kiln_ir::Op;

/// A value name as an e-node leaf (a graph input or a constant): shared text,
/// compared and hashed by content, freed with the last e-node or table holding it.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl Name {
    /// The name's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Name {
    fn from(s: &str) -> Name {
        Name(Arc::from(s))
    }
}

impl From<String> for Name {
    fn from(s: String) -> Name {
        Name(Arc::from(s))
    }
}

impl From<&String> for Name {
    fn from(s: &String) -> Name {
        Name::from(s.as_str())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// An IR op as an e-node operator: compared, hashed and ordered by its canonical
/// text (attributes included, so `f32` attributes compare by their printed form),
/// with the parsed op kept alongside for type inference. The text's hash is
/// computed once (a region's text is long and e-nodes are hashed often); clones
/// share the text, so equal keys usually compare by pointer.
#[derive(Clone)]
pub struct OpKey {
    text: Arc<str>,
    hash: u64,
    op: Arc<Op>,
}

impl OpKey {
    /// The key of `op`.
    pub fn new(op: &Op) -> OpKey {
        let text: Arc<str> = Arc::from(canonical_text(op));
        // A fixed-key hasher: the hash, hence e-graph iteration, is the same in
        // every run.
        let mut h = DefaultHasher::new();
        text.hash(&mut h);
        OpKey {
            text,
            hash: h.finish(),
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
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// The op's text without spaces: `Transpose(perm:[1,0])`.
fn canonical_text(op: &Op) -> String {
    op.to_text().chars().filter(|c| *c != ' ').collect()
}

impl PartialEq for OpKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.text, &other.text) || (self.hash == other.hash && self.text == other.text)
    }
}
impl Eq for OpKey {}
impl Hash for OpKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash)
    }
}
impl PartialOrd for OpKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for OpKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        if Arc::ptr_eq(&self.text, &other.text) {
            return std::cmp::Ordering::Equal;
        }
        self.text.cmp(&other.text)
    }
}
impl fmt::Debug for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
impl fmt::Display for OpKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &*self.text;
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
    Input(Name),
    /// A constant, by value name (its tensor is in the analysis' side table).
    Const(Name),
}

/// What tells e-nodes apart before their children are compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum KilnDiscriminant {
    /// An op, by canonical text.
    Op(OpKey),
    /// A projection, by index.
    Proj(usize),
    /// An input, by name.
    Input(Name),
    /// A constant, by name.
    Const(Name),
}

impl Language for KilnLang {
    type Discriminant = KilnDiscriminant;

    fn discriminant(&self) -> KilnDiscriminant {
        match self {
            KilnLang::Op(k, _) => KilnDiscriminant::Op(k.clone()),
            KilnLang::Proj(i, _) => KilnDiscriminant::Proj(*i),
            KilnLang::Input(s) => KilnDiscriminant::Input(s.clone()),
            KilnLang::Const(s) => KilnDiscriminant::Const(s.clone()),
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
            return Ok(KilnLang::Input(Name::from(name)));
        }
        if let Some(name) = op.strip_prefix("const:") {
            leaf(op)?;
            return Ok(KilnLang::Const(Name::from(name)));
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
