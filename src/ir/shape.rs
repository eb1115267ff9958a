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
        Input(_) | Param(_) => unreachable!("leaf shapes come from their declarations"),
        Neg | Exp | Log | Sqrt | Tanh | Sigmoid | Relu | Step | Log1p | Expm1 | Abs | Sign
        | Sin | Cos | Softplus | Erf => Ok(shapes[0].clone()),
        Add | Sub | Mul | Div | Pow | Eq | Ne | Lt | Le | Gt | Ge | Max | Min => {
            broadcast(shapes[0], shapes[1])
                .ok_or_else(|| err("shapes cannot be broadcast together", vec![0, 1]))
        }
        Const(_) | DimSize(_) => Ok(Shape::scalar()),
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
            if shapes[0].squeezed() == target.squeezed() {
                Ok(target.clone())
            } else {
                Err(err(
                    "reshape may only add or remove axes of size 1",
                    vec![0],
                ))
            }
        }
    }
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

fn matmul_shape(a: &Shape, b: &Shape) -> Result<Shape, ShapeError> {
    let inner = |x: Dim, y: Dim| {
        if x == y {
            Ok(())
        } else {
            Err(err(
                "inner dimensions of the matrix product differ",
                vec![0, 1],
            ))
        }
    };
    match (a.rank(), b.rank()) {
        (2, 2) => inner(a.0[1], b.0[0]).map(|_| Shape(vec![a.0[0], b.0[1]])),
        (2, 1) => inner(a.0[1], b.0[0]).map(|_| Shape(vec![a.0[0]])),
        (1, 2) => inner(a.0[0], b.0[0]).map(|_| Shape(vec![b.0[1]])),
        (1, 1) => inner(a.0[0], b.0[0]).map(|_| Shape::scalar()),
        _ => Err(err("`@` takes vectors and matrices only", vec![0, 1])),
    }
}
