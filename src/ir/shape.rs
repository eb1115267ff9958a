//! Dtypes, shapes with symbolic dimensions, broadcasting, and the shape rule of every op.
//!
//! Invariant: `infer` is an exhaustive `match` on `Op`; a node never exists with a shape that
//! `infer` would not give it.

use super::op::Op;
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit floats, the default.
    F32,
    /// 64-bit floats.
    F64,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
        }
    }

    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }
}

/// One dimension: a size known when the model is compiled, or a symbol (`n`) bound from data.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(u64),
    Sym(u32),
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Shape(pub Vec<Dim>);

impl Shape {
    pub fn scalar() -> Shape {
        Shape(vec![])
    }

    pub fn fixed(dims: &[u64]) -> Shape {
        Shape(dims.iter().map(|&d| Dim::Fixed(d)).collect())
    }

    pub fn rank(&self) -> usize {
        self.0.len()
    }

    pub fn is_scalar(&self) -> bool {
        self.0.is_empty()
    }

    /// Concrete sizes under a binding of the symbolic dimensions.
    pub fn concrete(&self, syms: &[u64]) -> Vec<usize> {
        self.sizes_under(syms).collect()
    }

    /// Number of elements under a binding of the symbolic dimensions.
    pub fn elements(&self, syms: &[u64]) -> usize {
        self.sizes_under(syms).product()
    }

    fn sizes_under<'a>(&'a self, syms: &'a [u64]) -> impl Iterator<Item = usize> + 'a {
        self.0.iter().map(|d| match *d {
            Dim::Fixed(n) => n as usize,
            Dim::Sym(s) => syms[s as usize] as usize,
        })
    }

    /// The sizes, when no dimension is symbolic.
    /// The number of elements, when every dimension is fixed.
    pub fn fixed_elements(&self) -> Option<usize> {
        self.0
            .iter()
            .map(|d| match *d {
                Dim::Fixed(n) => Some(n as usize),
                Dim::Sym(_) => None,
            })
            .product()
    }

    pub fn as_fixed(&self) -> Option<Vec<usize>> {
        self.0
            .iter()
            .map(|d| match *d {
                Dim::Fixed(n) => Some(n as usize),
                Dim::Sym(_) => None,
            })
            .collect()
    }

    /// The shape with the unit dimensions removed; two shapes with the same squeezed form can be
    /// reshaped into each other without moving data.
    pub fn squeezed(&self) -> Vec<Dim> {
        self.0
            .iter()
            .copied()
            .filter(|d| *d != Dim::Fixed(1))
            .collect()
    }

    pub fn display<'a>(&'a self, syms: &'a [String]) -> ShapeDisplay<'a> {
        ShapeDisplay { shape: self, syms }
    }
}

pub struct ShapeDisplay<'a> {
    shape: &'a Shape,
    syms: &'a [String],
}

impl fmt::Display for ShapeDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, d) in self.shape.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match d {
                Dim::Fixed(n) => write!(f, "{n}")?,
                Dim::Sym(s) => {
                    f.write_str(self.syms.get(*s as usize).map_or("?", |s| s.as_str()))?
                }
            }
        }
        f.write_str("]")
    }
}

/// Why an op cannot take operands of these shapes. `operands` lists which operands to blame.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapeError {
    pub message: String,
    pub operands: Vec<usize>,
}

fn err(message: impl Into<String>, operands: Vec<usize>) -> ShapeError {
    ShapeError {
        message: message.into(),
        operands,
    }
}

/// numpy broadcasting: align trailing dimensions; each pair must be equal or one of them 1.
pub fn broadcast(a: &Shape, b: &Shape) -> Option<Shape> {
    let rank = a.rank().max(b.rank());
    let mut out = Vec::with_capacity(rank);
    for i in 0..rank {
        let da = if i + a.rank() >= rank {
            Some(a.0[i + a.rank() - rank])
        } else {
            None
        };
        let db = if i + b.rank() >= rank {
            Some(b.0[i + b.rank() - rank])
        } else {
            None
        };
        out.push(match (da, db) {
            (Some(x), None) | (None, Some(x)) => x,
            (Some(x), Some(y)) if x == y => x,
            (Some(Dim::Fixed(1)), Some(y)) => y,
            (Some(x), Some(Dim::Fixed(1))) => x,
            _ => return None,
        });
    }
    Some(Shape(out))
}

/// True when `small` broadcasts to exactly `big`.
pub fn broadcasts_to(small: &Shape, big: &Shape) -> bool {
    broadcast(small, big).as_ref() == Some(big)
}

/// The shape rule. `shapes` are the operand shapes; leaves get their shape from the caller.
pub fn infer(op: &Op, shapes: &[&Shape]) -> Result<Shape, ShapeError> {
    use Op::*;
    match op {
        Input(_) | Param(_) | State(_) => unreachable!("leaf shapes come from their declarations"),
        Neg | Exp | Log | Sqrt | Tanh | Sigmoid | Relu | Step | Log1p | Expm1 | Abs | Sign
        | Sin | Cos | Softplus | Erf | Erfc => Ok(shapes[0].clone()),
        Add | Sub | Mul | Div | Pow | Eq | Ne | Lt | Le | Gt | Ge | Max | Min => {
            broadcast(shapes[0], shapes[1])
                .ok_or_else(|| err("shapes cannot be broadcast together", vec![0, 1]))
        }
        Const(_) | DimSize(_) => Ok(Shape::scalar()),
        Iota(len) => Ok(Shape(vec![*len])),
        Literal(data) => Ok(data.shape.clone()),
        DropMask { shape, .. } => Ok(shape.clone()),
        Select => {
            let ab = broadcast(shapes[1], shapes[2])
                .ok_or_else(|| err("the two branches cannot be broadcast together", vec![1, 2]))?;
            broadcast(shapes[0], &ab).ok_or_else(|| {
                err(
                    "the condition does not broadcast against the branches",
                    vec![0, 1, 2],
                )
            })
        }
        MatMul => matmul_shape(shapes[0], shapes[1]),
        Transpose { perm } => permute_shape(shapes[0], perm),
        Sum { axis } | LogSumExp { axis } | ReduceMax { axis } | ReduceMin { axis } => {
            reduce_shape(shapes[0], *axis)
        }
        ArgMax { axis } => reduce_shape(shapes[0], Some(*axis)),
        Take { axis, index } => {
            let s = reduce_shape(shapes[0], Some(*axis))?;
            match shapes[0].0[*axis as usize] {
                Dim::Fixed(n) if *index >= n => Err(err(
                    format!("index {index} is out of range for an axis of length {n}"),
                    vec![0],
                )),
                Dim::Sym(_) => Err(err(
                    "cannot index an axis whose length is only known at run time",
                    vec![0],
                )),
                _ => Ok(s),
            }
        }
        Put { axis, index, size } => {
            let mut s = shapes[0].clone();
            if *axis as usize > s.rank() || index >= size {
                return Err(err("put out of range", vec![0]));
            }
            s.0.insert(*axis as usize, Dim::Fixed(*size));
            Ok(s)
        }
        Gather { axis } => gather_shape(shapes[0], shapes[1], *axis),
        ScatterAdd { axis, size } => scatter_add_shape(shapes[0], shapes[1], *axis, *size),
        Windows {
            kernel,
            stride,
            dilation,
        } => windows_shape(shapes[0], kernel, stride, dilation),
        Unwindows {
            kernel,
            stride,
            dilation,
            size,
        } => unwindows_shape(shapes[0], kernel, stride, dilation, size),
        OneHot { classes } => {
            let mut s = shapes[0].clone();
            s.0.push(Dim::Fixed(*classes as u64));
            Ok(s)
        }
        SumTo(target) => {
            if broadcasts_to(target, shapes[0]) {
                Ok(target.clone())
            } else {
                Err(err(
                    "cannot sum to a shape that does not broadcast back",
                    vec![0],
                ))
            }
        }
        Expand(target) => {
            if broadcasts_to(shapes[0], target) {
                Ok(target.clone())
            } else {
                Err(err(
                    "operand does not broadcast to the target shape",
                    vec![0],
                ))
            }
        }
        Reshape(target) => {
            if same_element_count(shapes[0], target) {
                Ok(target.clone())
            } else {
                Err(err("a reshape keeps the number of elements", vec![0]))
            }
        }
        Slice {
            axis,
            start,
            step,
            len,
        } => {
            let mut s = shapes[0].clone();
            let size = fixed_axis(&s, *axis)?;
            let last = *start as i128 + *step as i128 * (*len as i128 - 1);
            if *step == 0 || *len == 0 || *start >= size || last < 0 || last >= size as i128 {
                return Err(err(
                    format!("slice out of range for an axis of length {size}"),
                    vec![0],
                ));
            }
            s.0[*axis as usize] = Dim::Fixed(*len);
            Ok(s)
        }
        Unslice {
            axis,
            start,
            step,
            size,
        } => {
            let mut s = shapes[0].clone();
            let len = fixed_axis(&s, *axis)?;
            let last = *start as i128 + *step as i128 * (len as i128 - 1);
            if *step == 0 || len == 0 || *start >= *size || last < 0 || last >= *size as i128 {
                return Err(err(
                    format!("unslice out of range for an axis of length {size}"),
                    vec![0],
                ));
            }
            s.0[*axis as usize] = Dim::Fixed(*size);
            Ok(s)
        }
    }
}

/// Whether two shapes hold the same number of elements for every binding of the symbolic
/// dimensions: the same symbols as often, and the same product of fixed sizes.
pub fn same_element_count(a: &Shape, b: &Shape) -> bool {
    element_count(a) == element_count(b)
}

/// A shape's element count as its symbolic dimensions (sorted) and the product of its fixed
/// sizes.
pub fn element_count(s: &Shape) -> (Vec<u32>, u128) {
    let mut syms: Vec<u32> = Vec::new();
    let mut fixed: u128 = 1;
    for d in &s.0 {
        match *d {
            Dim::Fixed(k) => fixed = fixed.saturating_mul(k as u128),
            Dim::Sym(s) => syms.push(s),
        }
    }
    syms.sort_unstable();
    (syms, fixed)
}

/// The length of `axis`, which must exist and be fixed.
fn fixed_axis(s: &Shape, axis: u32) -> Result<u64, ShapeError> {
    match s.0.get(axis as usize) {
        Some(Dim::Fixed(n)) => Ok(*n),
        Some(Dim::Sym(_)) => Err(err(
            "cannot slice an axis whose length is only known at run time",
            vec![0],
        )),
        None => Err(err(
            format!(
                "axis {axis} is out of range for an operand of rank {}",
                s.rank()
            ),
            vec![0],
        )),
    }
}

/// The shape of an axis permutation; `perm` must name every axis of the operand once.
fn permute_shape(s: &Shape, perm: &[u32]) -> Result<Shape, ShapeError> {
    if !is_permutation(perm, s.rank()) {
        return Err(err(
            format!(
                "transpose needs a permutation of the {} axes of its operand",
                s.rank()
            ),
            vec![0],
        ));
    }
    Ok(Shape(perm.iter().map(|&a| s.0[a as usize]).collect()))
}

/// True when `perm` holds each of `0..rank` exactly once.
pub fn is_permutation(perm: &[u32], rank: usize) -> bool {
    let mut seen = vec![false; rank];
    perm.len() == rank
        && perm
            .iter()
            .all(|&a| (a as usize) < rank && !std::mem::replace(&mut seen[a as usize], true))
}

/// True when `perm` reverses the order of the axes: `transpose(x)` without axes.
pub fn reverses_axes(perm: &[u32]) -> bool {
    perm.iter()
        .enumerate()
        .all(|(i, &a)| a as usize + i + 1 == perm.len())
}

/// `array[..axis] ++ indices ++ array[axis + 1..]`, for an axis of fixed length (the length
/// that binding data checks every index against).
fn gather_shape(array: &Shape, indices: &Shape, axis: u32) -> Result<Shape, ShapeError> {
    let a = axis as usize;
    match array.0.get(a) {
        None => Err(err(
            format!(
                "axis {axis} is out of range for an operand of rank {}",
                array.rank()
            ),
            vec![0],
        )),
        Some(Dim::Sym(_)) => Err(err(
            "cannot gather along an axis whose length is only known at run time",
            vec![0],
        )),
        Some(Dim::Fixed(_)) => {
            let mut out = array.0[..a].to_vec();
            out.extend_from_slice(&indices.0);
            out.extend_from_slice(&array.0[a + 1..]);
            Ok(Shape(out))
        }
    }
}

/// The values' axes `axis..axis + indices.rank()` (which must be the indices' shape) become one
/// axis of length `size`.
/// The number of windows of `kernel` elements spaced `dilation` apart, `stride` apart, along
/// an axis of length `len`: `None` when none fits or an argument is zero.
pub fn window_count(len: u64, kernel: u64, stride: u64, dilation: u64) -> Option<u64> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let span = dilation.checked_mul(kernel - 1)?.checked_add(1)?;
    (len >= span).then(|| (len - span) / stride + 1)
}

fn window_arguments_agree(kernel: &[u64], stride: &[u64], dilation: &[u64]) -> bool {
    !kernel.is_empty() && stride.len() == kernel.len() && dilation.len() == kernel.len()
}

fn windows_shape(
    x: &Shape,
    kernel: &[u64],
    stride: &[u64],
    dilation: &[u64],
) -> Result<Shape, ShapeError> {
    let k = kernel.len();
    if !window_arguments_agree(kernel, stride, dilation) || k > x.rank() {
        return Err(err(
            "windows need one kernel length, stride and dilation per axis",
            vec![0],
        ));
    }
    let lead = x.rank() - k;
    let mut s = Shape(x.0[..lead].to_vec());
    s.0.extend(kernel.iter().map(|&j| Dim::Fixed(j)));
    for i in 0..k {
        let len = fixed_axis(x, (lead + i) as u32)?;
        let count = window_count(len, kernel[i], stride[i], dilation[i]).ok_or_else(|| {
            err(
                format!("no window of {} fits an axis of length {len}", kernel[i]),
                vec![0],
            )
        })?;
        s.0.push(Dim::Fixed(count));
    }
    Ok(s)
}

fn unwindows_shape(
    patches: &Shape,
    kernel: &[u64],
    stride: &[u64],
    dilation: &[u64],
    size: &[u64],
) -> Result<Shape, ShapeError> {
    let k = kernel.len();
    if !window_arguments_agree(kernel, stride, dilation)
        || size.len() != k
        || 2 * k > patches.rank()
    {
        return Err(err(
            "unwindows needs one kernel length, stride, dilation and size per axis",
            vec![0],
        ));
    }
    let lead = patches.rank() - 2 * k;
    for i in 0..k {
        let count = window_count(size[i], kernel[i], stride[i], dilation[i]);
        if patches.0[lead + i] != Dim::Fixed(kernel[i])
            || count.map(Dim::Fixed) != Some(patches.0[lead + k + i])
        {
            return Err(err("patches do not match their windows", vec![0]));
        }
    }
    let mut s = Shape(patches.0[..lead].to_vec());
    s.0.extend(size.iter().map(|&d| Dim::Fixed(d)));
    Ok(s)
}

fn scatter_add_shape(
    values: &Shape,
    indices: &Shape,
    axis: u32,
    size: u64,
) -> Result<Shape, ShapeError> {
    let (a, r) = (axis as usize, indices.rank());
    if a + r > values.rank() || values.0[a..a + r] != indices.0[..] {
        return Err(err(
            format!("the values' axes from {axis} on do not have the indices' shape"),
            vec![0, 1],
        ));
    }
    let mut out = values.0[..a].to_vec();
    out.push(Dim::Fixed(size));
    out.extend_from_slice(&values.0[a + r..]);
    Ok(Shape(out))
}

fn reduce_shape(s: &Shape, axis: Option<u32>) -> Result<Shape, ShapeError> {
    match axis {
        None => Ok(Shape::scalar()),
        Some(a) if (a as usize) < s.rank() => {
            let mut out = s.clone();
            out.0.remove(a as usize);
            Ok(out)
        }
        Some(a) => Err(err(
            format!(
                "axis {a} is out of range for an operand of rank {}",
                s.rank()
            ),
            vec![0],
        )),
    }
}

/// numpy's `matmul`: the last two axes are matrices, the axes before them broadcast; a vector
/// on the left is a row and on the right a column, and its unit axis is dropped again.
fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, ShapeError> {
    if a.is_scalar() || b.is_scalar() {
        let blamed = [a, b]
            .into_iter()
            .enumerate()
            .filter(|(_, s)| s.is_scalar());
        let blamed = blamed.map(|(i, _)| i).collect();
        return Err(err("`@` takes arrays of rank 1 or more", blamed));
    }
    let p = MatMulParts::of(a, b);
    if p.k_a != p.k_b {
        return Err(err(
            "inner dimensions of the matrix product differ",
            vec![0, 1],
        ));
    }
    let batch = broadcast(&p.batch_a, &p.batch_b).ok_or_else(|| {
        err(
            "the batch axes (before the last two) cannot be broadcast together",
            vec![0, 1],
        )
    })?;
    let mut out = batch.0;
    out.extend(p.m);
    out.extend(p.n);
    Ok(Shape(out))
}

/// A product's operands split as numpy's `matmul` reads them: batch axes, rows, inner
/// dimension and columns; `m` (`n`) is `None` for a vector on the left (right).
pub struct MatMulParts {
    pub batch_a: Shape,
    pub batch_b: Shape,
    pub m: Option<Dim>,
    pub k_a: Dim,
    pub k_b: Dim,
    pub n: Option<Dim>,
}

impl MatMulParts {
    /// The parts of `a @ b`, both of rank 1 or more.
    pub fn of(a: &Shape, b: &Shape) -> MatMulParts {
        let (ra, rb) = (a.rank(), b.rank());
        let (batch_a, m) = if ra == 1 {
            (Shape::scalar(), None)
        } else {
            (Shape(a.0[..ra - 2].to_vec()), Some(a.0[ra - 2]))
        };
        let (batch_b, n, k_b) = if rb == 1 {
            (Shape::scalar(), None, b.0[0])
        } else {
            (
                Shape(b.0[..rb - 2].to_vec()),
                Some(b.0[rb - 1]),
                b.0[rb - 2],
            )
        };
        MatMulParts {
            batch_a,
            batch_b,
            m,
            k_a: a.0[ra - 1],
            k_b,
            n,
        }
    }

    /// True when either operand has batch axes.
    pub fn is_batched(&self) -> bool {
        !self.batch_a.is_scalar() || !self.batch_b.is_scalar()
    }

    /// The axis of an operand of shape `operand` that batch axis `i` of a product's result
    /// (which has `batch` batch axes) reads; `None` where the operand is broadcast along it,
    /// lacking the axis or having it of length 1 (its stride there is 0).
    pub fn operand_axis(operand: &Shape, batch: usize, i: usize) -> Option<usize> {
        let j = (i + operand.rank().saturating_sub(2)).checked_sub(batch)?;
        (operand.0[j] != Dim::Fixed(1)).then_some(j)
    }
}
