//! Graph → text.

use std::fmt::Write;

use super::literal::format_elements;
use super::PrintOptions;
use crate::{Dim, Graph, Node, Op, Tensor, TensorType, ValueDef, ValueId};

/// The text form of `graph` (see [the module docs](super)), constants of at most
/// [`super::DEFAULT_MAX_INLINE`] elements inline.
pub fn print(graph: &Graph) -> String {
    print_with(graph, &PrintOptions::default())
}

/// The text form of `graph` with these options. Never fails, even on an ill-formed
/// graph: a reference to a missing value prints as `%!N` (which does not parse).
pub fn print_with(graph: &Graph, options: &PrintOptions) -> String {
    let mut p = Printer {
        g: graph,
        opts: options,
        out: String::new(),
    };
    p.graph();
    p.out
}

struct Printer<'a> {
    g: &'a Graph,
    opts: &'a PrintOptions,
    out: String,
}

impl Printer<'_> {
    fn graph(&mut self) {
        let g = self.g;
        let _ = writeln!(self.out, "graph {} {{", quote(&g.name));
        // Inputs and constants first, then the bricks, then the rest in value order
        // (value order is definition order, so parsing rebuilds the same ids).
        let values = g.values();
        let lead = values
            .iter()
            .position(|v| matches!(v.def, ValueDef::Node { .. }))
            .unwrap_or(values.len());
        for i in 0..lead {
            self.value(i);
        }
        for (i, b) in g.bricks.iter().enumerate() {
            let _ = write!(self.out, "  brick #{i} {} {}", b.kind, quote(&b.name));
            if let Some(p) = b.parent {
                let _ = write!(self.out, " in #{}", p.0);
            }
            self.out.push('\n');
        }
        let mut printed = vec![false; g.nodes().len()];
        for (i, v) in values.iter().enumerate().skip(lead) {
            let ValueDef::Node { node, .. } = v.def else {
                self.value(i);
                continue;
            };
            let n = node.0 as usize;
            if n >= printed.len() {
                let _ = writeln!(
                    self.out,
                    "  // value {} is defined by missing node {n}",
                    self.value_ref(ValueId(i as u32))
                );
                continue;
            }
            if printed[n] {
                continue;
            }
            // A node prints once, at its first output, after the nodes before it
            // that have no outputs.
            for (k, before) in g.nodes().iter().enumerate().take(n) {
                if !printed[k] && before.outputs.is_empty() {
                    printed[k] = true;
                    self.node(before);
                }
            }
            printed[n] = true;
            self.node(&g.nodes()[n]);
        }
        for (k, done) in printed.iter().enumerate() {
            if !done {
                self.node(&g.nodes()[k]);
            }
        }
        let declared: Vec<ValueId> = (0..values.len())
            .filter(|&i| values[i].def == ValueDef::Input)
            .map(|i| ValueId(i as u32))
            .collect();
        if g.inputs != declared {
            let list = self.value_list(&g.inputs);
            let _ = writeln!(self.out, "  inputs [{list}]");
        }
        if !g.outputs.is_empty() {
            let list = self.value_list(&g.outputs);
            let _ = writeln!(self.out, "  output {list}");
        }
        self.out.push_str("}\n");
    }

    /// An input or constant definition.
    fn value(&mut self, i: usize) {
        let v = &self.g.values()[i];
        let name = self.value_ref(ValueId(i as u32));
        match &v.def {
            ValueDef::Input => {
                let _ = writeln!(self.out, "  input {name}: {}", ty(&v.ty));
            }
            ValueDef::Const(t) => {
                let _ = write!(self.out, "  const {name}: {} = ", ty(&v.ty));
                if Some(t.shape().to_vec()) != v.ty.shape.as_known() || t.dtype() != v.ty.dtype {
                    let own = TensorType::new(t.dtype(), t.ir_shape());
                    let _ = write!(self.out, "{} ", ty(&own));
                }
                if t.numel() <= self.opts.max_inline {
                    self.out.push_str(&literal(t));
                } else {
                    self.out.push_str("weight");
                }
                self.out.push('\n');
            }
            ValueDef::Node { .. } => {}
        }
    }

    fn node(&mut self, n: &Node) {
        self.out.push_str("  ");
        if n.outputs.is_empty() {
            self.out.push('_');
        }
        for (k, &o) in n.outputs.iter().enumerate() {
            if k > 0 {
                self.out.push_str(", ");
            }
            let r = self.value_ref(o);
            self.out.push_str(&r);
            if let Some(v) = self.g.values().get(o.0 as usize) {
                let _ = write!(self.out, ": {}", ty(&v.ty));
            }
        }
        let inputs = self.value_list(&n.inputs);
        let _ = write!(self.out, " = {}({inputs})", op_text(&n.op));
        if let Some(b) = n.brick {
            let _ = write!(self.out, " @#{}", b.0);
        }
        let _ = writeln!(self.out, " {}", quote(&n.name));
    }

    fn value_ref(&self, id: ValueId) -> String {
        match self.g.values().get(id.0 as usize) {
            Some(v) => value_name(&v.name),
            None => format!("%!{}", id.0),
        }
    }

    fn value_list(&self, ids: &[ValueId]) -> String {
        ids.iter()
            .map(|&i| self.value_ref(i))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `%name`, quoted unless the name is made of letters, digits and `_`.
fn value_name(name: &str) -> String {
    let plain = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("%{name}")
    } else {
        format!("%{}", quote(name))
    }
}

/// True for names that print bare where an identifier is expected (symbolic dims).
pub(super) fn is_ident(s: &str) -> bool {
    let mut cs = s.chars();
    cs.next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && cs.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A string literal with `\"`, `\\`, `\n`, `\r`, `\t` and `\u{..}` escapes.
pub(super) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `f32[batch, 64]`.
pub(super) fn ty(t: &TensorType) -> String {
    let dims: Vec<String> = t
        .shape
        .0
        .iter()
        .map(|d| match d {
            Dim::Known(n) => n.to_string(),
            Dim::Sym(s) if is_ident(s) => s.to_string(),
            Dim::Sym(s) => quote(s),
            Dim::Any => "?".into(),
        })
        .collect();
    format!("{}[{}]", t.dtype, dims.join(", "))
}

/// `[1, 2, 3]`, or the bare element of a scalar.
fn literal(t: &Tensor) -> String {
    let elems = format_elements(t);
    if t.rank() == 0 && elems.len() == 1 {
        return elems.into_iter().next().unwrap_or_default();
    }
    format!("[{}]", elems.join(", "))
}

/// The op and its attributes on one line: `TopK(axis: 1, largest: true, sorted: true)`.
pub(super) fn op_text(op: &Op) -> String {
    tidy_floats(&op.to_text())
}

/// Rewrites RON's positional floats (`0.000000000001`, `100000000000000000000.0`)
/// with an exponent (`1e-12`, `1e20`) when that is shorter to read. Purely textual:
/// the decimal value, hence the parsed float, is unchanged.
fn tidy_floats(ron: &str) -> String {
    let b = ron.as_bytes();
    let mut out = String::with_capacity(ron.len());
    let mut i = 0;
    let mut in_str = false;
    let mut escaped = false;
    while i < b.len() {
        let c = b[i];
        if in_str {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_str = false;
            }
        } else if c == b'"' {
            in_str = true;
        } else if c.is_ascii_digit()
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b'.'))
        {
            let end = (i..b.len())
                .find(|&j| !(b[j].is_ascii_digit() || b[j] == b'.'))
                .unwrap_or(b.len());
            let tok = &ron[i..end];
            let next_is_word = end < b.len() && (b[end].is_ascii_alphabetic() || b[end] == b'_');
            match tok.split_once('.') {
                Some((int, frac)) if !next_is_word && !frac.contains('.') => {
                    out.push_str(&scientific(int, frac).unwrap_or_else(|| tok.to_string()));
                }
                _ => out.push_str(tok),
            }
            i = end;
            continue;
        }
        // Copy one whole (possibly multi-byte) character.
        let ch_len = ron[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&ron[i..i + ch_len]);
        i += ch_len;
    }
    out
}

/// `int.frac` as `d[.ddd]eN` when its decimal exponent is below -4 or above 15.
fn scientific(int: &str, frac: &str) -> Option<String> {
    let digits = format!("{int}{frac}");
    let first = digits.find(|c: char| c != '0')?;
    let sig = digits[first..].trim_end_matches('0');
    let exp = int.len() as i64 - 1 - first as i64;
    if (-4..=15).contains(&exp) {
        return None;
    }
    let (head, tail) = sig.split_at(1);
    Some(if tail.is_empty() {
        format!("{head}e{exp}")
    } else {
        format!("{head}.{tail}e{exp}")
    })
}

#[cfg(test)]
mod tests {
    use super::tidy_floats;

    #[test]
    fn positional_floats_get_exponents_when_long() {
        let cases = [
            (
                "LayerNorm(axis: 2, epsilon: 0.000000000001)",
                "LayerNorm(axis: 2, epsilon: 1e-12)",
            ),
            (
                "X(a: 0.00001, b: 0.0001, c: 1.5, d: 100000000000000000000.0)",
                "X(a: 1e-5, b: 0.0001, c: 1.5, d: 1e20)",
            ),
            (
                "X(a: -0.000000012345, b: [0.0, 3.0], c: \"0.0000001\", d: F32)",
                "X(a: -1.2345e-8, b: [0.0, 3.0], c: \"0.0000001\", d: F32)",
            ),
            ("X(é: 0.000001)", "X(é: 1e-6)"),
        ];
        for (ron, want) in cases {
            assert_eq!(tidy_floats(ron), want);
        }
    }
}
