//! How each value of a graph depends on the data rows, so that a forward pass over many rows can
//! run in chunks of rows and its outputs be combined into exactly what one pass computes.
//!
//! Each node gets a `Rows` class: built from the rows one at a time (`Local`), a sum over them
//! (`Summed`), or neither (`Fixed` values are the same in every chunk), each times a power of
//! the row count `n` (`mean` is a sum times n⁻¹). An output that is a sum over rows times `nᵖ`
//! is the sum of its chunks' values, each rescaled by `(N / n)ᵖ`. Anything the rules do not
//! recognise (rows that mix, nonlinear functions of sums, the row index) is `Mixed`, and a pass
//! with a mixed output runs whole.

use super::{Dim, Graph, NodeId, Op, Shape};

/// A value's dependence on the data rows; `i32` is the power of the row count it is scaled by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rows {
    /// nᵖ times a value every chunk computes alike (parameters, constants, whole inputs).
    Fixed(i32),
    /// Axis 0 runs over the rows, and row i is nᵖ times a function of data row i alone.
    Local(i32),
    /// nᵖ times a sum over the rows of row-local terms, without a row axis: chunks add up.
    Summed(i32),
    /// Anything else.
    Mixed,
}

/// How one output computed chunk by chunk combines into the output of all rows at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Combine {
    /// nᵖ times a sum over rows: the sum over chunks of each value times `(N / n)ᵖ`.
    Sum { power: i32 },
    /// nᵖ times a value independent of the rows: any chunk's value times `(N / n)ᵖ`.
    Same { power: i32 },
}

impl Combine {
    /// The factor a chunk of `rows` rows' value is multiplied by towards the value on `all` rows.
    pub fn scale(self, rows: usize, all: usize) -> f64 {
        let power = match self {
            Combine::Sum { power } | Combine::Same { power } => power,
        };
        (all as f64 / rows as f64).powi(power)
    }
}

/// How each of `outputs` combines over chunks of rows of dimension `row`; `None` when one of
/// them cannot be computed in chunks.
pub fn combine_rules(g: &Graph, row: u32, outputs: &[NodeId]) -> Option<Vec<Combine>> {
    let classes = classify(g, row);
    outputs
        .iter()
        .map(|id| match classes[id.index()] {
            Rows::Summed(power) => Some(Combine::Sum { power }),
            Rows::Fixed(power) => Some(Combine::Same { power }),
            Rows::Local(_) | Rows::Mixed => None,
        })
        .collect()
}

/// Every node's class, in id order.
pub fn classify(g: &Graph, row: u32) -> Vec<Rows> {
    let mut classes: Vec<Rows> = Vec::with_capacity(g.len());
    for id in g.ids() {
        let node = g.node(id);
        let of = |k: usize| classes[node.inputs[k].index()];
        let rank_of = |k: usize| g.shape(node.inputs[k]).0.len();
        let rank = node.shape.0.len();
        let class = rule(&node.op, row, rank, &of, &rank_of, g, &node.inputs);
        classes.push(settle(class, &node.shape, row));
    }
    classes
}

/// The class a value's shape allows: a row axis makes a fixed value row-local (its rows are
/// alike) and a sum mixed; the row dimension anywhere but axis 0 is mixed.
fn settle(class: Rows, shape: &Shape, row: u32) -> Rows {
    let is_row = |d: &Dim| *d == Dim::Sym(row);
    if shape.0.iter().skip(1).any(is_row) {
        return Rows::Mixed;
    }
    let rows_first = shape.0.first().is_some_and(is_row);
    match class {
        Rows::Fixed(p) | Rows::Local(p) if rows_first => Rows::Local(p),
        Rows::Fixed(p) => Rows::Fixed(p),
        Rows::Summed(p) if !rows_first => Rows::Summed(p),
        Rows::Local(_) | Rows::Summed(_) | Rows::Mixed => Rows::Mixed,
    }
}

/// Fixed or row-local with power `p`: the classes elementwise functions keep.
fn elementwise(c: Rows) -> Option<(bool, i32)> {
    match c {
        Rows::Fixed(p) => Some((false, p)),
        Rows::Local(p) => Some((true, p)),
        Rows::Summed(_) | Rows::Mixed => None,
    }
}

fn with_locality(local: bool, p: i32) -> Rows {
    if local {
        Rows::Local(p)
    } else {
        Rows::Fixed(p)
    }
}

/// The class of an op's value from its operands' classes (`of`) and ranks (`rank_of`).
fn rule(
    op: &Op,
    row: u32,
    rank: usize,
    of: &dyn Fn(usize) -> Rows,
    rank_of: &dyn Fn(usize) -> usize,
    g: &Graph,
    inputs: &[NodeId],
) -> Rows {
    // A row-local operand broadcast into a result of higher rank has its rows off axis 0.
    let aligned = |k: usize| !matches!(of(k), Rows::Local(_)) || rank_of(k) == rank;
    // Elementwise operands of one power: the result is row-local if any of them is.
    let same_power = |ks: &[usize]| -> Option<(bool, i32)> {
        let mut out: Option<(bool, i32)> = None;
        for &k in ks {
            let (local, p) = elementwise(of(k))?;
            if !aligned(k) || out.is_some_and(|(_, q)| q != p) {
                return None;
            }
            out = Some((out.is_some_and(|(l, _)| l) || local, p));
        }
        out
    };
    let product_power = |p: i32, q: i32, local: bool| with_locality(local, p + q);
    // Structural ops that keep a row axis only when they leave axis 0 alone.
    let keeps_rows = |touches_axis_0: bool| match of(0) {
        Rows::Local(p) if !touches_axis_0 => Rows::Local(p),
        Rows::Local(_) | Rows::Mixed => Rows::Mixed,
        c @ (Rows::Fixed(_) | Rows::Summed(_)) => c,
    };
    let row_dim = Dim::Sym(row);
    match op {
        Op::Input(_) | Op::Param(_) | Op::Const(_) | Op::Literal(_) => Rows::Fixed(0),
        Op::DimSize(s) => Rows::Fixed(if *s == row { 1 } else { 0 }),
        // The row index itself differs between a chunk and the whole.
        Op::Iota(d) if *d == row_dim => Rows::Mixed,
        Op::Iota(_) => Rows::Fixed(0),
        // Drawn from each element's flat index, which differs between a chunk and the whole.
        Op::DropMask { .. } => Rows::Mixed,
        Op::State(_) => Rows::Fixed(0),
        Op::Neg => match of(0) {
            c @ (Rows::Fixed(_) | Rows::Local(_) | Rows::Summed(_)) => c,
            Rows::Mixed => Rows::Mixed,
        },
        Op::Exp
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
        | Op::Erfc => match elementwise(of(0)) {
            Some((local, 0)) => with_locality(local, 0),
            Some(_) | None => Rows::Mixed,
        },
        Op::Add | Op::Sub => match (of(0), of(1)) {
            (Rows::Summed(p), Rows::Summed(q)) if p == q => Rows::Summed(p),
            _ => same_power(&[0, 1]).map_or(Rows::Mixed, |(l, p)| with_locality(l, p)),
        },
        Op::Max | Op::Min => same_power(&[0, 1]).map_or(Rows::Mixed, |(l, p)| with_locality(l, p)),
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge => {
            same_power(&[0, 1]).map_or(Rows::Mixed, |(l, _)| with_locality(l, 0))
        }
        Op::Pow => match same_power(&[0, 1]) {
            Some((local, 0)) => with_locality(local, 0),
            Some(_) | None => Rows::Mixed,
        },
        Op::Mul => match (of(0), of(1)) {
            (Rows::Summed(p), Rows::Fixed(q)) | (Rows::Fixed(q), Rows::Summed(p)) => {
                Rows::Summed(p + q)
            }
            (a, b) => match (elementwise(a), elementwise(b)) {
                (Some((la, p)), Some((lb, q))) if aligned(0) && aligned(1) => {
                    product_power(p, q, la || lb)
                }
                _ => Rows::Mixed,
            },
        },
        Op::Div => match (of(0), of(1)) {
            (Rows::Summed(p), Rows::Fixed(q)) => Rows::Summed(p - q),
            (a, b) => match (elementwise(a), elementwise(b)) {
                (Some((la, p)), Some((lb, q))) if aligned(0) && aligned(1) => {
                    product_power(p, -q, la || lb)
                }
                _ => Rows::Mixed,
            },
        },
        Op::Select => match (elementwise(of(0)), same_power(&[1, 2])) {
            (Some((lc, _)), Some((l, p))) if aligned(0) => with_locality(lc || l, p),
            _ => Rows::Mixed,
        },
        Op::MatMul => {
            let (ra, rb) = (rank_of(0), rank_of(1));
            match (of(0), of(1)) {
                (Rows::Fixed(p), Rows::Fixed(q)) => Rows::Fixed(p + q),
                (Rows::Summed(p), Rows::Fixed(q)) | (Rows::Fixed(q), Rows::Summed(p)) => {
                    Rows::Summed(p + q)
                }
                // The rows are the left operand's row axis (a matrix) or its first batch axis.
                (Rows::Local(p), Rows::Fixed(q)) if ra >= 2 && (rank == ra || rb == 1) => {
                    Rows::Local(p + q)
                }
                // The rows are a batch axis of both operands (or of the right one, broadcast).
                (Rows::Fixed(p), Rows::Local(q)) if rb >= 3 && rank == rb => Rows::Local(p + q),
                (Rows::Local(p), Rows::Local(q)) if ra >= 3 && ra == rank && rb == rank => {
                    Rows::Local(p + q)
                }
                _ => Rows::Mixed,
            }
        }
        Op::Transpose { perm } => keeps_rows(perm.first() != Some(&0)),
        Op::Sum { axis } => match of(0) {
            Rows::Local(p) if matches!(axis, None | Some(0)) => Rows::Summed(p),
            c @ (Rows::Local(_) | Rows::Fixed(_) | Rows::Summed(_)) => c,
            Rows::Mixed => Rows::Mixed,
        },
        Op::LogSumExp { axis } => match of(0) {
            Rows::Local(0) if matches!(axis, Some(a) if *a > 0) => Rows::Local(0),
            Rows::Fixed(0) => Rows::Fixed(0),
            Rows::Local(_) | Rows::Fixed(_) | Rows::Summed(_) | Rows::Mixed => Rows::Mixed,
        },
        Op::ReduceMax { axis } | Op::ReduceMin { axis } => match of(0) {
            Rows::Local(p) if matches!(axis, Some(a) if *a > 0) => Rows::Local(p),
            Rows::Fixed(p) => Rows::Fixed(p),
            Rows::Local(_) | Rows::Summed(_) | Rows::Mixed => Rows::Mixed,
        },
        Op::ArgMax { axis } => match of(0) {
            Rows::Local(_) if *axis > 0 => Rows::Local(0),
            Rows::Fixed(_) => Rows::Fixed(0),
            Rows::Local(_) | Rows::Summed(_) | Rows::Mixed => Rows::Mixed,
        },
        Op::Take { axis, .. } | Op::Put { axis, .. } => keeps_rows(*axis == 0),
        Op::Slice { axis, .. } | Op::Unslice { axis, .. } => keeps_rows(*axis == 0),
        Op::Gather { axis } => match (of(0), of(1)) {
            (Rows::Fixed(p), Rows::Fixed(0)) => Rows::Fixed(p),
            (Rows::Summed(p), Rows::Fixed(0)) => Rows::Summed(p),
            // A table looked up by each row's indices: the rows become the result's axis 0.
            (Rows::Fixed(p), Rows::Local(0)) if *axis == 0 => Rows::Local(p),
            (Rows::Local(p), Rows::Fixed(0)) if *axis > 0 => Rows::Local(p),
            _ => Rows::Mixed,
        },
        Op::ScatterAdd { axis, .. } => match (of(0), of(1)) {
            (Rows::Fixed(p), Rows::Fixed(0)) => Rows::Fixed(p),
            (Rows::Summed(p), Rows::Fixed(0)) => Rows::Summed(p),
            // Each row's values added into a table: a sum over the rows.
            (Rows::Local(p), Rows::Local(0)) if *axis == 0 && rank_of(1) <= rank_of(0) => {
                Rows::Summed(p)
            }
            (Rows::Local(p), Rows::Fixed(0)) if *axis > 0 => Rows::Local(p),
            _ => Rows::Mixed,
        },
        // Patches of the last `kernel.len()` axes, and their adjoint: rows stay rows when the
        // windows leave a leading axis alone.
        Op::Windows { kernel, .. } => keeps_rows(rank_of(0) <= kernel.len()),
        Op::Unwindows { kernel, .. } => keeps_rows(rank_of(0) <= 2 * kernel.len()),
        Op::OneHot { .. } => match of(0) {
            Rows::Local(0) => Rows::Local(0),
            Rows::Fixed(0) => Rows::Fixed(0),
            Rows::Local(_) | Rows::Fixed(_) | Rows::Summed(_) | Rows::Mixed => Rows::Mixed,
        },
        Op::SumTo(shape) => match of(0) {
            Rows::Local(p) if shape.0.len() == rank_of(0) && shape.0.first() == Some(&row_dim) => {
                Rows::Local(p)
            }
            Rows::Local(p) => Rows::Summed(p),
            c @ (Rows::Fixed(_) | Rows::Summed(_)) => c,
            Rows::Mixed => Rows::Mixed,
        },
        Op::Expand(_) => keeps_rows(rank != rank_of(0)),
        Op::Reshape(shape) => {
            let first_is_rows =
                g.shape(inputs[0]).0.first() == Some(&row_dim) && shape.0.first() == Some(&row_dim);
            keeps_rows(!first_is_rows)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::DType;

    fn graph() -> Graph {
        let mut g = Graph::new(DType::F64, vec!["n".into()], vec![], vec![]);
        g.inputs.push(crate::ir::InputInfo {
            name: "x".into(),
            shape: Shape(vec![Dim::Sym(0), Dim::Fixed(3)]),
            is_int: false,
        });
        g
    }

    #[test]
    fn a_mean_over_rows_is_a_sum_times_the_inverse_count() {
        let mut g = graph();
        let x = g.build(Op::Input(0), &[]);
        let sq = g.build(Op::Mul, &[x, x]);
        let total = g.build(Op::Sum { axis: None }, &[sq]);
        let n = g.build(Op::DimSize(0), &[]);
        let mean = g.build(Op::Div, &[total, n]);
        let rules = combine_rules(&g, 0, &[mean, total]).unwrap();
        assert_eq!(
            rules,
            [Combine::Sum { power: -1 }, Combine::Sum { power: 0 }]
        );
    }

    #[test]
    fn a_function_of_a_sum_or_a_centred_row_does_not_combine() {
        let mut g = graph();
        let x = g.build(Op::Input(0), &[]);
        let total = g.build(Op::Sum { axis: None }, &[x]);
        let logged = g.build(Op::Log, &[total]);
        assert_eq!(combine_rules(&g, 0, &[logged]), None);
        // x − Σx: every row depends on all of them.
        let spread = g.build(Op::Expand(g.shape(x).clone()), &[total]);
        let centred = g.build(Op::Sub, &[x, spread]);
        let again = g.build(Op::Sum { axis: None }, &[centred]);
        assert_eq!(combine_rules(&g, 0, &[again]), None);
        // The row index differs between a chunk and the whole.
        let iota = g.build(Op::Iota(Dim::Sym(0)), &[]);
        let by_index = g.build(Op::Sum { axis: None }, &[iota]);
        assert_eq!(combine_rules(&g, 0, &[by_index]), None);
    }
}
