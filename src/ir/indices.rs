//! Whole-number indices: which values are indices by construction, and the range each `int`
//! input must lie in because some `one_hot` or gather reads it.
//!
//! Invariant: an index read by a gather or a `one_hot` is an `int` input, an `argmax` or a
//! whole constant, possibly through views (the checker refuses anything else); so checking
//! every `int` input's values against its smallest [`IndexLimit`] when data is bound checks
//! every index the compiled code will read.

use super::graph::{Graph, NodeId};
use super::op::Op;
use super::shape::Dim;

/// Where a whole-number value comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexSource {
    /// The `int` input with this index: its values are checked when data is bound.
    Input(u32),
    /// An `argmax` or a whole constant ≥ 0: whole by construction.
    Computed,
}

/// What reads an `int` input's values as indices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IndexUse {
    /// A `one_hot` (or `cross_entropy`) of this many classes.
    OneHot,
    /// A gather along an axis of this length.
    Gather,
}

/// The range an `int` input's values must lie in: `0..len`, because `by` reads them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexLimit {
    pub len: u64,
    pub by: IndexUse,
}

impl IndexLimit {
    /// Why `v`, a whole number ≥ 0, is not an index for input `name`, if it is not.
    pub fn problem(self, v: f64, name: &str) -> Option<String> {
        if v < self.len as f64 {
            return None;
        }
        let k = self.len;
        Some(match self.by {
            IndexUse::OneHot => {
                format!("label {v} is out of range: `{name}` is one-hot encoded with {k} classes")
            }
            IndexUse::Gather => {
                format!("index {v} is out of range: `{name}` indexes an axis of length {k}")
            }
        })
    }
}

/// Where the whole-number values of `id` come from, looking through views; `None` when they
/// are not whole numbers by construction.
pub fn index_source(g: &Graph, mut id: NodeId) -> Option<IndexSource> {
    loop {
        let op = g.op(id);
        match op {
            Op::Input(i) => {
                return g.inputs[*i as usize]
                    .is_int
                    .then_some(IndexSource::Input(*i));
            }
            Op::ArgMax { .. } | Op::Iota(_) => return Some(IndexSource::Computed),
            Op::Literal(data) => {
                let whole = data.values().all(|v| v >= 0.0 && v.fract() == 0.0);
                return whole.then_some(IndexSource::Computed);
            }
            // 0 or 1/(1 − p): not whole numbers by construction.
            Op::DropMask { .. } => return None,
            Op::State(_) => return None,
            Op::Const(_) => {
                let v = op.const_value()?;
                return (v >= 0.0 && v.fract() == 0.0).then_some(IndexSource::Computed);
            }
            Op::Transpose { .. }
            | Op::Take { .. }
            | Op::Slice { .. }
            | Op::Expand(_)
            | Op::Reshape(_) => id = g.node(id).inputs[0],
            Op::Param(_)
            | Op::DimSize(_)
            | Op::Neg
            | Op::Exp
            | Op::Log
            | Op::Sqrt
            | Op::Tanh
            | Op::Sigmoid
            | Op::Relu
            | Op::Step
            | Op::Log1p
            | Op::Expm1
            | Op::Abs
            | Op::Sign
            | Op::Sin
            | Op::Cos
            | Op::Softplus
            | Op::Erf
            | Op::Erfc
            | Op::Add
            | Op::Sub
            | Op::Mul
            | Op::Div
            | Op::Pow
            | Op::Eq
            | Op::Ne
            | Op::Lt
            | Op::Le
            | Op::Gt
            | Op::Ge
            | Op::Max
            | Op::Min
            | Op::Select
            | Op::MatMul
            | Op::Sum { .. }
            | Op::LogSumExp { .. }
            | Op::ReduceMax { .. }
            | Op::ReduceMin { .. }
            | Op::Put { .. }
            | Op::Unslice { .. }
            | Op::Gather { .. }
            | Op::ScatterAdd { .. }
            | Op::Windows { .. }
            | Op::Unwindows { .. }
            | Op::OneHot { .. }
            | Op::SumTo(_) => return None,
        }
    }
}

/// For each input, the smallest range its values must lie in (`None`: no `one_hot` or gather
/// reads it).
pub fn index_limits(g: &Graph) -> Vec<Option<IndexLimit>> {
    let mut limits: Vec<Option<IndexLimit>> = vec![None; g.inputs.len()];
    for id in g.ids() {
        let Some((indices, limit)) = index_read(g, id) else {
            continue;
        };
        if let Some(IndexSource::Input(i)) = index_source(g, indices) {
            let slot = &mut limits[i as usize];
            *slot = Some(slot.map_or(limit, |l| l.min(limit)));
        }
    }
    limits
}

/// The indices a `one_hot` or a gather reads, and the range they must lie in.
fn index_read(g: &Graph, id: NodeId) -> Option<(NodeId, IndexLimit)> {
    let node = g.node(id);
    if let Op::OneHot { classes } = node.op {
        let by = IndexUse::OneHot;
        return Some((
            node.inputs[0],
            IndexLimit {
                len: classes as u64,
                by,
            },
        ));
    }
    if let Op::Gather { axis } = node.op
        && let Dim::Fixed(len) = g.shape(node.inputs[0]).0[axis as usize]
    {
        let by = IndexUse::Gather;
        return Some((node.inputs[1], IndexLimit { len, by }));
    }
    None
}
