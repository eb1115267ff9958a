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

use super::{Step, Val};
use crate::ir::shape::MatMulParts;
use crate::ir::{Dim, Graph, Op};

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

/// How a product step shares itself between cores under [`RULE`].
#[derive(Clone, Debug, PartialEq)]
pub enum Sharing {
    /// One product of m·k·n multiply-adds (`work`: m, k, n, 1 for a vector's missing axis,
    /// then the batch axes a summed product folds into its inner dimension):
    /// from `min_work` on, one block of C per thread, of `row_block` rows when C is taller than
    /// wide, of `column_block` columns otherwise; below it on the calling thread.
    Blocks { work: Vec<Dim> },
    /// A product per index of the batch axes (`batch`), each of m·k·n multiply-adds (`work`,
    /// as for `Blocks`), once batch axes that continue rows are folded into them: each product
    /// from `min_work` on shared as [`Sharing::Blocks`], one after another; smaller ones, where
    /// all of them together reach `min_work`, a run of whole products per thread; else all on
    /// the calling thread. Products summed along a batch axis that does not fold would run in
    /// index order on the calling thread; lowering plans none (`summed_products`).
    Batches { batch: Vec<Dim>, work: Vec<Dim> },
    /// A matrix–vector product: always on the calling thread.
    MatrixVector,
}

impl Sharing {
    /// The multiply-adds of all the products together, where every size is fixed.
    pub fn fixed_work(&self) -> Option<u64> {
        let dims = match self {
            Sharing::Blocks { work } => work.clone(),
            Sharing::Batches { batch, work } => batch.iter().chain(work).copied().collect(),
            Sharing::MatrixVector => return None,
        };
        dims.iter().try_fold(1u64, |acc, d| match d {
            Dim::Fixed(k) => Some(acc.saturating_mul(*k)),
            Dim::Sym(_) => None,
        })
    }
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
    let mut work = vec![
        parts.m.unwrap_or(Dim::Fixed(1)),
        parts.k_a,
        parts.n.unwrap_or(Dim::Fixed(1)),
    ];
    if parts.is_batched() {
        let out = g.shape(product);
        let rank = out.rank() - usize::from(a.rank() > 1) - usize::from(b.rank() > 1);
        // The summed axes fold into the inner dimension (lowering plans no other summed
        // product): what is left is one product per index of the other batch axes.
        let (folded, batch): (Vec<usize>, Vec<usize>) = (0..rank).partition(|i| summed.contains(i));
        work.extend(folded.iter().map(|&i| out.0[i]));
        if batch.is_empty() {
            return Some(Sharing::Blocks { work });
        }
        return Some(Sharing::Batches {
            batch: batch.iter().map(|&i| out.0[i]).collect(),
            work,
        });
    }
    if a.rank() + b.rank() == 3 {
        return Some(Sharing::MatrixVector);
    }
    Some(Sharing::Blocks { work })
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
