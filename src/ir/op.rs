//! The primitive operations of the graph IR.
//!
//! Invariant: the set is small. Surface conveniences (`mean`, `relu` of a sum, `x - y` on
//! scalars) are desugared by the checker into these primitives; every primitive has a shape
//! rule, an interpreter rule, a derivative rule and a code generator, each an exhaustive `match`
//! with no wildcard arm, so adding a variant makes the compiler list every place it needs
//! (ARCHITECTURE.md, "How to add an op"). Name, arity and class come from `Op::facts` alone.

use super::shape::{Dim, Shape};

/// The data of an array literal: its fixed shape and its elements in row-major order, kept as
/// the bits of f64s so that the op can be hashed.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LiteralData {
    pub shape: Shape,
    pub bits: Vec<u64>,
}

impl LiteralData {
    /// The most numbers a literal holds: it is checked element by element in the source and
    /// kept with the generated code. Larger constant data belongs in an input file.
    pub const MAX_ELEMENTS: usize = 4096;

    pub fn new(shape: Shape, values: &[f64]) -> LiteralData {
        LiteralData {
            shape,
            bits: values.iter().map(|v| v.to_bits()).collect(),
        }
    }

    pub fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.bits.iter().map(|&b| f64::from_bits(b))
    }
}

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
    /// The vector 0, 1, …, len − 1: an index along one axis, computed, never read from data.
    Iota(Dim),
    /// A small array of constants written in the source (`[[1, 2], [3, 4]]`).
    Literal(Box<LiteralData>),
    /// A training step's dropout mask for one `dropout` call (`site`, counted in source order):
    /// each element is 0 with probability `p` (the bits of an f64) and 1/(1 − p) otherwise,
    /// drawn from the step's key and the element's flat index (`ir::dropout`). Only training
    /// graphs hold it; their evaluation form has none.
    DropMask {
        shape: Shape,
        p: u64,
        site: u32,
    },
    /// The i-th state tensor of the model (`Graph::states`): a batch normalization's running
    /// mean or variance. Read like a parameter, but not trained: evaluation graphs normalize
    /// with it, and a training step outputs its next value, which the step stores back.
    State(u32),

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
    /// The error function, 2/√π ∫₀ˣ e^(−t²) dt.
    Erf,
    /// The complementary error function, 1 − erf(x) = 2/√π ∫ₓ^∞ e^(−t²) dt, computed without
    /// the subtraction, so that it keeps its digits where erf(x) is close to 1.
    Erfc,

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

    /// Matrix product as numpy's `matmul` (`@`): of vectors and matrices, and over batch axes
    /// (those before the last two), which broadcast.
    MatMul,
    /// Axis permutation (numpy's `transpose`): axis `i` of the result is axis `perm[i]` of the
    /// operand.
    Transpose {
        perm: Vec<u32>,
    },

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
    /// Whole-number indices into one axis, whose place the indices' axes take: `E[tok]`,
    /// `take(E, idx, axis)`. Operands: the array and the indices (any rank); the result has
    /// shape `array[..axis] ++ indices ++ array[axis + 1..]`. An index is read as the nearest
    /// whole number; one outside the axis (which binding data rejects) gives NaN, never a read
    /// outside the array.
    Gather {
        axis: u32,
    },
    /// The adjoint of `Gather`: adds each slice of the values into the row its index names,
    /// along an axis of length `size` that replaces the indices' axes, so repeated indices sum.
    /// Operands: the values and the indices. An index outside the axis adds nothing.
    ScatterAdd {
        axis: u32,
        size: u64,
    },
    /// Sliding windows over the last `kernel.len()` axes (all of fixed length): an operand
    /// `[..., S1, …, Sk]` is viewed as `[..., K1, …, Kk, O1, …, Ok]`, element `[.., j, o]` being
    /// `x[.., o·stride + j·dilation]`, with `O = (S − dilation·(K − 1) − 1) / stride + 1`. The
    /// patches of a convolution or a pooling; a strided view, never copied by itself.
    Windows {
        kernel: Vec<u64>,
        stride: Vec<u64>,
        dilation: Vec<u64>,
    },
    /// The adjoint of `Windows`: adds each patch element back into its place in zeros of the
    /// last `size.len()` axes, so places that several windows read sum their contributions.
    Unwindows {
        kernel: Vec<u64>,
        stride: Vec<u64>,
        dilation: Vec<u64>,
        size: Vec<u64>,
    },
    /// Integer class indices to rows of an identity matrix; the new axis is last.
    OneHot {
        classes: u32,
    },

    /// Sum over broadcast axes down to a shape: the adjoint of broadcasting.
    SumTo(Shape),
    /// Broadcast to a shape.
    Expand(Shape),
    /// The same elements in row-major order under another shape of the same element count.
    Reshape(Shape),
    /// Every `step`-th element along `axis` from `start`, `len` of them: `x[start:stop:step]`.
    /// A negative step walks the axis backwards from `start`.
    Slice {
        axis: u32,
        start: u64,
        step: i64,
        len: u64,
    },
    /// The adjoint of `Slice`: embeds into zeros of an axis of length `size`, element `i` at
    /// `start + i·step`.
    Unslice {
        axis: u32,
        start: u64,
        step: i64,
        size: u64,
    },
}

impl Op {
    /// The transpose that reverses the axes of a rank-`rank` operand: what `transpose(x)`
    /// means, and the matrix transpose for rank 2.
    pub fn reversed_axes(rank: usize) -> Op {
        Op::Transpose {
            perm: (0..rank as u32).rev().collect(),
        }
    }

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

    /// The number of operands.
    pub fn arity(&self) -> usize {
        self.facts().class.arity()
    }

    /// Applies the same function to every element (with broadcasting for binary ops).
    pub fn is_elementwise(&self) -> bool {
        matches!(
            self.facts().class,
            Class::Unary | Class::Binary | Class::Comparison | Class::Ternary
        )
    }

    pub fn is_unary(&self) -> bool {
        self.facts().class == Class::Unary
    }

    /// Binary elementwise, comparisons included.
    pub fn is_binary(&self) -> bool {
        matches!(self.facts().class, Class::Binary | Class::Comparison)
    }

    /// Comparisons give 0 or 1 and have zero derivative.
    pub fn is_comparison(&self) -> bool {
        self.facts().class == Class::Comparison
    }

    /// The name used in the canonical text form.
    pub fn name(&self) -> &'static str {
        self.facts().name
    }

    /// The one definition of each primitive's name, class and cost: every other per-op fact
    /// (arity, elementwise or not) is derived from it.
    pub fn facts(&self) -> Facts {
        use Class::*;
        use Op::*;
        let (name, class, cheap) = match self {
            Input(_) => ("input", Leaf, false),
            Param(_) => ("param", Leaf, false),
            Const(_) => ("const", Leaf, false),
            DimSize(_) => ("dim", Leaf, false),
            Iota(_) => ("iota", Leaf, false),
            Literal(_) => ("literal", Leaf, false),
            DropMask { .. } => ("dropout_mask", Leaf, false),
            State(_) => ("state", Leaf, false),
            Neg => ("neg", Unary, true),
            Exp => ("exp", Unary, false),
            Log => ("log", Unary, false),
            Sqrt => ("sqrt", Unary, false),
            Tanh => ("tanh", Unary, false),
            Sigmoid => ("sigmoid", Unary, false),
            Relu => ("relu", Unary, true),
            Step => ("step", Unary, true),
            Log1p => ("log1p", Unary, false),
            Expm1 => ("expm1", Unary, false),
            Abs => ("abs", Unary, true),
            Sign => ("sign", Unary, false),
            Sin => ("sin", Unary, false),
            Cos => ("cos", Unary, false),
            Softplus => ("softplus", Unary, false),
            Erf => ("erf", Unary, false),
            Erfc => ("erfc", Unary, false),
            Add => ("add", Binary, true),
            Sub => ("sub", Binary, true),
            Mul => ("mul", Binary, true),
            Div => ("div", Binary, false),
            Pow => ("pow", Binary, false),
            Eq => ("eq", Comparison, false),
            Ne => ("ne", Comparison, false),
            Lt => ("lt", Comparison, false),
            Le => ("le", Comparison, false),
            Gt => ("gt", Comparison, false),
            Ge => ("ge", Comparison, false),
            Max => ("max", Binary, true),
            Min => ("min", Binary, true),
            Select => ("select", Class::Ternary, false),
            MatMul => ("matmul", Contraction, false),
            Transpose { .. } => ("transpose", Structural, false),
            Sum { .. } => ("sum", Structural, false),
            LogSumExp { .. } => ("logsumexp", Structural, false),
            ReduceMax { .. } => ("reduce_max", Structural, false),
            ReduceMin { .. } => ("reduce_min", Structural, false),
            ArgMax { .. } => ("argmax", Structural, false),
            Take { .. } => ("take", Structural, false),
            Put { .. } => ("put", Structural, false),
            Gather { .. } => ("gather", Indexing, false),
            ScatterAdd { .. } => ("scatter_add", Indexing, false),
            Windows { .. } => ("windows", Structural, false),
            Unwindows { .. } => ("unwindows", Structural, false),
            OneHot { .. } => ("one_hot", Structural, false),
            SumTo(_) => ("sum_to", Structural, false),
            Expand(_) => ("expand", Structural, false),
            Reshape(_) => ("reshape", Structural, false),
            Slice { .. } => ("slice", Structural, false),
            Unslice { .. } => ("unslice", Structural, false),
        };
        Facts { name, class, cheap }
    }
}

/// A primitive's facts, from `Op::facts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    pub name: &'static str,
    pub class: Class,
    /// About one vector instruction per element: cheaper to compute again where it is read
    /// than to store and load. Lowering recomputes such an elementwise node of one stored
    /// operand in each loop that reads it rather than keep it in a buffer (`lower::fusible`).
    pub cheap: bool,
}

/// What kind of function a primitive is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// No operands: an input, parameter, constant or dimension size.
    Leaf,
    /// One operand; the same function of each element.
    Unary,
    /// Two broadcast operands; the same function of each pair of elements.
    Binary,
    /// A binary elementwise op whose result is 0 or 1, with zero derivative.
    Comparison,
    /// `where(c, a, b)`: three broadcast operands.
    Ternary,
    /// The matrix product: two operands, not elementwise.
    Contraction,
    /// One operand, not elementwise: reductions, views, indexing.
    Structural,
    /// Two operands, an array and whole-number indices into one of its axes: gathers and
    /// their adjoints. Not differentiable in the indices.
    Indexing,
}

impl Class {
    pub fn arity(self) -> usize {
        match self {
            Class::Leaf => 0,
            Class::Unary | Class::Structural => 1,
            Class::Binary | Class::Comparison | Class::Contraction | Class::Indexing => 2,
            Class::Ternary => 3,
        }
    }
}
