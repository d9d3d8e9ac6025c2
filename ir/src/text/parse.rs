//! Text → graph.
//!
//! Two passes: the first reads every statement (and numbers the values in order of
//! definition), the second resolves names and rebuilds the graph through the
//! builder API, so the ids come out as they were when the graph was printed.

use std::collections::HashMap;

use super::literal::parse_element;
use super::ParseError;
use crate::{Brick, BrickId, BrickKind, DType, Dim, Graph, Op, Shape, Tensor, TensorType, ValueId};

/// Parses text printed by [`super::print`] whose constants are all inline.
///
/// A `weight` reference fails with "missing weight `name`": use
/// [`parse_with_weights`] for those.
pub fn parse(text: &str) -> std::result::Result<Graph, ParseError> {
    parse_with_weights(text, &HashMap::new())
}

/// Parses text printed by [`super::print`], binding each `weight` constant to the
/// tensor of its value's name in `weights` (see [`super::weights`]).
pub fn parse_with_weights(
    text: &str,
    weights: &HashMap<String, Tensor>,
) -> std::result::Result<Graph, ParseError> {
    let mut p = Parser {
        src: text,
        pos: 0,
        weights,
    };
    p.file().map_err(|e| e.locate(text))
}

/// An error at a byte offset (turned into line and column at the end).
struct Error {
    pos: usize,
    message: String,
}

impl Error {
    fn locate(self, src: &str) -> ParseError {
        let pos = self.pos.min(src.len());
        let before = src.get(..pos).unwrap_or(src);
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        ParseError {
            line,
            column,
            message: self.message,
        }
    }
}

type Result<T> = std::result::Result<T, Error>;

/// A name used at a position.
struct Ref {
    name: String,
    pos: usize,
}

enum Stmt {
    Input {
        name: String,
        ty: TensorType,
    },
    Const {
        name: String,
        ty: TensorType,
        value: Tensor,
    },
    Brick {
        brick: Brick,
        parent_pos: usize,
    },
    Node {
        pos: usize,
        name: String,
        op: Op,
        outputs: Vec<(String, TensorType)>,
        inputs: Vec<Ref>,
        brick: Option<(BrickId, usize)>,
    },
    Output(Vec<Ref>),
    Inputs(Vec<Ref>),
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    weights: &'a HashMap<String, Tensor>,
}

impl<'a> Parser<'a> {
    // ---- the grammar ----

    fn file(&mut self) -> Result<Graph> {
        self.ws();
        self.keyword("graph")?;
        self.ws();
        let name = self.string("the graph name")?;
        self.ws();
        self.expect('{')?;
        let mut stmts = Vec::new();
        // Value name → (id, position of its definition).
        let mut ids: HashMap<String, (ValueId, usize)> = HashMap::new();
        let mut n_bricks = 0u32;
        let mut seen_inputs = false;
        loop {
            self.ws();
            let start = self.pos;
            match self.peek() {
                Some('}') => {
                    self.bump();
                    break;
                }
                None => return Err(self.err("unexpected end of text: missing `}`")),
                _ => {}
            }
            let stmt = self.stmt(n_bricks)?;
            let mut define = |name: &str, pos: usize| -> Result<()> {
                let id = ValueId(ids.len() as u32);
                if let Some(&(_, first)) = ids.get(name) {
                    let line = Error {
                        pos: first,
                        message: String::new(),
                    }
                    .locate(self.src)
                    .line;
                    return Err(Error {
                        pos,
                        message: format!("value `%{name}` is defined twice (first on line {line})"),
                    });
                }
                ids.insert(name.to_string(), (id, pos));
                Ok(())
            };
            match &stmt {
                Stmt::Input { name, .. } | Stmt::Const { name, .. } => define(name, start)?,
                Stmt::Node { outputs, .. } => {
                    for (name, _) in outputs {
                        define(name, start)?;
                    }
                }
                Stmt::Brick { .. } => n_bricks += 1,
                Stmt::Inputs(_) => {
                    if seen_inputs {
                        return Err(Error {
                            pos: start,
                            message: "`inputs` given twice".into(),
                        });
                    }
                    seen_inputs = true;
                }
                Stmt::Output(_) => {}
            }
            stmts.push(stmt);
        }
        self.ws();
        if self.pos < self.src.len() {
            return Err(self.err("unexpected text after the closing `}`"));
        }
        build(name, stmts, &ids, n_bricks)
    }

    fn stmt(&mut self, n_bricks: u32) -> Result<Stmt> {
        let start = self.pos;
        if self.peek() == Some('%') {
            return self.node(start);
        }
        let word = self.ident().unwrap_or("");
        match word {
            "_" => {
                self.pos = start;
                self.node(start)
            }
            "input" => {
                self.ws();
                let (name, ty) = self.value_decl()?;
                Ok(Stmt::Input { name, ty })
            }
            "const" => self.constant(),
            "brick" => self.brick(n_bricks),
            "output" => {
                self.ws();
                let mut list = vec![self.value_ref()?];
                while self.eat_ws(',') {
                    self.ws();
                    list.push(self.value_ref()?);
                }
                Ok(Stmt::Output(list))
            }
            "inputs" => {
                self.ws();
                self.expect('[')?;
                let list = self.ref_list(']')?;
                Ok(Stmt::Inputs(list))
            }
            _ => {
                self.pos = start;
                Err(self.err(format!(
                    "expected a statement (`input`, `const`, `brick`, `output`, `inputs` or a node), found {}",
                    self.found()
                )))
            }
        }
    }

    /// `%name: TYPE`.
    fn value_decl(&mut self) -> Result<(String, TensorType)> {
        let r = self.value_ref()?;
        self.ws();
        self.expect(':')?;
        self.ws();
        Ok((r.name, self.ty()?))
    }

    fn constant(&mut self) -> Result<Stmt> {
        self.ws();
        let name = self.value_ref()?.name;
        self.ws();
        self.expect(':')?;
        self.ws();
        let decl_pos = self.pos;
        let ty = self.ty()?;
        self.ws();
        self.expect('=')?;
        self.ws();
        // The tensor's own type when it differs from the value's.
        let save = self.pos;
        let own = match self.ident() {
            Some(w) if DType::from_name(w).is_some() => {
                self.pos = save;
                let t = self.ty()?;
                self.ws();
                Some((t, save))
            }
            _ => {
                self.pos = save;
                None
            }
        };
        let (tensor_ty, ty_pos) = own.unwrap_or((ty.clone(), decl_pos));
        let value_pos = self.pos;
        let w = self.ident();
        let value = if w == Some("weight") {
            let t = self.weights.get(&name).ok_or_else(|| Error {
                pos: value_pos,
                message: format!("missing weight `{name}` (parse with a weight map holding it)"),
            })?;
            if t.dtype() != tensor_ty.dtype
                || Some(t.shape().to_vec()) != tensor_ty.shape.as_known()
            {
                return Err(Error {
                    pos: value_pos,
                    message: format!(
                        "weight `{name}` is {} but the text declares {}",
                        super::print::ty(&TensorType::new(t.dtype(), t.ir_shape())),
                        super::print::ty(&tensor_ty)
                    ),
                });
            }
            t.clone()
        } else {
            self.pos = value_pos;
            let shape = tensor_ty.shape.as_known().ok_or_else(|| Error {
                pos: ty_pos,
                message: format!(
                    "constant `{name}` has dims that are not numbers in {}",
                    super::print::ty(&tensor_ty)
                ),
            })?;
            let numel = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .ok_or_else(|| Error {
                    pos: ty_pos,
                    message: "constant shape too large".into(),
                })?;
            self.literal(tensor_ty.dtype, shape, numel)?
        };
        Ok(Stmt::Const { name, ty, value })
    }

    /// `[e, ...]` or a bare element, `numel` of them.
    fn literal(&mut self, dtype: DType, shape: Vec<usize>, numel: usize) -> Result<Tensor> {
        let start = self.pos;
        let mut bytes = Vec::new();
        let mut count = 0usize;
        if self.eat('[') {
            self.ws();
            if !self.eat(']') {
                loop {
                    self.ws();
                    self.element(dtype, &mut bytes)?;
                    count += 1;
                    self.ws();
                    if self.eat(']') {
                        break;
                    }
                    self.expect(',')?;
                }
            }
        } else {
            self.element(dtype, &mut bytes)?;
            count = 1;
        }
        if count != numel {
            return Err(Error {
                pos: start,
                message: format!("{count} elements given, the shape {shape:?} holds {numel}"),
            });
        }
        Tensor::from_bytes(dtype, shape, bytes.into()).map_err(|e| Error {
            pos: start,
            message: e.to_string(),
        })
    }

    fn element(&mut self, dtype: DType, out: &mut Vec<u8>) -> Result<()> {
        let start = self.pos;
        self.take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'));
        if &self.src[start..self.pos] == "nan" && self.peek() == Some('(') {
            self.take_while(|c| c != ')' && c != ']' && c != ',' && c != '\n');
            self.eat(')');
        }
        let tok = &self.src[start..self.pos];
        if tok.is_empty() {
            return Err(self.err(format!(
                "expected a {dtype} element, found {}",
                self.found()
            )));
        }
        parse_element(dtype, tok, out).map_err(|message| Error {
            pos: start,
            message,
        })
    }

    /// `brick #N kind "name" [in #P]`.
    fn brick(&mut self, n_bricks: u32) -> Result<Stmt> {
        self.ws();
        let index_pos = self.pos;
        let index = self.brick_ref()?;
        if index.0 != n_bricks {
            return Err(Error {
                pos: index_pos,
                message: format!("brick #{} declared where #{n_bricks} is next", index.0),
            });
        }
        self.ws();
        let kind_pos = self.pos;
        let kind = self.ident().and_then(BrickKind::from_name).ok_or_else(|| Error {
            pos: kind_pos,
            message: "expected a brick kind (embedding, layer, attention, ffn, moe, router, expert, lora, norm, head or module)".into(),
        })?;
        self.ws();
        let name = self.string("the brick name")?;
        let save = self.pos;
        self.ws();
        let (parent, parent_pos) = if self.ident() == Some("in") {
            self.ws();
            let p = self.pos;
            (Some(self.brick_ref()?), p)
        } else {
            self.pos = save;
            (None, 0)
        };
        Ok(Stmt::Brick {
            brick: Brick { kind, name, parent },
            parent_pos,
        })
    }

    fn brick_ref(&mut self) -> Result<BrickId> {
        self.expect('#')?;
        let start = self.pos;
        self.take_while(|c| c.is_ascii_digit());
        self.src[start..self.pos]
            .parse::<u32>()
            .map(BrickId)
            .map_err(|_| Error {
                pos: start,
                message: "expected a brick number after `#`".into(),
            })
    }

    /// `%a: T, %b: T = Op(attrs)(%x, %y) @#B "name"` (or `_ = ...`).
    fn node(&mut self, pos: usize) -> Result<Stmt> {
        let mut outputs = Vec::new();
        if !self.eat('_') {
            loop {
                outputs.push(self.value_decl()?);
                if !self.eat_ws(',') {
                    break;
                }
                self.ws();
            }
        }
        self.ws();
        self.expect('=')?;
        self.ws();
        let op_pos = self.pos;
        let Some(_) = self.ident() else {
            return Err(self.err(format!("expected an op name, found {}", self.found())));
        };
        let mut op_end = self.pos;
        self.ws();
        if self.peek() != Some('(') {
            return Err(self.err(format!(
                "expected `(` and the operands of the op, found {}",
                self.found()
            )));
        }
        let group = self.pos;
        self.skip_group()?;
        let after = self.pos;
        self.ws();
        if self.peek() == Some('(') {
            // The first group held the attributes.
            op_end = after;
        } else {
            self.pos = group;
        }
        let op_src = &self.src[op_pos..op_end];
        let op = Op::from_text(op_src).map_err(|message| {
            let operands_like = self.src[group + 1..].trim_start().starts_with(['%', ')']);
            if op_end == after || operands_like {
                return Error {
                    pos: op_pos,
                    message,
                };
            }
            // The name alone is no op: the group after it must have been meant as
            // (malformed) attributes; show it, shortened.
            let mut shown: String = self.src[op_pos..after].chars().take(60).collect();
            if shown.len() < after - op_pos {
                shown.push_str("...");
            }
            Error {
                pos: op_pos,
                message: format!("unknown op or malformed attributes: `{shown}`"),
            }
        })?;
        self.expect('(')?;
        let inputs = self.ref_list(')')?;
        self.ws();
        let brick = if self.eat('@') {
            let p = self.pos;
            Some((self.brick_ref()?, p))
        } else {
            None
        };
        self.ws();
        let name = self.string("the node name")?;
        Ok(Stmt::Node {
            pos,
            name,
            op,
            outputs,
            inputs,
            brick,
        })
    }

    /// `%a, %b` up to `close` (consumed).
    fn ref_list(&mut self, close: char) -> Result<Vec<Ref>> {
        let mut list = Vec::new();
        self.ws();
        if self.eat(close) {
            return Ok(list);
        }
        loop {
            self.ws();
            list.push(self.value_ref()?);
            self.ws();
            if self.eat(close) {
                return Ok(list);
            }
            if !self.eat(',') {
                return Err(self.err(format!("expected `,` or `{close}`, found {}", self.found())));
            }
        }
    }

    /// `%name` or `%"name"`.
    fn value_ref(&mut self) -> Result<Ref> {
        let pos = self.pos;
        if !self.eat('%') {
            return Err(self.err(format!(
                "expected a value (`%name`), found {}",
                self.found()
            )));
        }
        let name = if self.peek() == Some('"') {
            self.string("a value name")?
        } else {
            let s = self.pos;
            self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
            if s == self.pos {
                return Err(self.err(format!(
                    "expected a value name after `%`, found {}",
                    self.found()
                )));
            }
            self.src[s..self.pos].to_string()
        };
        Ok(Ref { name, pos })
    }

    /// `f32[batch, 3, ?]`.
    fn ty(&mut self) -> Result<TensorType> {
        let pos = self.pos;
        let Some(dtype) = self.ident().and_then(DType::from_name) else {
            self.pos = pos;
            return Err(self.err(format!(
                "expected a dtype (f32, i64, bool, ...), found {}",
                self.found()
            )));
        };
        self.expect('[')?;
        let mut dims = Vec::new();
        self.ws();
        if !self.eat(']') {
            loop {
                self.ws();
                dims.push(self.dim()?);
                self.ws();
                if self.eat(']') {
                    break;
                }
                if !self.eat(',') {
                    return Err(self.err(format!("expected `,` or `]`, found {}", self.found())));
                }
            }
        }
        Ok(TensorType::new(dtype, Shape(dims)))
    }

    fn dim(&mut self) -> Result<Dim> {
        let pos = self.pos;
        match self.peek() {
            Some('?') => {
                self.bump();
                Ok(Dim::Any)
            }
            Some('"') => Ok(Dim::sym(&self.string("a dim name")?)),
            Some(c) if c.is_ascii_digit() => {
                self.take_while(|c| c.is_ascii_digit());
                self.src[pos..self.pos]
                    .parse()
                    .map(Dim::Known)
                    .map_err(|_| Error {
                        pos,
                        message: "dim too large".into(),
                    })
            }
            _ => match self.ident() {
                Some(s) => Ok(Dim::sym(s)),
                None => Err(self.err(format!(
                    "expected a dim (a number, a name or `?`), found {}",
                    self.found()
                ))),
            },
        }
    }

    // ---- lexical helpers ----

    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += c.len_utf8();
        }
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Eats `c` after optional whitespace; leaves the whitespace when `c` is absent.
    fn eat_ws(&mut self, c: char) -> bool {
        let save = self.pos;
        self.ws();
        if self.eat(c) {
            true
        } else {
            self.pos = save;
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<()> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.err(format!("expected `{c}`, found {}", self.found())))
        }
    }

    fn take_while(&mut self, f: impl Fn(char) -> bool) {
        while let Some(c) = self.peek() {
            if !f(c) {
                break;
            }
            self.pos += c.len_utf8();
        }
    }

    /// Whitespace and `//` comments.
    fn ws(&mut self) {
        loop {
            self.take_while(char::is_whitespace);
            if self.src[self.pos..].starts_with("//") {
                self.take_while(|c| c != '\n');
            } else {
                return;
            }
        }
    }

    /// `[A-Za-z_][A-Za-z0-9_]*`.
    fn ident(&mut self) -> Option<&'a str> {
        let src: &'a str = self.src;
        let start = self.pos;
        if !self
            .peek()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        {
            return None;
        }
        self.take_while(|c| c.is_ascii_alphanumeric() || c == '_');
        Some(&src[start..self.pos])
    }

    fn keyword(&mut self, k: &str) -> Result<()> {
        let start = self.pos;
        if self.ident() == Some(k) {
            Ok(())
        } else {
            self.pos = start;
            Err(self.err(format!("expected `{k}`, found {}", self.found())))
        }
    }

    /// A quoted string with the escapes [`super::print::quote`] writes.
    fn string(&mut self, what: &str) -> Result<String> {
        let start = self.pos;
        if !self.eat('"') {
            return Err(self.err(format!(
                "expected {what} (a quoted string), found {}",
                self.found()
            )));
        }
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(Error {
                    pos: start,
                    message: "unterminated string".into(),
                });
            };
            self.bump();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let esc = self.pos;
                    let e = self.peek();
                    self.bump();
                    match e {
                        Some('"') => out.push('"'),
                        Some('\\') => out.push('\\'),
                        Some('n') => out.push('\n'),
                        Some('r') => out.push('\r'),
                        Some('t') => out.push('\t'),
                        Some('u') => {
                            let bad = |p: usize| Error {
                                pos: p,
                                message: "bad `\\u{...}` escape".into(),
                            };
                            if !self.eat('{') {
                                return Err(bad(esc));
                            }
                            let s = self.pos;
                            self.take_while(|c| c.is_ascii_hexdigit());
                            let ch = u32::from_str_radix(&self.src[s..self.pos], 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| bad(esc))?;
                            if !self.eat('}') {
                                return Err(bad(esc));
                            }
                            out.push(ch);
                        }
                        _ => {
                            return Err(Error {
                                pos: esc,
                                message: "unknown escape in string".into(),
                            })
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// Skips a balanced `( ... )` group (RON attributes), strings included.
    fn skip_group(&mut self) -> Result<()> {
        let start = self.pos;
        let mut depth = 0usize;
        while let Some(c) = self.peek() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        self.bump();
                        return Ok(());
                    }
                }
                '"' | '\'' => {
                    self.bump();
                    while let Some(d) = self.peek() {
                        self.bump();
                        if d == '\\' {
                            self.bump();
                        } else if d == c {
                            break;
                        }
                    }
                    continue;
                }
                _ => {}
            }
            self.bump();
        }
        Err(Error {
            pos: start,
            message: "unclosed `(`".into(),
        })
    }

    /// What is at the cursor, for messages.
    fn found(&self) -> String {
        let rest = &self.src[self.pos..];
        match rest.chars().next() {
            None => "the end of the text".into(),
            Some(c) if c.is_ascii_alphanumeric() || c == '_' => {
                let w: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .take(40)
                    .collect();
                format!("`{w}`")
            }
            Some('\n') => "the end of the line".into(),
            Some(c) => format!("`{c}`"),
        }
    }

    fn err(&self, message: impl Into<String>) -> Error {
        Error {
            pos: self.pos,
            message: message.into(),
        }
    }
}

/// Second pass: names resolved, the graph rebuilt through the builder API.
fn build(
    name: String,
    stmts: Vec<Stmt>,
    ids: &HashMap<String, (ValueId, usize)>,
    n_bricks: u32,
) -> Result<Graph> {
    let resolve = |r: &Ref| -> Result<ValueId> {
        ids.get(&r.name).map(|&(id, _)| id).ok_or_else(|| Error {
            pos: r.pos,
            message: format!("unknown value `%{}`", r.name),
        })
    };
    let check_brick = |b: BrickId, pos: usize| -> Result<BrickId> {
        if b.0 < n_bricks {
            Ok(b)
        } else {
            Err(Error {
                pos,
                message: format!("unknown brick #{} (the graph has {n_bricks})", b.0),
            })
        }
    };
    let mut g = Graph::new(name);
    let mut inputs_order = None;
    for stmt in stmts {
        match stmt {
            Stmt::Input { name, ty } => {
                g.add_input(name, ty);
            }
            Stmt::Const { name, ty, value } => {
                let id = g.add_const(name, value);
                if g.value(id).ty != ty {
                    g.set_value_type(id, ty);
                }
            }
            Stmt::Brick { brick, parent_pos } => {
                if let Some(p) = brick.parent {
                    check_brick(p, parent_pos)?;
                }
                g.push_brick(brick);
            }
            Stmt::Node {
                pos,
                name,
                op,
                outputs,
                inputs,
                brick,
            } => {
                let inputs = inputs.iter().map(resolve).collect::<Result<Vec<_>>>()?;
                let brick = brick.map(|(b, p)| check_brick(b, p)).transpose()?;
                let (names, types): (Vec<String>, Vec<TensorType>) = outputs.into_iter().unzip();
                g.add_node_typed(name, op, inputs, &names, types, brick)
                    .map_err(|e| Error {
                        pos,
                        message: e.to_string(),
                    })?;
            }
            Stmt::Output(list) => {
                for r in &list {
                    let id = resolve(r)?;
                    g.outputs.push(id);
                }
            }
            Stmt::Inputs(list) => {
                inputs_order = Some(list.iter().map(resolve).collect::<Result<Vec<_>>>()?);
            }
        }
    }
    if let Some(order) = inputs_order {
        g.inputs = order;
    }
    Ok(g)
}
