//! Vectorization: whether a loop runs along its last axis in 128-bit vectors (f32x4, f64x2)
//! with a scalar tail, or element by element, and why not. Decided here from the plan's views
//! and the ops fused into the loop, so that the plan shows it and the code generator only reads
//! it.
//!
//! A loop vectorizes when every value it reads is contiguous or broadcast along the last axis
//! (a scalar, a register, a unit axis), every op computed in it has a vector form
//! ([`vector_form`]) and it writes its last axis contiguously.

use super::{Plan, Step, Stride, Val};
use crate::ir::{DType, Dim, Graph, NodeId, Op, Shape};

/// How a loop runs along its last axis.
#[derive(Clone, Debug, PartialEq)]
pub enum Vector {
    /// In vectors of this many lanes (4 for f32, 2 for f64), then a scalar tail.
    Lanes(u32),
    /// A vector of rows at a time, one row per lane, each row's elements gathered lane by lane
    /// (a log-sum-exp over the last axis: rows are often too narrow to vectorize along).
    Rows(u32),
    /// Element by element, for the reason given.
    Scalar(Scalar),
}

/// Why a loop runs element by element.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    /// The loop has no axis.
    NoAxis,
    /// A loop over rows has one row (a log-sum-exp of a vector).
    OneRow,
    /// It reads a slot with a stride other than 0 or 1 along its last axis (a transpose, a
    /// slice's step): a vector would be a gather.
    StridedRead(u32),
    /// It writes its last axis with a step (an `unslice` with a step along the last axis).
    StridedWrite,
    /// It computes a node whose op has no vector form.
    NoVectorForm(NodeId),
    /// It computes a node whose op has a vector form for the other float type only.
    NoFormForDtype(NodeId),
}

/// Why an op has no vector form.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoForm {
    /// None for any float type, or none for this exponent of `pow`: the native helper is called
    /// element by element.
    Never,
    /// None for this float type (`tanh` in f64).
    Dtype,
}

/// The lanes of a 128-bit vector of `dtype`.
pub fn lanes(dtype: DType) -> u32 {
    match dtype {
        DType::F32 => 4,
        DType::F64 => 2,
    }
}

/// Whether `op` (with `exponent`, a `pow`'s constant exponent) has a vector form in `dtype`.
pub fn vector_form(op: &Op, exponent: Option<f64>, dtype: DType) -> Result<(), NoForm> {
    let has = |yes: bool| if yes { Ok(()) } else { Err(NoForm::Never) };
    match op {
        Op::Neg | Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Sqrt | Op::Abs | Op::Relu => Ok(()),
        Op::Tanh if dtype == DType::F32 => Ok(()),
        Op::Tanh => Err(NoForm::Dtype),
        Op::Exp | Op::Log | Op::Log1p | Op::Sigmoid | Op::Softplus | Op::Erf | Op::Erfc => Ok(()),
        Op::Step | Op::Sign | Op::Max | Op::Min | Op::Select => Ok(()),
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => Ok(()),
        // Small whole powers as products (x³ is GELU's), square roots as such: inline.
        Op::Pow => has(matches!(exponent, Some(e) if e == 3.0 || e == 2.0 || e == 1.0 || e == 0.5)),
        // Through a call to the native helper, element by element.
        Op::Expm1 | Op::Sin | Op::Cos => Err(NoForm::Never),
        // Not elementwise: never computed inside an elementwise loop.
        Op::Input(_)
        | Op::Param(_)
        | Op::Const(_)
        | Op::DimSize(_)
        | Op::Iota(_)
        | Op::Literal(_)
        | Op::DropMask { .. }
        | Op::MatMul
        | Op::Transpose { .. }
        | Op::Sum { .. }
        | Op::LogSumExp { .. }
        | Op::ReduceMax { .. }
        | Op::ReduceMin { .. }
        | Op::ArgMax { .. }
        | Op::Take { .. }
        | Op::Put { .. }
        | Op::Gather { .. }
        | Op::ScatterAdd { .. }
        | Op::Windows { .. }
        | Op::Unwindows { .. }
        | Op::OneHot { .. }
        | Op::SumTo(_)
        | Op::Expand(_)
        | Op::Reshape(_)
        | Op::Slice { .. }
        | Op::Unslice { .. } => Err(NoForm::Never),
    }
}

/// The constant exponent of a `pow` node (`None` for any other op, or a computed exponent).
pub fn exponent(g: &Graph, id: NodeId) -> Option<f64> {
    let node = g.node(id);
    if node.op == Op::Pow {
        g.const_value(node.inputs[1])
    } else {
        None
    }
}

/// The vectorization of each step that runs an elementwise or summing loop whose form the code
/// generator chooses (copies, elementwise nodes, sums, `unslice`, loop groups); `None` for the
/// others (products, gathers, reductions with a form of their own, scalar steps).
pub(super) fn decide(g: &Graph, plan: &Plan, step: &Step) -> Option<Vector> {
    let reads = Reads {
        g,
        plan,
        any_stride: false,
    };
    let (rank, read) = match step {
        Step::Copy {
            src,
            src_shape,
            slot,
        } => {
            let rank = plan.slots[*slot as usize].shape.rank();
            (rank, reads.value(src, src_shape))
        }
        Step::Compute { node, .. } => {
            let n = g.node(*node);
            match &n.op {
                op if op.is_elementwise() => (n.shape.rank(), reads.node(*node)),
                Op::Sum { .. } | Op::SumTo(_) => {
                    let x = g.shape(n.inputs[0]);
                    (x.rank(), reads.operand(n.inputs[0]))
                }
                Op::Unslice { axis, step, .. } => {
                    let x = g.shape(n.inputs[0]);
                    let rank = x.rank();
                    let read = if rank > 0 && *axis as usize + 1 == rank && *step != 1 {
                        Err(Scalar::StridedWrite)
                    } else {
                        reads.operand(n.inputs[0])
                    };
                    (rank, read)
                }
                Op::LogSumExp { axis: Some(a) }
                    if *a as usize + 1 == g.shape(n.inputs[0]).rank() =>
                {
                    let rows = Reads {
                        any_stride: true,
                        ..reads
                    };
                    let read = match g.shape(n.inputs[0]).rank() {
                        0 | 1 => Err(Scalar::OneRow),
                        _ => rows.operand(n.inputs[0]),
                    };
                    return Some(match read {
                        Ok(()) => Vector::Rows(lanes(g.dtype)),
                        Err(why) => Vector::Scalar(why),
                    });
                }
                _ => return None,
            }
        }
        Step::Group { shape, members, .. } => {
            let rank = shape.rank();
            let read = members.iter().try_for_each(|m| match m.kind {
                super::MemberKind::Elementwise => reads.node(m.node),
                super::MemberKind::Sum
                | super::MemberKind::ColumnSum
                | super::MemberKind::RowSum => reads.operand(g.node(m.node).inputs[0]),
            });
            (rank, read)
        }
        Step::Scalar { .. } => return None,
    };
    Some(match (rank, read) {
        (0, _) => Vector::Scalar(Scalar::NoAxis),
        (_, Ok(())) => Vector::Lanes(lanes(g.dtype)),
        (_, Err(why)) => Vector::Scalar(why),
    })
}

/// What a loop reads, walked as the code generator reads it.
#[derive(Clone, Copy)]
struct Reads<'a> {
    g: &'a Graph,
    plan: &'a Plan,
    /// Whether views are read element by element into lanes (rows in lanes), so that any
    /// stride reads as a vector.
    any_stride: bool,
}

impl Reads<'_> {
    /// A node computed in the loop: its op, then its operands.
    fn node(&self, id: NodeId) -> Result<(), Scalar> {
        // A division the plan runs as a multiplication by a reciprocal is a multiplication,
        // which has a vector form as a division does.
        let op = match self.plan.reciprocal.contains(&id) {
            true => Op::Mul,
            false => self.g.node(id).op.clone(),
        };
        match vector_form(&op, exponent(self.g, id), self.g.dtype) {
            Ok(()) => {}
            Err(NoForm::Never) => return Err(Scalar::NoVectorForm(id)),
            Err(NoForm::Dtype) => return Err(Scalar::NoFormForDtype(id)),
        }
        for &a in &self.g.node(id).inputs {
            self.operand(a)?;
        }
        Ok(())
    }

    fn operand(&self, id: NodeId) -> Result<(), Scalar> {
        let val = self.plan.values[id.index()]
            .as_ref()
            .expect("operand planned");
        self.value(val, self.g.shape(id))
    }

    fn value(&self, val: &Val, shape: &Shape) -> Result<(), Scalar> {
        match val {
            Val::Const(_) | Val::DimSize(_) | Val::Register(_) => Ok(()),
            Val::Inline(id) => self.node(*id),
            Val::View { slot, strides, .. } => {
                match self.any_stride || along_last_axis(shape, strides) {
                    true => Ok(()),
                    false => Err(Scalar::StridedRead(*slot)),
                }
            }
        }
    }
}

/// Whether a view of `shape` read in a loop moves by 0 or 1 elements along the
/// loop's last axis, so that a vector of it is one load or one splat.
pub(super) fn along_last_axis(shape: &Shape, strides: &[Stride]) -> bool {
    let r = shape.rank();
    if r == 0 || shape.0[r - 1] == Dim::Fixed(1) {
        return true;
    }
    match &strides[r - 1] {
        Stride::Zero => true,
        Stride::Prod(dims) => dims.iter().all(|d| *d == Dim::Fixed(1)),
        Stride::Scaled(..) => false,
    }
}
