//! Vectorization: whether a loop runs along its last axis in 128-bit vectors (f32x4, f64x2)
//! with a scalar tail, or element by element, and why not. Decided here from the plan's views
//! and the ops fused into the loop, so that the plan shows it and the code generator only reads
//! it.
//!
//! A loop vectorizes when every value it reads is contiguous, broadcast (a scalar, a register,
//! a unit axis) or every other element (a stride of 2, read as pairs: [`Along`]) along the last
//! axis, every op computed in it has a vector form ([`vector_form`]) and it writes its last
//! axis contiguously.

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
    /// It reads a slot with a stride other than 0, 1 or 2 along its last axis (a transpose, a
    /// slice's larger step): a vector would be a gather.
    StridedRead(u32),
    /// It writes its last axis with a step (an `unslice` with a step along the last axis).
    StridedWrite,
    /// It computes a node whose op has no vector form.
    NoVectorForm(NodeId),
    /// It computes a node whose op has a vector form for the other float type only.
    NoFormForDtype(NodeId),
    /// A maximum or minimum over its last axis: a vector would hold elements of one output.
    LastAxisReduced,
    /// An update of a parameter with fewer elements than a vector has lanes.
    UnderOneVector(u64),
}

/// How a loop that does not run in vectors walks its elements.
#[derive(Clone, Debug, PartialEq)]
pub enum Walk {
    /// Row by row: each operand's row address is taken where the row's loop is entered
    /// (`Tx::read_in_row`), so an element costs no index arithmetic for the outer axes (the
    /// rank-5 and rank-6 views of poolings and convolutions).
    Rows,
    /// Element by element, each element's address computed from all its indices, for the
    /// reason given.
    Elements(ByElement),
}

/// Why a loop that does not run in vectors walks element by element.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ByElement {
    /// The loop has no axis.
    NoAxis,
    /// A sum's loop, which adds each element at its output's place: sums have no row-by-row
    /// form.
    Sum,
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

/// How a parameter's update of `len` elements runs: in vectors of the float type's lanes with
/// the few elements past the last full vector one by one, or element by element where there
/// is not one full vector.
pub fn update_vector(len: usize, dtype: DType) -> Vector {
    match len < lanes(dtype) as usize {
        true => Vector::Scalar(Scalar::UnderOneVector(len as u64)),
        false => Vector::Lanes(lanes(dtype)),
    }
}

/// Checks an update's recorded form: the float type's lanes, and vectors only where there is
/// one full vector.
pub fn check_update(len: usize, dtype: DType, v: &Vector) -> Result<(), String> {
    match v {
        Vector::Lanes(n) if *n != lanes(dtype) => {
            Err(format!("runs {n} lanes of {}", dtype.name()))
        }
        Vector::Lanes(n) if len < *n as usize => {
            Err(format!("runs vectors of {n} over {len} elements"))
        }
        Vector::Lanes(_) => Ok(()),
        Vector::Scalar(Scalar::UnderOneVector(k))
            if *k == len as u64 && len < lanes(dtype) as usize =>
        {
            Ok(())
        }
        other => Err(format!("runs {other:?} over {len} elements")),
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
        | Op::State(_)
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

/// What a loop computes and reads, as the code generator walks it: the nodes computed in the
/// loop (fused operands included) and the views it reads.
pub(super) struct Contents {
    /// The loop's rank (its last axis is the one vectors run along).
    pub(super) rank: usize,
    pub(super) form: Form,
    pub(super) nodes: Vec<NodeId>,
    /// Each view read: its slot, and how it moves along the last axis.
    pub(super) views: Vec<(u32, Along)>,
    /// How the loop walks when it does not run in vectors.
    pub(super) walker: Walker,
}

/// How a loop of each kind walks when it does not run in vectors.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Walker {
    /// Row by row where it has an axis (copies, elementwise steps, `unslice`, maxima and
    /// minima, `unwindows` with a step along the last axis).
    RowsWithAxis,
    /// Element by element (sums, `unwindows` with stride 1, which runs as a sum).
    Sums,
    /// Its own way, not a choice (loop groups along each row, log-sum-exps).
    Fixed,
}

/// The kinds of loop whose form is decided.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Form {
    /// Elements along the last axis: in vectors of them, or one by one.
    Elements { strided_write: bool },
    /// A log-sum-exp over the last axis: rows in lanes, or one row at a time.
    Rows,
    /// A maximum or minimum: a vector of outputs at a time where the last axis is kept (a
    /// pooling's, over its window axis), its last axis reduced otherwise.
    Extremum { last_kept: bool },
}

/// The contents of each step whose loop form the code generator would otherwise choose
/// (copies, elementwise nodes, sums, `unslice`, log-sum-exps over the last axis, maxima and
/// minima, `unwindows`, loop groups); `None` for the others (products, gathers, other
/// reductions, scalar steps).
pub(super) fn contents(g: &Graph, plan: &Plan, step: &Step) -> Option<Contents> {
    let mut c = Contents {
        rank: 0,
        form: Form::Elements {
            strided_write: false,
        },
        nodes: Vec::new(),
        views: Vec::new(),
        walker: Walker::RowsWithAxis,
    };
    let mut walk = Reads { g, plan, c: &mut c };
    let rank = match step {
        Step::Copy {
            src,
            src_shape,
            slot,
        } => {
            walk.value(src, src_shape);
            plan.slots[*slot as usize].shape.rank()
        }
        Step::Compute { node, .. } => {
            let n = g.node(*node);
            let x = n.inputs.first().map(|&a| g.shape(a).rank());
            match &n.op {
                op if op.is_elementwise() => {
                    walk.node(*node);
                    n.shape.rank()
                }
                // A weight's gradient summed over the batch runs as one product.
                Op::SumTo(_) if super::summed_product(g, &plan.values, *node).is_some() => {
                    return None;
                }
                Op::Sum { .. } | Op::SumTo(_) => {
                    walk.operand(n.inputs[0]);
                    walk.c.walker = Walker::Sums;
                    x.expect("a sum has an operand")
                }
                Op::ReduceMax { axis } | Op::ReduceMin { axis } => {
                    walk.operand(n.inputs[0]);
                    let rank = x.expect("an extremum has an operand");
                    walk.c.form = Form::Extremum {
                        last_kept: matches!(axis, Some(a) if *a as usize + 1 != rank),
                    };
                    rank
                }
                // Each patch element added into its place: as a sum that keeps its last axis
                // where the places along it are contiguous (stride 1); in vectors of both
                // columns of a two-wide window with stride 2, interleaved ([`pairs_of_places`]);
                // else row by row.
                Op::Unwindows {
                    kernel,
                    stride,
                    dilation,
                    ..
                } => {
                    walk.operand(n.inputs[0]);
                    let stride_one = stride.last() == Some(&1);
                    let pairs = pairs_of_places(kernel, stride, dilation);
                    walk.c.form = Form::Elements {
                        strided_write: !stride_one && !pairs,
                    };
                    if stride_one {
                        walk.c.walker = Walker::Sums;
                    }
                    x.expect("unwindows has an operand")
                }
                Op::Unslice { axis, step, .. } => {
                    walk.operand(n.inputs[0]);
                    let rank = x.expect("unslice has an operand");
                    walk.c.form = Form::Elements {
                        strided_write: *axis as usize + 1 == rank && *step != 1,
                    };
                    rank
                }
                Op::LogSumExp { axis: Some(a) } if Some(*a as usize + 1) == x => {
                    walk.operand(n.inputs[0]);
                    walk.c.form = Form::Rows;
                    walk.c.walker = Walker::Fixed;
                    x.expect("a log-sum-exp has an operand")
                }
                _ => return None,
            }
        }
        Step::Group { shape, members, .. } => {
            walk.c.walker = Walker::Fixed;
            for m in members {
                match m.kind {
                    super::MemberKind::Elementwise => walk.node(m.node),
                    super::MemberKind::Sum
                    | super::MemberKind::ColumnSum
                    | super::MemberKind::RowSum => walk.operand(g.node(m.node).inputs[0]),
                }
            }
            shape.rank()
        }
        Step::Scalar { .. } => return None,
    };
    c.rank = rank;
    Some(c)
}

/// Whether an `unwindows` places the two columns of each window next to each other, every
/// window two places after the last: a window two wide, with stride 2 and dilation 1 along
/// the last axis (a two-by-two pooling's gradient). A vector of the first columns of `lanes`
/// windows and one of their second columns, interleaved, are then `2·lanes` contiguous places:
/// two vector additions instead of a strided write per element.
pub fn pairs_of_places(kernel: &[u64], stride: &[u64], dilation: &[u64]) -> bool {
    (kernel.last(), stride.last(), dilation.last()) == (Some(&2), Some(&2), Some(&1))
}

/// Why an op computed in a loop has no vector form, if it has none.
fn missing_form(g: &Graph, plan: &Plan, id: NodeId) -> Option<Scalar> {
    // A division the plan runs as a multiplication by a reciprocal is a multiplication, which
    // has a vector form as a division does.
    let op = match plan.reciprocal.contains(&id) {
        true => &Op::Mul,
        false => &g.node(id).op,
    };
    match vector_form(op, exponent(g, id), g.dtype) {
        Ok(()) => None,
        Err(NoForm::Never) => Some(Scalar::NoVectorForm(id)),
        Err(NoForm::Dtype) => Some(Scalar::NoFormForDtype(id)),
    }
}

/// The form of a step's loop and how it walks where it does not run in vectors (`walk_of`),
/// from one reading of its contents; `(None, None)` for a step without such a loop.
///
/// The form: vectors where every op has a vector form and every view reads as one (any view,
/// for rows in lanes, which gathers them lane by lane), the loop has an axis (two for rows)
/// and writes its last axis contiguously (a maximum or minimum: keeps it).
pub(super) fn decide(g: &Graph, plan: &Plan, step: &Step) -> (Option<Vector>, Option<Walk>) {
    let Some(c) = contents(g, plan, step) else {
        return (None, None);
    };
    let vector = form(g, plan, &c);
    let walk = walk_of(&c, &vector);
    (Some(vector), walk)
}

fn form(g: &Graph, plan: &Plan, c: &Contents) -> Vector {
    let ops = || c.nodes.iter().find_map(|&id| missing_form(g, plan, id));
    let strided = || {
        c.views
            .iter()
            .find(|v| v.1 == Along::Other)
            .map(|v| Scalar::StridedRead(v.0))
    };
    let why = match c.form {
        Form::Rows if c.rank < 2 => Some(Scalar::OneRow),
        Form::Rows => ops(),
        Form::Elements { .. } | Form::Extremum { .. } if c.rank == 0 => Some(Scalar::NoAxis),
        Form::Elements {
            strided_write: true,
        } => Some(Scalar::StridedWrite),
        Form::Extremum { last_kept: false } => Some(Scalar::LastAxisReduced),
        Form::Elements { .. } | Form::Extremum { .. } => ops().or_else(strided),
    };
    match (why, c.form) {
        (Some(why), _) => Vector::Scalar(why),
        (None, Form::Rows) => Vector::Rows(lanes(g.dtype)),
        (None, Form::Elements { .. } | Form::Extremum { .. }) => Vector::Lanes(lanes(g.dtype)),
    }
}

/// How a step's loop walks where it does not run in vectors: row by row where it has an axis
/// and its kind has that form, element by element otherwise (`None` where it runs in vectors
/// or walks its own way). A maximum or minimum run in vectors finishes each row row by row.
fn walk_of(c: &Contents, v: &Vector) -> Option<Walk> {
    let vectors = !matches!(v, Vector::Scalar(_));
    match c.walker {
        Walker::Fixed => None,
        _ if vectors && !matches!(c.form, Form::Extremum { .. }) => None,
        _ if c.rank == 0 => Some(Walk::Elements(ByElement::NoAxis)),
        Walker::Sums => Some(Walk::Elements(ByElement::Sum)),
        Walker::RowsWithAxis => Some(Walk::Rows),
    }
}

/// Checks a step's recorded walk: a step walks as its kind and form say, and row by row only
/// along an axis.
pub(super) fn check_walk(
    g: &Graph,
    plan: &Plan,
    step: &Step,
    v: Option<&Vector>,
    w: Option<&Walk>,
) -> Result<(), String> {
    let expected = match (contents(g, plan, step), v) {
        (Some(c), Some(v)) => {
            if w == Some(&Walk::Rows) && c.rank == 0 {
                return Err("runs row by row without an axis to run along".into());
            }
            walk_of(&c, v)
        }
        _ => None,
    };
    if w == expected.as_ref() {
        return Ok(());
    }
    match (w, &expected) {
        (None, None) => Ok(()),
        (Some(w), None) => Err(format!("walks {w:?} but its loop has no such choice")),
        (None, Some(e)) => Err(format!("has no recorded walk (its loop walks {e:?})")),
        (Some(w), Some(e)) => Err(format!("walks {w:?} where its loop walks {e:?}")),
    }
}

/// Checks a step's recorded form against its contents: a vectorized loop computes no op
/// without a vector form and reads every view along its last axis by 0, 1 or 2 (`Along`; rows
/// in lanes: any view), in this float type's lanes; a scalar loop's reason holds.
pub(super) fn check(g: &Graph, plan: &Plan, step: &Step, v: Option<&Vector>) -> Result<(), String> {
    let (c, v) = match (contents(g, plan, step), v) {
        (None, None) => return Ok(()),
        (Some(c), Some(v)) => (c, v),
        (None, Some(_)) => {
            return Err("has a vectorization but no loop whose form is chosen".into());
        }
        (Some(_), None) => return Err("has no recorded vectorization".into()),
    };
    let op_without_form = c.nodes.iter().find_map(|&id| missing_form(g, plan, id));
    let strided = c.views.iter().find(|v| v.1 == Along::Other);
    let elements = matches!(c.form, Form::Elements { .. } | Form::Extremum { .. });
    match v {
        Vector::Lanes(n) | Vector::Rows(n) => {
            if *n != lanes(g.dtype) {
                return Err(format!("runs {n} lanes of {}", g.dtype.name()));
            }
            if elements != matches!(v, Vector::Lanes(_)) {
                return Err(
                    "runs rows in lanes where elements are vectorized, or the reverse".into(),
                );
            }
            if c.rank < if elements { 1 } else { 2 } {
                return Err("is vectorized without an axis to vectorize".into());
            }
            if let Some(why) = op_without_form {
                return Err(format!("is vectorized but computes {why:?}"));
            }
            if let (true, Some((slot, _))) = (elements, strided) {
                return Err(format!("is vectorized but reads s{slot} strided"));
            }
            if c.form
                == (Form::Elements {
                    strided_write: true,
                })
            {
                return Err("is vectorized but writes with a step".into());
            }
            if c.form == (Form::Extremum { last_kept: false }) {
                return Err("is vectorized but reduces its last axis".into());
            }
            Ok(())
        }
        Vector::Scalar(why) => {
            let holds = match why {
                Scalar::NoAxis => elements && c.rank == 0,
                Scalar::OneRow => !elements && c.rank < 2,
                Scalar::StridedRead(s) => elements && c.views.contains(&(*s, Along::Other)),
                Scalar::StridedWrite => {
                    c.form
                        == (Form::Elements {
                            strided_write: true,
                        })
                }
                Scalar::NoVectorForm(id) | Scalar::NoFormForDtype(id) => {
                    c.nodes.contains(id) && missing_form(g, plan, *id).as_ref() == Some(why)
                }
                Scalar::LastAxisReduced => c.form == (Form::Extremum { last_kept: false }),
                // A parameter's update, not a step's loop.
                Scalar::UnderOneVector(_) => false,
            };
            match holds {
                true => Ok(()),
                false => Err(format!(
                    "runs element by element for a reason that does not hold: {why:?}"
                )),
            }
        }
    }
}

/// Collects what a loop computes and reads into `c`.
struct Reads<'a, 'c> {
    g: &'a Graph,
    plan: &'a Plan,
    c: &'c mut Contents,
}

impl Reads<'_, '_> {
    /// A node computed in the loop, then its operands.
    fn node(&mut self, id: NodeId) {
        self.c.nodes.push(id);
        for &a in &self.g.node(id).inputs {
            self.operand(a);
        }
    }

    fn operand(&mut self, id: NodeId) {
        let val = self.plan.values[id.index()]
            .as_ref()
            .expect("operand planned");
        self.value(val, self.g.shape(id));
    }

    fn value(&mut self, val: &Val, shape: &Shape) {
        match val {
            Val::Const(_) | Val::DimSize(_) | Val::Register(_) => {}
            Val::Inline(id) => self.node(*id),
            Val::View { slot, strides, .. } => {
                self.c.views.push((*slot, along_last_axis(shape, strides)));
            }
        }
    }
}

/// How a view read in a loop moves along the loop's last axis, and so how a vector of it is
/// read.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Along {
    /// By 0 elements (a broadcast, a unit axis, no axis): one splat.
    Broadcast,
    /// By 1: one load.
    Contiguous,
    /// By 2 (a pooling's windows, a slice with step 2): two overlapping loads, the even
    /// elements of the first and the odd of the second (`Tx::read_pairs`), reading nothing
    /// past the last element the vector holds.
    Pairs,
    /// By another stride: a vector would be a gather.
    Other,
}

/// How a view of `shape` read in a loop moves along the loop's last axis: the plan's reason to
/// vectorize or not, and how the code generator reads a vector of it.
pub fn along_last_axis(shape: &Shape, strides: &[Stride]) -> Along {
    let r = shape.rank();
    if r == 0 || shape.0[r - 1] == Dim::Fixed(1) {
        return Along::Broadcast;
    }
    match strides[r - 1].known() {
        Some(0) => Along::Broadcast,
        Some(1) => Along::Contiguous,
        Some(2) => Along::Pairs,
        _ => Along::Other,
    }
}
