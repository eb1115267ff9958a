//! The reference interpreter: the meaning of every op, in plain Rust, in f64.
//!
//! Invariant: this module is the oracle. The JIT is tested against it and it is tested against
//! finite differences; it favours obviousness over speed.

use super::graph::{Graph, NodeId};
use super::op::Op;

/// A dense row-major array of f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    /// Size of each axis.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f64>,
}

impl Tensor {
    /// A tensor of `shape` holding `data` in row-major order.
    ///
    /// Panics when `data` does not have exactly as many values as `shape` holds (the product
    /// of its sizes; 1 for the empty shape of a scalar).
    pub fn new(shape: Vec<usize>, data: Vec<f64>) -> Tensor {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "tensor data does not fill its shape"
        );
        Tensor { shape, data }
    }

    /// A scalar: shape `[]`, one value.
    pub fn scalar(v: f64) -> Tensor {
        Tensor {
            shape: vec![],
            data: vec![v],
        }
    }

    /// A tensor of `shape` filled with zeros.
    pub fn zeros(shape: Vec<usize>) -> Tensor {
        let n = shape.iter().product();
        Tensor {
            shape,
            data: vec![0.0; n],
        }
    }

    /// The number of values (the product of the shape's sizes).
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when the tensor holds no values (some size in its shape is 0).
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The first value: the value of a scalar or of a one-element tensor.
    ///
    /// Panics when the tensor is empty.
    pub fn item(&self) -> f64 {
        self.data[0]
    }
}

/// Row-major strides of a shape.
pub fn contiguous_strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![0; shape.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i] = acc;
        acc *= shape[i];
    }
    strides
}

/// Strides that read an array of shape `from` as if broadcast to `to` (0 along broadcast axes).
pub fn broadcast_strides(from: &[usize], to: &[usize]) -> Vec<usize> {
    let own = contiguous_strides(from);
    let offset = to.len() - from.len();
    (0..to.len())
        .map(|i| {
            if i < offset || from[i - offset] == 1 && to[i] != 1 {
                0
            } else {
                own[i - offset]
            }
        })
        .collect()
}

/// Calls `f(linear_index, offsets)` for every element of `shape`, where `offsets[k]` is the
/// element's offset under `strides[k]`. Offsets wrap, so that a stride may be the two's
/// complement of a negative one.
fn for_each_index(shape: &[usize], strides: &[&[usize]], mut f: impl FnMut(usize, &[usize])) {
    let total: usize = shape.iter().product();
    let mut idx = vec![0usize; shape.len()];
    let mut offsets = vec![0usize; strides.len()];
    for linear in 0..total {
        f(linear, &offsets);
        for d in (0..shape.len()).rev() {
            idx[d] += 1;
            for (k, s) in strides.iter().enumerate() {
                offsets[k] = offsets[k].wrapping_add(s[d]);
            }
            if idx[d] < shape[d] {
                break;
            }
            for (k, s) in strides.iter().enumerate() {
                offsets[k] = offsets[k].wrapping_sub(s[d].wrapping_mul(shape[d]));
            }
            idx[d] = 0;
        }
    }
}

/// −1, 0 or 1; NaN for NaN.
pub fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x * 0.0
    }
}

/// log(1 + eˣ) without overflow: max(x, 0) + log1p(e^−|x|).
pub fn softplus(x: f64) -> f64 {
    let m = if x > 0.0 { x } else { 0.0 };
    m + (-x.abs()).exp().ln_1p()
}

fn truth(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// The scalar meaning of a unary elementwise op.
pub fn unary(op: &Op, x: f64) -> f64 {
    match op {
        Op::Neg => -x,
        Op::Exp => x.exp(),
        Op::Log => x.ln(),
        Op::Sqrt => x.sqrt(),
        Op::Tanh => x.tanh(),
        Op::Sigmoid => sigmoid(x),
        Op::Relu => {
            if x < 0.0 {
                0.0
            } else {
                x
            }
        }
        Op::Step => {
            if x > 0.0 {
                1.0
            } else {
                0.0
            }
        }
        Op::Log1p => x.ln_1p(),
        Op::Expm1 => x.exp_m1(),
        Op::Abs => x.abs(),
        Op::Sign => sign(x),
        Op::Sin => x.sin(),
        Op::Cos => x.cos(),
        Op::Softplus => softplus(x),
        Op::Erf => libm::erf(x),
        Op::Erfc => libm::erfc(x),
        other @ (Op::Input(_)
        | Op::Param(_)
        | Op::Const(_)
        | Op::DimSize(_)
        | Op::Iota(_)
        | Op::Literal(_)
        | Op::DropMask { .. }
        | Op::State(_)
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
        | Op::Unslice { .. }) => unreachable!("`{}` is not unary elementwise", other.name()),
    }
}

/// The scalar meaning of a binary elementwise op.
pub fn binary(op: &Op, a: f64, b: f64) -> f64 {
    match op {
        Op::Add => a + b,
        Op::Sub => a - b,
        Op::Mul => a * b,
        Op::Div => a / b,
        Op::Pow => pow(a, b),
        Op::Eq => truth(a == b),
        Op::Ne => truth(a != b),
        Op::Lt => truth(a < b),
        Op::Le => truth(a <= b),
        Op::Gt => truth(a > b),
        Op::Ge => truth(a >= b),
        // The first operand wins ties and NaN comparisons, matching the generated code.
        Op::Max => {
            if b > a {
                b
            } else {
                a
            }
        }
        Op::Min => {
            if b < a {
                b
            } else {
                a
            }
        }
        other @ (Op::Input(_)
        | Op::Param(_)
        | Op::Const(_)
        | Op::DimSize(_)
        | Op::Iota(_)
        | Op::Literal(_)
        | Op::DropMask { .. }
        | Op::State(_)
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
        | Op::Select
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
        | Op::Unslice { .. }) => unreachable!("`{}` is not binary elementwise", other.name()),
    }
}

/// `a^b`, with integer exponents by repeated multiplication (so negative bases work and the JIT's
/// multiply chains agree bit for bit).
pub fn pow(a: f64, b: f64) -> f64 {
    if b == 2.0 {
        a * a
    } else if b == 1.0 {
        a
    } else if b == 0.5 {
        a.sqrt()
    } else {
        a.powf(b)
    }
}

/// Values of the nodes `roots` depends on; entries for other nodes are `None`. A training
/// graph's dropout masks are those of the step whose key is 0 (`eval_keyed` chooses), and the
/// model's state tensors hold their values before the first step (`initial_states`).
pub fn eval(
    graph: &Graph,
    inputs: &[Tensor],
    params: &[Tensor],
    syms: &[u64],
    roots: &[NodeId],
) -> Vec<Option<Tensor>> {
    let states = initial_states(graph);
    eval_rounded(graph, (inputs, params, &states), syms, roots, None, 0)
}

/// As `eval`, with the state tensors `states` and the dropout masks of the training step whose
/// key is `step_key` (`dropout::step_key`).
pub fn eval_keyed(
    graph: &Graph,
    (inputs, params, states): (&[Tensor], &[Tensor], &[Tensor]),
    syms: &[u64],
    roots: &[NodeId],
    step_key: u64,
) -> Vec<Option<Tensor>> {
    eval_rounded(graph, (inputs, params, states), syms, roots, None, step_key)
}

/// The model's state tensors before the first training step (`StateInfo::initial`).
pub fn initial_states(graph: &Graph) -> Vec<Tensor> {
    graph
        .states
        .iter()
        .map(|s| {
            let dims = s
                .shape
                .as_fixed()
                .expect("a state tensor has a fixed shape");
            let len = dims.iter().product();
            Tensor::new(dims, vec![s.initial; len])
        })
        .collect()
}

/// How native code of a dtype rounds every value it computes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rounding {
    pub dtype: super::DType,
    /// Subnormal results become zero (the training steps' floating-point mode).
    pub flush_subnormals: bool,
}

impl Rounding {
    fn apply(self, x: f64) -> f64 {
        let (x, smallest_normal) = match self.dtype {
            super::DType::F32 => (x as f32 as f64, f32::MIN_POSITIVE as f64),
            super::DType::F64 => (x, f64::MIN_POSITIVE),
        };
        if self.flush_subnormals && x != 0.0 && x.abs() < smallest_normal {
            0.0f64.copysign(x)
        } else {
            x
        }
    }
}

/// As `eval`, with every node's values rounded as native code rounds them: an f32 model's
/// overflow (exp(89)) or underflow (exp(-104)) happens here where it happens in the model.
/// Each op is still computed in f64 from rounded operands, so a value can differ from native
/// code's in its last bit (and so, at the very edge of the range, in whether it overflows).
/// Dropout masks are those of the training step whose key is `step_key`.
pub fn eval_rounded(
    graph: &Graph,
    leaves: (&[Tensor], &[Tensor], &[Tensor]),
    syms: &[u64],
    roots: &[NodeId],
    rounding: Option<Rounding>,
    step_key: u64,
) -> Vec<Option<Tensor>> {
    let live = graph.reachable(roots);
    let mut values: Vec<Option<Tensor>> = vec![None; graph.len()];
    for id in graph.ids().filter(|id| live[id.index()]) {
        let node = graph.node(id);
        let shape = node.shape.concrete(syms);
        let args: Vec<&Tensor> = node
            .inputs
            .iter()
            .map(|i| values[i.index()].as_ref().expect("operand evaluated"))
            .collect();
        let mut value = eval_op(&node.op, &args, shape, leaves, syms, step_key);
        if let Some(r) = rounding {
            value.data.iter_mut().for_each(|x| *x = r.apply(*x));
        }
        values[id.index()] = Some(value);
    }
    values
}

fn eval_op(
    op: &Op,
    args: &[&Tensor],
    shape: Vec<usize>,
    (inputs, params, states): (&[Tensor], &[Tensor], &[Tensor]),
    syms: &[u64],
    step_key: u64,
) -> Tensor {
    match op {
        Op::Input(i) => inputs[*i as usize].clone(),
        Op::Param(i) => params[*i as usize].clone(),
        Op::State(i) => states[*i as usize].clone(),
        Op::Const(_) => Tensor::scalar(op.const_value().unwrap()),
        Op::DimSize(s) => Tensor::scalar(syms[*s as usize] as f64),
        Op::Iota(_) => Tensor::new(shape.clone(), (0..shape[0]).map(|i| i as f64).collect()),
        Op::Literal(data) => Tensor::new(shape, data.values().collect()),
        Op::DropMask { p, site, .. } => {
            let len = shape.iter().product();
            Tensor::new(
                shape,
                super::dropout::mask(step_key, *site, f64::from_bits(*p), len),
            )
        }
        Op::Neg
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
        | Op::Erfc => Tensor::new(shape, args[0].data.iter().map(|&x| unary(op, x)).collect()),
        Op::Select => {
            let s: Vec<Vec<usize>> = args
                .iter()
                .map(|a| broadcast_strides(&a.shape, &shape))
                .collect();
            let mut out = Tensor::zeros(shape.clone());
            for_each_index(&shape, &[&s[0], &s[1], &s[2]], |i, off| {
                out.data[i] = if args[0].data[off[0]] != 0.0 {
                    args[1].data[off[1]]
                } else {
                    args[2].data[off[2]]
                };
            });
            out
        }
        Op::Add
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
        | Op::Min => {
            let sa = broadcast_strides(&args[0].shape, &shape);
            let sb = broadcast_strides(&args[1].shape, &shape);
            let mut out = Tensor::zeros(shape.clone());
            for_each_index(&shape, &[&sa, &sb], |i, off| {
                out.data[i] = binary(op, args[0].data[off[0]], args[1].data[off[1]]);
            });
            out
        }
        Op::MatMul => matmul(args[0], args[1], shape),
        Op::Transpose { perm } => {
            // Read the operand through its strides permuted: axis i of the result walks axis
            // perm[i] of the operand.
            let own = contiguous_strides(&args[0].shape);
            let strides: Vec<usize> = perm.iter().map(|&a| own[a as usize]).collect();
            let mut out = Tensor::zeros(shape.clone());
            for_each_index(&shape, &[&strides], |i, off| {
                out.data[i] = args[0].data[off[0]]
            });
            out
        }
        Op::Sum { axis } => reduce(args[0], *axis, shape, 0.0, |acc, x| acc + x),
        Op::LogSumExp { axis } => {
            let m = reduce(args[0], *axis, shape.clone(), f64::NEG_INFINITY, |a, x| {
                binary(&Op::Max, a, x)
            });
            let mut out = m.clone();
            let ms = reduced_strides(&args[0].shape, *axis);
            let mut sums = Tensor::zeros(shape);
            for_each_index(&args[0].shape, &[&ms], |i, off| {
                let mo = m.data[off[0]];
                sums.data[off[0]] += if mo.is_finite() {
                    (args[0].data[i] - mo).exp()
                } else {
                    0.0
                };
            });
            for (o, s) in out.data.iter_mut().zip(&sums.data) {
                if o.is_finite() {
                    *o += s.ln();
                }
            }
            out
        }
        Op::ReduceMax { axis } => reduce(args[0], *axis, shape, f64::NEG_INFINITY, |a, x| {
            binary(&Op::Max, a, x)
        }),
        Op::ReduceMin { axis } => reduce(args[0], *axis, shape, f64::INFINITY, |a, x| {
            binary(&Op::Min, a, x)
        }),
        Op::Take { axis, index } => {
            let x = args[0];
            let a = *axis as usize;
            let inner: usize = x.shape[a + 1..].iter().product();
            let n = x.shape[a];
            let outer: usize = x.shape[..a].iter().product();
            let mut data = Vec::with_capacity(outer * inner);
            for o in 0..outer {
                let base = (o * n + *index as usize) * inner;
                data.extend_from_slice(&x.data[base..base + inner]);
            }
            Tensor::new(shape, data)
        }
        Op::Put { axis, index, size } => {
            let x = args[0];
            let a = *axis as usize;
            let inner: usize = x.shape[a..].iter().product();
            let outer: usize = x.shape[..a].iter().product();
            let mut out = Tensor::zeros(shape);
            for o in 0..outer {
                let base = (o * *size as usize + *index as usize) * inner;
                out.data[base..base + inner].copy_from_slice(&x.data[o * inner..(o + 1) * inner]);
            }
            out
        }
        Op::Gather { axis } => {
            let (x, idx) = (args[0], args[1]);
            let a = *axis as usize;
            let (outer, size, inner) = split_at_axis(&x.shape, a, 1);
            let mut out = Tensor::zeros(shape);
            for o in 0..outer {
                for (i, &v) in idx.data.iter().enumerate() {
                    let dst = &mut out.data[(o * idx.len() + i) * inner..][..inner];
                    match row_index(v, size) {
                        Some(k) => dst.copy_from_slice(&x.data[(o * size + k) * inner..][..inner]),
                        None => dst.fill(f64::NAN),
                    }
                }
            }
            out
        }
        Op::ScatterAdd { axis, size } => {
            let (x, idx) = (args[0], args[1]);
            let (a, size) = (*axis as usize, *size as usize);
            let (outer, _, inner) = split_at_axis(&x.shape, a, idx.shape.len());
            let mut out = Tensor::zeros(shape);
            for o in 0..outer {
                for (i, &v) in idx.data.iter().enumerate() {
                    if let Some(k) = row_index(v, size) {
                        let src = &x.data[(o * idx.len() + i) * inner..][..inner];
                        let dst = &mut out.data[(o * size + k) * inner..][..inner];
                        dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                    }
                }
            }
            out
        }
        Op::Windows {
            kernel,
            stride,
            dilation,
        } => {
            let x = args[0];
            let strides = window_strides(&x.shape, kernel, stride, dilation);
            let mut out = Tensor::zeros(shape.clone());
            for_each_index(&shape, &[&strides], |i, off| out.data[i] = x.data[off[0]]);
            out
        }
        Op::Unwindows {
            kernel,
            stride,
            dilation,
            ..
        } => {
            let x = args[0];
            let strides = window_strides(&shape, kernel, stride, dilation);
            let mut out = Tensor::zeros(shape);
            for_each_index(&x.shape, &[&strides], |i, off| {
                out.data[off[0]] += x.data[i]
            });
            out
        }
        Op::ArgMax { axis } => {
            let x = args[0];
            let axis = *axis as usize;
            let n = x.shape[axis];
            let inner: usize = x.shape[axis + 1..].iter().product();
            let outer: usize = x.shape[..axis].iter().product();
            let mut out = Tensor::zeros(shape);
            for o in 0..outer {
                for i in 0..inner {
                    let (mut best, mut best_k) = (f64::NEG_INFINITY, 0);
                    for k in 0..n {
                        let v = x.data[(o * n + k) * inner + i];
                        if v > best {
                            best = v;
                            best_k = k;
                        }
                    }
                    out.data[o * inner + i] = best_k as f64;
                }
            }
            out
        }
        Op::OneHot { classes } => {
            let k = *classes as usize;
            let mut out = Tensor::zeros(shape);
            for (i, &v) in args[0].data.iter().enumerate() {
                if v >= 0.0 && v < k as f64 && v.fract() == 0.0 {
                    out.data[i * k + v as usize] = 1.0;
                }
            }
            out
        }
        Op::SumTo(_) => {
            let map = broadcast_strides(&shape, &args[0].shape);
            let mut out = Tensor::zeros(shape);
            for_each_index(&args[0].shape, &[&map], |i, off| {
                out.data[off[0]] += args[0].data[i]
            });
            out
        }
        Op::Expand(_) => {
            let map = broadcast_strides(&args[0].shape, &shape);
            let mut out = Tensor::zeros(shape.clone());
            for_each_index(&shape, &[&map], |i, off| out.data[i] = args[0].data[off[0]]);
            out
        }
        Op::Reshape(_) => Tensor::new(shape, args[0].data.clone()),
        Op::Slice {
            axis, start, step, ..
        } => {
            let x = args[0];
            let mut out = Tensor::zeros(shape.clone());
            let (base, strides) = slice_strides(&x.shape, *axis, *start, *step);
            for_each_index(&shape, &[&strides], |i, off| {
                out.data[i] = x.data[base.wrapping_add(off[0])]
            });
            out
        }
        Op::Unslice {
            axis, start, step, ..
        } => {
            let x = args[0];
            let mut out = Tensor::zeros(shape.clone());
            let (base, strides) = slice_strides(&shape, *axis, *start, *step);
            for_each_index(&x.shape, &[&strides], |i, off| {
                out.data[base.wrapping_add(off[0])] = x.data[i]
            });
            out
        }
    }
}

/// The strides that walk the windows of an array of shape `whole` (`Op::Windows`): the leading
/// axes as they are, then each window axis `dilation` elements apart, then each window
/// position `stride` elements apart.
fn window_strides(whole: &[usize], kernel: &[u64], stride: &[u64], dilation: &[u64]) -> Vec<usize> {
    let lead = whole.len() - kernel.len();
    let base = contiguous_strides(whole);
    let mut strides = base[..lead].to_vec();
    strides.extend((0..kernel.len()).map(|i| base[lead + i] * dilation[i] as usize));
    strides.extend((0..kernel.len()).map(|i| base[lead + i] * stride[i] as usize));
    strides
}

/// The element offset of a slice's first element in an array of shape `whole`, and the strides
/// that walk the slice (a negative step as its two's complement, so that offsets add up with
/// wrapping arithmetic).
fn slice_strides(whole: &[usize], axis: u32, start: u64, step: i64) -> (usize, Vec<usize>) {
    let mut strides = contiguous_strides(whole);
    let a = axis as usize;
    let base = start as usize * strides[a];
    strides[a] = (step as isize * strides[a] as isize) as usize;
    (base, strides)
}
/// The row an index names along an axis of `size` rows: the nearest whole number (ties to
/// even), if it lies on the axis. Native code reads indices the same way.
pub fn row_index(v: f64, size: usize) -> Option<usize> {
    crate::kernels::gather::row_index(v, size)
}

/// The elements before axis `axis`, the length of the `count` axes from it on, and the elements
/// after them, of a row-major shape.
fn split_at_axis(shape: &[usize], axis: usize, count: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis..axis + count].iter().product(),
        shape[axis + count..].iter().product(),
    )
}

/// Strides mapping an input index to its output index when `axis` (or everything) is reduced.
fn reduced_strides(shape: &[usize], axis: Option<u32>) -> Vec<usize> {
    match axis {
        None => vec![0; shape.len()],
        Some(a) => {
            let mut kept: Vec<usize> = shape.to_vec();
            kept[a as usize] = 1;
            let mut s = contiguous_strides(&kept);
            s[a as usize] = 0;
            s
        }
    }
}

fn reduce(
    x: &Tensor,
    axis: Option<u32>,
    shape: Vec<usize>,
    init: f64,
    f: impl Fn(f64, f64) -> f64,
) -> Tensor {
    let map = reduced_strides(&x.shape, axis);
    let n = shape.iter().product();
    let mut out = Tensor::new(shape, vec![init; n]);
    for_each_index(&x.shape, &[&map], |i, off| {
        out.data[off[0]] = f(out.data[off[0]], x.data[i])
    });
    out
}

fn matmul(a: &Tensor, b: &Tensor, shape: Vec<usize>) -> Tensor {
    // numpy's matmul: a vector is read as a row (left operand) or a column (right operand);
    // the axes before the last two are batch axes, broadcast.
    let (ra, rb) = (a.shape.len(), b.shape.len());
    let (m, k) = if ra >= 2 {
        (a.shape[ra - 2], a.shape[ra - 1])
    } else {
        (1, a.shape[0])
    };
    let n = if rb >= 2 { b.shape[rb - 1] } else { 1 };
    let matrix_axes = usize::from(ra >= 2) + usize::from(rb >= 2);
    let batch = &shape[..shape.len() - matrix_axes];
    let batch_of = |t: &Tensor, r: usize| -> Vec<usize> {
        let own = &t.shape[..r.saturating_sub(2)];
        let per_matrix: usize = t.shape[r.saturating_sub(2)..].iter().product();
        broadcast_strides(own, batch)
            .into_iter()
            .map(|s| s * per_matrix)
            .collect()
    };
    let (sa, sb) = (batch_of(a, ra), batch_of(b, rb));
    let mut out = Tensor::zeros(shape.clone());
    let mut c = 0;
    for_each_index(batch, &[&sa, &sb], |_, off| {
        let (a0, b0) = (off[0], off[1]);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0;
                for p in 0..k {
                    acc += a.data[a0 + i * k + p] * b.data[b0 + p * n + j];
                }
                out.data[c] = acc;
                c += 1;
            }
        }
    });
    out
}
