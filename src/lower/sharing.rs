//! How a matrix product shares itself between cores: the rule the GEMM kernels apply
//! (`kernels::gemm`), recorded per product step so that the plan shows it.
//!
//! The rule is data ([`RULE`]) that the kernels read, not a count fixed here: a product's
//! sizes may be known only when data arrives, and the kernels receive them in the call the
//! generated code already makes (passing the rule in that call too would change the code for
//! nothing, as every product applies the same rule). What the plan records per step is which
//! form of the rule applies (blocks of one product, batches of products, or one core for a
//! matrix–vector product) and the multiply-adds it is applied to, evaluated where every size
//! is fixed. The result never depends on the sharing: each element of C is the same kernel's
//! sum over the inner dimension either way.

use super::summed_products::{product_form, times};
use super::{Step, Stride, Val, broadcast_strides, contiguous};
use crate::ir::shape::MatMulParts;
use crate::ir::{Dim, Graph, NodeId, Op, Shape};

/// The sharing rule of the GEMM kernels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SharingRule {
    /// A product of fewer multiply-adds than this runs on the calling thread.
    pub min_work: usize,
    /// Rows in a block of C, when C is taller than wide (matrixmultiply's tiles are at most 16
    /// rows and 32 columns: a block of whole tiles).
    pub row_block: usize,
    /// Columns in a block of C otherwise.
    pub column_block: usize,
}

/// The rule every product applies.
pub const RULE: SharingRule = SharingRule {
    min_work: 1 << 22,
    row_block: 16,
    column_block: 32,
};

/// The sizes of one product as the kernel runs it: its rows (m, then the batch axes folded
/// into rows), its inner dimension (k, then the summed batch axes folded into it) and its
/// columns (n); 1 for a vector's missing axis.
#[derive(Clone, Debug, PartialEq)]
pub struct ProductSize {
    pub rows: Vec<Dim>,
    pub inner: Vec<Dim>,
    pub columns: Dim,
}

impl ProductSize {
    /// Every factor of the product's multiply-adds: rows, inner dimension, columns.
    pub fn dims(&self) -> Vec<Dim> {
        let mut dims = self.rows.clone();
        dims.extend(&self.inner);
        dims.push(self.columns);
        dims
    }

    /// Whether C is taller than wide, where every size is fixed (the kernel's choice between
    /// blocks of rows and blocks of columns).
    pub fn taller(&self) -> Option<bool> {
        let rows = fixed_product(&self.rows)?;
        let columns = fixed_product(std::slice::from_ref(&self.columns))?;
        Some(rows > columns)
    }
}

/// How a product step shares itself between cores under [`RULE`].
#[derive(Clone, Debug, PartialEq)]
pub enum Sharing {
    /// One product (`size`; a batched product whose batch axes all fold into its rows or its
    /// inner dimension): from `min_work` multiply-adds on, one block of C per thread, of
    /// `row_block` rows when C is taller than wide, of `column_block` columns otherwise; below
    /// it on the calling thread.
    Blocks { size: ProductSize },
    /// A product per index of the batch axes left (`batch`), each of `size`: each product
    /// from `min_work` on shared as [`Sharing::Blocks`], one after another; smaller ones, where
    /// all of them together reach `min_work`, a run of whole products per thread; else all on
    /// the calling thread. Products summed along a batch axis that does not fold would run in
    /// index order on the calling thread; lowering plans none (`summed_products`).
    Batches { batch: Vec<Dim>, size: ProductSize },
    /// A matrix–vector product: always on the calling thread.
    MatrixVector,
}

impl Sharing {
    /// The multiply-adds of all the products together, where every size is fixed.
    pub fn fixed_work(&self) -> Option<u64> {
        match self {
            Sharing::Blocks { size } => fixed_product(&size.dims()),
            Sharing::Batches { batch, size } => {
                Some(fixed_product(batch)?.saturating_mul(fixed_product(&size.dims())?))
            }
            Sharing::MatrixVector => None,
        }
    }
}

fn fixed_product(dims: &[Dim]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, d| match d {
        Dim::Fixed(k) => Some(acc.saturating_mul(*k)),
        Dim::Sym(_) => None,
    })
}

/// The sharing of a step that runs a product (a stored `matmul`, or a batched product run by
/// the sum over its batch axes); `None` for other steps.
pub(super) fn decide(g: &Graph, values: &[Option<Val>], step: &Step) -> Option<Sharing> {
    let Step::Compute { node, .. } = step else {
        return None;
    };
    let (product, summed) = match g.op(*node) {
        Op::MatMul => (*node, Vec::new()),
        Op::SumTo(_) => {
            let product = super::summed_product(g, values, *node)?;
            let axes = super::summed_products::summed_axes(g, product, *node)
                .expect("a summed product sums batch axes");
            (product, axes)
        }
        _ => return None,
    };
    let inputs = &g.node(product).inputs;
    let (a, b) = (g.shape(inputs[0]), g.shape(inputs[1]));
    let parts = MatMulParts::of(a, b);
    let mut size = ProductSize {
        rows: vec![parts.m.unwrap_or(Dim::Fixed(1))],
        inner: vec![parts.k_a],
        columns: parts.n.unwrap_or(Dim::Fixed(1)),
    };
    if !parts.is_batched() {
        return Some(match a.rank() + b.rank() {
            3 => Sharing::MatrixVector,
            _ => Sharing::Blocks { size },
        });
    }
    let out = g.shape(product);
    let rank = out.rank() - usize::from(a.rank() > 1) - usize::from(b.rank() > 1);
    // The kernel first makes rows of the innermost batch axes that continue A's and C's rows
    // (`fold_rows`; never a summed one), then folds the summed axes into the inner dimension
    // (lowering plans no other summed product): what is left is one product per index of the
    // other batch axes.
    let strides_c = match summed.is_empty() {
        true => contiguous(out),
        false => broadcast_strides(g.shape(*node), &contiguous(g.shape(*node)), out),
    };
    let rows = rows_folded(g, values, product, &strides_c);
    size.rows
        .extend((rank - rows..rank).rev().map(|i| out.0[i]));
    let (folded, batch): (Vec<usize>, Vec<usize>) =
        (0..rank - rows).partition(|i| summed.contains(i));
    size.inner.extend(folded.iter().map(|&i| out.0[i]));
    if batch.is_empty() {
        return Some(Sharing::Blocks { size });
    }
    Some(Sharing::Batches {
        batch: batch.iter().map(|&i| out.0[i]).collect(),
        size,
    })
}

/// How many of a batched product's innermost batch axes the kernel makes rows of
/// (`kernels::gemm::fold_rows`), given its result's strides `strides_c`: from the innermost
/// out, while B is broadcast along the axis and A's and C's strides along it are their row
/// strides times the rows so far, under every binding of the symbolic dimensions. (Sizes
/// bound at run time could make strides equal that differ here; the kernel would then fold
/// more than the plan says, with the same sums.)
fn rows_folded(g: &Graph, values: &[Option<Val>], product: NodeId, strides_c: &[Stride]) -> usize {
    let node = g.node(product);
    let view = |k: usize| match &values[node.inputs[k].index()] {
        Some(Val::View { strides, .. }) => Some(strides.clone()),
        _ => None,
    };
    let (Some(strides_a), Some(strides_b)) = (view(0), view(1)) else {
        return 0;
    };
    let (a, b, out) = (
        g.shape(node.inputs[0]),
        g.shape(node.inputs[1]),
        g.shape(product),
    );
    let batch = out.rank() - usize::from(a.rank() > 1) - usize::from(b.rank() > 1);
    // An operand's stride along batch axis i of the result, as the generated code passes it
    // to the kernel.
    let along = |s: &Shape, strides: &[Stride], i: usize| {
        MatMulParts::operand_axis(s, batch, i)
            .map_or(product_form(&Stride::Zero), |j| product_form(&strides[j]))
    };
    let (row_a, row_c) = match (a.rank() > 1, b.rank() > 1) {
        (true, true) => (&strides_a[a.rank() - 2], &strides_c[out.rank() - 2]),
        (true, false) => (&strides_a[a.rank() - 2], &strides_c[out.rank() - 1]),
        (false, _) => (&Stride::Zero, &Stride::Zero),
    };
    let (row_a, row_c) = (product_form(row_a), product_form(row_c));
    let zero = product_form(&Stride::Zero);
    let mut rows = vec![match a.rank() > 1 {
        true => a.0[a.rank() - 2],
        false => Dim::Fixed(1),
    }];
    for i in (0..batch).rev() {
        let c = product_form(&strides_c[i]);
        let continues = along(b, &strides_b, i) == zero
            && along(a, &strides_a, i) == times(row_a.clone(), &rows)
            && c == times(row_c.clone(), &rows)
            && c != zero;
        if !continues {
            return batch - 1 - i;
        }
        rows.push(out.0[i]);
    }
    batch
}

/// Checks a step's recorded sharing against the product it runs.
pub(super) fn check(
    g: &Graph,
    values: &[Option<Val>],
    step: &Step,
    s: Option<&Sharing>,
) -> Result<(), String> {
    let expected = decide(g, values, step);
    if s == expected.as_ref() {
        return Ok(());
    }
    match (s, &expected) {
        (None, None) => Ok(()),
        (Some(_), None) => Err("shares a product between cores but runs none".into()),
        (None, Some(_)) => Err("runs a product with no recorded sharing".into()),
        (Some(s), Some(e)) => Err(format!(
            "shares its product as {s:?}, but the product is shared as {e:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::SourceFile;
    use crate::kernels::gemm::{BatchAxis, fold_rows};

    /// Every size a fixture's symbols take in these tests.
    const SYM: i64 = 5;

    fn value(d: &Dim) -> i64 {
        match d {
            Dim::Fixed(k) => *k as i64,
            Dim::Sym(_) => SYM,
        }
    }

    fn stride(s: &Stride) -> isize {
        let product = |dims: &[Dim]| dims.iter().map(value).product::<i64>();
        (match s {
            Stride::Zero => 0,
            Stride::Prod(dims) => product(dims),
            Stride::Scaled(k, dims) => k * product(dims),
        }) as isize
    }

    /// The batch axes and rows the generated code passes the kernel for a stored batched
    /// product (`jit::products::batched_matmul_into`), sizes bound.
    fn kernel_call(
        g: &Graph,
        values: &[Option<Val>],
        id: NodeId,
    ) -> (Vec<BatchAxis>, usize, [isize; 2]) {
        let node = g.node(id);
        let view = |k: usize| match &values[node.inputs[k].index()] {
            Some(Val::View { strides, .. }) => strides.clone(),
            v => panic!("a product's operand is a view, not {v:?}"),
        };
        let (sa, sb) = (view(0), view(1));
        let (a, b, out) = (
            g.shape(node.inputs[0]),
            g.shape(node.inputs[1]),
            g.shape(id),
        );
        let sc = contiguous(out);
        let batch = out.rank() - usize::from(a.rank() > 1) - usize::from(b.rank() > 1);
        let along = |s: &Shape, strides: &[Stride], i: usize| {
            MatMulParts::operand_axis(s, batch, i).map_or(0, |j| stride(&strides[j]))
        };
        let axes = (0..batch)
            .map(|i| BatchAxis {
                len: value(&out.0[i]) as usize,
                strides: [along(a, &sa, i), along(b, &sb, i), stride(&sc[i])],
            })
            .collect();
        let (m, row_a, row_c) = match (a.rank() > 1, b.rank() > 1) {
            (true, true) => (a.0[a.rank() - 2], &sa[a.rank() - 2], &sc[out.rank() - 2]),
            (true, false) => (a.0[a.rank() - 2], &sa[a.rank() - 2], &sc[out.rank() - 1]),
            (false, _) => (Dim::Fixed(1), &Stride::Zero, &Stride::Zero),
        };
        (axes, value(&m) as usize, [stride(row_a), stride(row_c)])
    }

    /// For every stored batched product of these fixtures' gradients (layers, broadcast
    /// operands on either side, transposed views, vectors), the plan's sharing makes rows of
    /// exactly the batch axes the kernel makes rows of, and its rows are the kernel's.
    #[test]
    fn the_plan_folds_into_rows_what_the_kernel_folds() {
        let fixtures = [
            include_str!("../../tests/data/graph/matmul_batched.dsl"),
            include_str!("../../tests/data/graph/einsum_rows.dsl"),
            include_str!("../../tests/data/graph/attention_head.dsl"),
        ];
        let mut seen = [0; 2];
        for src in fixtures {
            let file = SourceFile::new("t.dsl", src);
            let (model, _) = crate::compile::check_source(&file, &crate::limits::Limits::of_host())
                .expect("checks");
            let f = crate::compile::graphs(&model).gradient;
            let plan = super::super::plan(&f);
            for (step, decision) in plan.steps.iter().zip(&plan.decisions) {
                let Step::Compute { node, .. } = step else {
                    continue;
                };
                if f.graph.op(*node) != &Op::MatMul {
                    continue;
                }
                let inputs = &f.graph.node(*node).inputs;
                let (a, b) = (f.graph.shape(inputs[0]), f.graph.shape(inputs[1]));
                if !MatMulParts::of(a, b).is_batched() {
                    continue;
                }
                let (axes, m, [row_a, row_c]) = kernel_call(&f.graph, &plan.values, *node);
                let (left, rows) = fold_rows(&axes, m, row_a, row_c);
                let size = match decision.sharing.as_ref() {
                    Some(Sharing::Blocks { size }) => {
                        assert!(left.is_empty(), "{size:?} but the kernel keeps {left:?}");
                        size
                    }
                    Some(Sharing::Batches { batch, size }) => {
                        assert_eq!(batch.len(), left.len(), "batch axes left");
                        size
                    }
                    other => panic!("a batched product shared as {other:?}"),
                };
                let planned: i64 = size.rows.iter().map(value).product();
                assert_eq!(planned as usize, rows, "rows of {:?}", f.graph.shape(*node));
                seen[usize::from(size.rows.len() > 1)] += 1;
            }
        }
        assert!(
            seen[0] > 0 && seen[1] > 0,
            "products that fold and that do not: {seen:?}"
        );
    }
}
