//! Memory planning: one arena for all intermediate values, sized by liveness.
//!
//! Every value a node defines lives from its defining node to its last use (graph
//! outputs to the end of the run). Values whose lifetimes intersect must not
//! overlap in the arena; values that are never alive together may share bytes.
//! Graph inputs and constants are not placed: inputs are fed by the caller and
//! weights are mapped separately.
//!
//! The placement is greedy by size: the largest value first, each at the lowest
//! [`ARENA_ALIGN`]-aligned offset that does not overlap any already-placed value
//! with an intersecting lifetime. The plan also reports a lower bound (the peak of
//! the sum of live sizes over time) that no placement can beat.

use std::fmt;

use kiln_ir::{Graph, TensorType, ValueDef, ValueId};

/// Alignment of every offset in the arena, in bytes (a cache line; enough for any
/// vector load).
pub const ARENA_ALIGN: usize = 64;

/// The steps during which a value is alive, both ends included.
///
/// Step `i` is the run of node `i`; step `nodes.len()` is the end of the run, where
/// graph outputs are read back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifetime {
    /// The step of the defining node.
    pub start: usize,
    /// The last step that reads the value.
    pub end: usize,
}

impl Lifetime {
    /// Whether the two lifetimes share a step.
    pub fn intersects(&self, other: &Lifetime) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// Where each intermediate value lives in the arena.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Byte offset of each value in the arena, indexed by [`ValueId`]; `None` for
    /// values not placed in the arena (graph inputs and constants).
    pub offsets: Vec<Option<usize>>,
    /// Size in bytes of each placed value, indexed by [`ValueId`] (0 when not placed).
    pub sizes: Vec<usize>,
    /// Lifetime of each placed value, indexed by [`ValueId`].
    pub lifetimes: Vec<Option<Lifetime>>,
    /// Bytes the arena needs: the end of the highest placed value.
    pub arena_bytes: usize,
    /// The peak over steps of the sum of live sizes: no placement needs fewer bytes.
    pub lower_bound: usize,
}

impl MemoryPlan {
    /// The offset of `id` in the arena, if it is placed there.
    pub fn offset(&self, id: ValueId) -> Option<usize> {
        self.offsets.get(id.0 as usize).copied().flatten()
    }

    /// How many values are placed in the arena.
    pub fn placed(&self) -> usize {
        self.offsets.iter().filter(|o| o.is_some()).count()
    }

    /// `arena_bytes / lower_bound` (1 when both are 0): how far the placement is from
    /// the bound.
    pub fn ratio(&self) -> f64 {
        if self.lower_bound == 0 {
            1.0
        } else {
            self.arena_bytes as f64 / self.lower_bound as f64
        }
    }

    /// Bytes the arena would need with no reuse: the sum of all placed sizes.
    pub fn total_bytes(&self) -> usize {
        self.sizes.iter().sum()
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "memory plan: {} values, arena {} bytes, lower bound {} bytes (ratio {:.3}), {} bytes without reuse",
            self.placed(),
            self.arena_bytes,
            self.lower_bound,
            self.ratio(),
            self.total_bytes()
        )
    }
}

/// Why a graph could not be planned.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PlanError {
    /// The size function gave no size for a value placed in the arena.
    #[error("memory plan: no size known for value `{name}` (id {id})")]
    UnknownSize {
        /// The value's name.
        name: String,
        /// The value's index.
        id: u32,
    },
    /// A node reads a value that no earlier node, input or constant defines.
    #[error("memory plan: node `{node}` reads value `{name}` before it is defined")]
    UseBeforeDef {
        /// The reading node's name.
        node: String,
        /// The value's name.
        name: String,
    },
}

/// The size in bytes of a tensor of this type, when its shape is fully known.
pub fn type_size(ty: &TensorType) -> Option<usize> {
    ty.shape
        .numel()
        .and_then(|n| n.checked_mul(ty.dtype.size()))
}

/// Plans the arena with each value's size taken from its (fully known) type.
pub fn plan_from_types(graph: &Graph) -> Result<MemoryPlan, PlanError> {
    plan(graph, |id| type_size(&graph.value(id).ty))
}

/// Rounds `n` up to a multiple of [`ARENA_ALIGN`].
fn align_up(n: usize) -> usize {
    n.div_ceil(ARENA_ALIGN) * ARENA_ALIGN
}

/// Lifetimes of the values nodes define (`None` for inputs and constants).
fn lifetimes(graph: &Graph) -> Result<Vec<Option<Lifetime>>, PlanError> {
    let mut life: Vec<Option<Lifetime>> = vec![None; graph.values().len()];
    let mut defined: Vec<bool> = graph
        .values()
        .iter()
        .map(|v| !matches!(v.def, ValueDef::Node { .. }))
        .collect();
    for (step, node) in graph.nodes().iter().enumerate() {
        for &input in &node.inputs {
            if !defined[input.0 as usize] {
                return Err(PlanError::UseBeforeDef {
                    node: node.name.clone(),
                    name: graph.value(input).name.clone(),
                });
            }
            if let Some(l) = &mut life[input.0 as usize] {
                l.end = l.end.max(step);
            }
        }
        for &output in &node.outputs {
            defined[output.0 as usize] = true;
            // A value nobody reads still needs its bytes while its node writes it.
            life[output.0 as usize] = Some(Lifetime {
                start: step,
                end: step,
            });
        }
    }
    let end = graph.nodes().len();
    for &output in &graph.outputs {
        if let Some(l) = &mut life[output.0 as usize] {
            l.end = end;
        }
    }
    Ok(life)
}

/// The peak over steps of the sum of the sizes of the values alive at that step.
fn peak_live(lifetimes: &[Option<Lifetime>], sizes: &[usize], steps: usize) -> usize {
    // delta[t]: bytes becoming alive at t minus bytes dead after t - 1.
    let mut delta = vec![0i128; steps + 2];
    for (l, &size) in lifetimes.iter().zip(sizes) {
        if let Some(l) = l {
            delta[l.start] += size as i128;
            delta[l.end + 1] -= size as i128;
        }
    }
    let mut live = 0i128;
    let mut peak = 0i128;
    for d in delta {
        live += d;
        peak = peak.max(live);
    }
    peak as usize
}

/// The lowest aligned offset where `size` bytes fit between `busy` ranges
/// (`[start, end)` pairs, sorted by start).
fn lowest_fit(busy: &[(usize, usize)], size: usize) -> usize {
    let mut offset = 0;
    for &(start, end) in busy {
        if offset + size <= start {
            break;
        }
        offset = offset.max(align_up(end));
    }
    offset
}

/// Plans the arena for `graph`, with `size_of` giving each value's size in bytes
/// (`None` when unknown, which is an error for values placed in the arena).
///
/// Nodes must be in topological order (a [`Graph`] invariant).
pub fn plan(
    graph: &Graph,
    mut size_of: impl FnMut(ValueId) -> Option<usize>,
) -> Result<MemoryPlan, PlanError> {
    let lifetimes = lifetimes(graph)?;
    let n = graph.values().len();
    let mut sizes = vec![0usize; n];
    for (i, l) in lifetimes.iter().enumerate() {
        if l.is_some() {
            let id = ValueId(i as u32);
            sizes[i] = size_of(id).ok_or_else(|| PlanError::UnknownSize {
                name: graph.value(id).name.clone(),
                id: id.0,
            })?;
        }
    }
    let placement = place(&sizes, &lifetimes, graph.nodes().len());
    let (offsets, arena_bytes, lower_bound) = (
        placement.offsets,
        placement.arena_bytes,
        placement.lower_bound,
    );

    Ok(MemoryPlan {
        offsets,
        sizes,
        lifetimes,
        arena_bytes,
        lower_bound,
    })
}

/// Where [`place`] put each interval.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Byte offset of each interval that has a lifetime.
    pub offsets: Vec<Option<usize>>,
    /// Bytes the arena needs.
    pub arena_bytes: usize,
    /// The peak of live bytes over steps (no placement needs fewer).
    pub lower_bound: usize,
}

/// Places buffers of `sizes` bytes, alive during `lifetimes` (steps `0..=steps`),
/// in one arena: largest first, each at the lowest [`ARENA_ALIGN`]-aligned offset
/// clear of every placed buffer whose lifetime intersects its own.
pub fn place(sizes: &[usize], lifetimes: &[Option<Lifetime>], steps: usize) -> Placement {
    let n = sizes.len();
    let lower_bound = peak_live(lifetimes, sizes, steps);
    // Largest first; ties by start step then index, so plans are deterministic.
    let mut order: Vec<usize> = (0..n)
        .filter(|&i| lifetimes[i].is_some() && sizes[i] > 0)
        .collect();
    order.sort_by_key(|&i| {
        (
            std::cmp::Reverse(sizes[i]),
            lifetimes[i].map(|l| l.start),
            i,
        )
    });
    let mut offsets: Vec<Option<usize>> = lifetimes.iter().map(|l| l.map(|_| 0)).collect();
    let mut placed: Vec<usize> = Vec::with_capacity(order.len());
    let mut arena_bytes = 0;
    for &i in &order {
        let life = lifetimes[i].expect("only values with lifetimes are ordered");
        let mut busy: Vec<(usize, usize)> = placed
            .iter()
            .filter(|&&j| lifetimes[j].is_some_and(|l| l.intersects(&life)))
            .map(|&j| {
                let start = offsets[j].expect("placed values have offsets");
                (start, start + sizes[j])
            })
            .collect();
        busy.sort_unstable();
        let offset = lowest_fit(&busy, sizes[i]);
        offsets[i] = Some(offset);
        arena_bytes = arena_bytes.max(offset + sizes[i]);
        placed.push(i);
    }
    Placement {
        offsets,
        arena_bytes,
        lower_bound,
    }
}
