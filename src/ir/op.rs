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
    /// log(1 + x), accurate for small x.
    Log1p,
    /// exp(x) − 1, accurate for small x.
    Expm1,
    Abs,
    /// −1, 0 or 1 (0 at 0 and for NaN... NaN stays NaN).
    Sign,
    Sin,
    Cos,
    /// log(1 + exp(x)), computed as max(x, 0) + log1p(exp(−|x|)) so it never overflows.
    Softplus,

    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// 1 where equal, else 0. Comparisons are not differentiable (zero derivative).
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Elementwise larger of two values (the first on ties).
    Max,
    /// Elementwise smaller of two values (the first on ties).
    Min,
    /// `where(c, a, b)`: a where c ≠ 0, else b; all three broadcast.
    Select,

    /// Matrix product of vectors and matrices, as `@` in numpy.
    MatMul,
    Transpose,

    /// Sum over one axis, or over all elements when `axis` is `None`.
    Sum {
        axis: Option<u32>,
    },
    /// log(sum(exp(x))) over one axis or all elements, computed with the max shifted out.
    LogSumExp {
        axis: Option<u32>,
    },
    /// Largest element over one axis or all; the derivative is shared equally among ties.
    ReduceMax {
        axis: Option<u32>,
    },
    /// Smallest element over one axis or all; the derivative is shared equally among ties.
    ReduceMin {
        axis: Option<u32>,
    },
    /// Index of the largest element along an axis (first on ties), as a float.
    ArgMax {
        axis: u32,
    },
    /// One index along an axis, which is removed: `x[:, j]`.
    Take {
        axis: u32,
        index: u64,
    },
    /// The adjoint of `Take`: embeds into zeros of a larger axis of length `size`.
    Put {
        axis: u32,
        index: u64,
        size: u64,
    },
    /// Integer class indices to rows of an identity matrix; the new axis is last.
    OneHot {
        classes: u32,
    },

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
            Log1p | Expm1 | Abs | Sign | Sin | Cos | Softplus => 1,
            Add | Sub | Mul | Div | Pow | Eq | Ne | Lt | Le | Gt | Ge | Max | Min | MatMul => 2,
            Select => 3,
            Transpose | Sum { .. } | LogSumExp { .. } | ArgMax { .. } | OneHot { .. } => 1,
            ReduceMax { .. } | ReduceMin { .. } | Take { .. } | Put { .. } => 1,
            SumTo(_) | Expand(_) | Reshape(_) => 1,
        }
    }

    /// Applies the same function to every element (with broadcasting for binary ops).
    pub fn is_elementwise(&self) -> bool {
        use Op::*;
        self.is_unary() || self.is_binary() || *self == Select
    }

    pub fn is_unary(&self) -> bool {
        use Op::*;
        matches!(
            self,
            Neg | Exp
                | Log
                | Sqrt
                | Tanh
                | Sigmoid
                | Relu
                | Step
                | Log1p
                | Expm1
                | Abs
                | Sign
                | Sin
                | Cos
                | Softplus
        )
    }

    pub fn is_binary(&self) -> bool {
        use Op::*;
        matches!(
            self,
            Add | Sub | Mul | Div | Pow | Eq | Ne | Lt | Le | Gt | Ge | Max | Min
        )
    }

    /// Comparisons give 0 or 1 and have zero derivative.
    pub fn is_comparison(&self) -> bool {
        use Op::*;
        matches!(self, Eq | Ne | Lt | Le | Gt | Ge)
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
            Log1p => "log1p",
            Expm1 => "expm1",
            Abs => "abs",
            Sign => "sign",
            Sin => "sin",
            Cos => "cos",
            Softplus => "softplus",
            Ne => "ne",
            Lt => "lt",
            Le => "le",
            Gt => "gt",
            Ge => "ge",
            Max => "max",
            Min => "min",
            Select => "select",
            ReduceMax { .. } => "reduce_max",
            ReduceMin { .. } => "reduce_min",
            Take { .. } => "take",
            Put { .. } => "put",
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
