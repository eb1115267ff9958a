//! The primitive operations of the graph IR.
//!
//! Invariant: the set is small. Surface conveniences (`mean`, `relu` of a sum, `x - y` on
//! scalars) are desugared by the checker into these primitives; every primitive has a shape
//! rule, an interpreter rule, a derivative rule and a code generator, each an exhaustive `match`.

use super::shape::Shape;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// The i-th declared input (data).
    Input(u32),
    /// The i-th declared parameter.
    Param(u32),
    /// A scalar constant, stored as the bits of an f64 so the op can be hashed.
    Const(u64),
    /// The run-time size of a symbolic dimension, as a scalar.
    DimSize(u32),

    Neg,
    Exp,
    Log,
    Sqrt,
    Tanh,
    Sigmoid,
    Relu,
    /// Heaviside step, 1 where x > 0 else 0: the derivative of relu (subgradient 0 at 0).
    Step,

    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// 1 where equal, else 0. Not differentiable (zero derivative).
    Eq,

    /// Matrix product of vectors and matrices, as `@` in numpy.
    MatMul,
    Transpose,

    /// Sum over one axis, or over all elements when `axis` is `None`.
    Sum { axis: Option<u32> },
    /// log(sum(exp(x))) over one axis or all elements, computed with the max shifted out.
    LogSumExp { axis: Option<u32> },
    /// Index of the largest element along an axis (first on ties), as a float.
    ArgMax { axis: u32 },
    /// Integer class indices to rows of an identity matrix; the new axis is last.
    OneHot { classes: u32 },

    /// Sum over broadcast axes down to a shape: the adjoint of broadcasting.
    SumTo(Shape),
    /// Broadcast to a shape.
    Expand(Shape),
    /// Add or remove axes of size 1.
    Reshape(Shape),
}

impl Op {
    pub fn constant(value: f64) -> Op {
        // Canonicalise -0.0 to 0.0 only for hashing purposes would change semantics; keep bits.
        Op::Const(value.to_bits())
    }

    pub fn const_value(&self) -> Option<f64> {
        match self {
            Op::Const(bits) => Some(f64::from_bits(*bits)),
            _ => None,
        }
    }

    pub fn arity(&self) -> usize {
        use Op::*;
        match self {
            Input(_) | Param(_) | Const(_) | DimSize(_) => 0,
            Neg | Exp | Log | Sqrt | Tanh | Sigmoid | Relu | Step => 1,
            Add | Sub | Mul | Div | Pow | Eq | MatMul => 2,
            Transpose | Sum { .. } | LogSumExp { .. } | ArgMax { .. } | OneHot { .. } => 1,
            SumTo(_) | Expand(_) | Reshape(_) => 1,
        }
    }

    /// Applies the same function to every element (with broadcasting for binary ops).
    pub fn is_elementwise(&self) -> bool {
        use Op::*;
        matches!(self, Neg | Exp | Log | Sqrt | Tanh | Sigmoid | Relu | Step | Add | Sub | Mul | Div | Pow | Eq)
    }

    /// The name used in the canonical text form.
    pub fn name(&self) -> &'static str {
        use Op::*;
        match self {
            Input(_) => "input",
            Param(_) => "param",
            Const(_) => "const",
            DimSize(_) => "dim",
            Neg => "neg",
            Exp => "exp",
            Log => "log",
            Sqrt => "sqrt",
            Tanh => "tanh",
            Sigmoid => "sigmoid",
            Relu => "relu",
            Step => "step",
            Add => "add",
            Sub => "sub",
            Mul => "mul",
            Div => "div",
            Pow => "pow",
            Eq => "eq",
            MatMul => "matmul",
            Transpose => "transpose",
            Sum { .. } => "sum",
            LogSumExp { .. } => "logsumexp",
            ArgMax { .. } => "argmax",
            OneHot { .. } => "one_hot",
            SumTo(_) => "sum_to",
            Expand(_) => "expand",
            Reshape(_) => "reshape",
        }
    }
}
