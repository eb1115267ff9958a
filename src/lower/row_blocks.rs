//! Row blocks: a loop group whose rows feed a product split into blocks of rows, so that a block
//! is still in cache when the product reads it.

use super::*;

/// Rows per block of a `RowBlocks` loop: a block of a 16-column f32 matrix is 16 KB.
pub const ROW_BLOCK: i64 = 256;

/// Finds `y = X w`, a loop group over y's rows, and `g = M s` with s from the group, in that
/// order (scalar steps before the group move before it, those after it stay after it: scalar
/// steps read no rows), and runs them block by block (`RowBlocks`).
pub(super) fn block_rows(g: &Graph, values: &[Option<Val>], steps: Vec<Step>) -> Vec<Step> {
    let matvec = |step: &Step| match step {
        Step::Compute {
            node,
            slot,
            aux: None,
        } if g.node(*node).op == Op::MatMul => {
            let n = g.node(*node);
            let (a, b) = (g.shape(n.inputs[0]), g.shape(n.inputs[1]));
            let views = n
                .inputs
                .iter()
                .all(|i| matches!(values[i.index()], Some(Val::View { .. })));
            (a.rank() == 2 && b.rank() == 1 && views).then_some((*node, *slot))
        }
        _ => None,
    };
    let mut out = Vec::with_capacity(steps.len());
    let mut i = 0;
    while i < steps.len() {
        let Some((p, p_slot)) = matvec(&steps[i]) else {
            out.push(steps[i].clone());
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < steps.len() && matches!(steps[j], Step::Scalar { .. }) {
            j += 1;
        }
        // Scalar steps after the group (they read its sums) stay after it.
        let mut k = j + 1;
        while k < steps.len() && matches!(steps[k], Step::Scalar { .. }) {
            k += 1;
        }
        let rows = g.shape(p).clone();
        let fits = match (steps.get(j), steps.get(k).and_then(&matvec)) {
            (Some(Step::Group { shape, members, .. }), Some((q, _))) => {
                let qn = g.node(q);
                let m_shape = g.shape(qn.inputs[0]);
                let s = qn.inputs[1];
                let s_is_member = match &values[s.index()] {
                    Some(Val::View {
                        slot,
                        strides,
                        offset,
                    }) => {
                        *strides == contiguous(&rows)
                            && offset.is_empty()
                            && members.iter().any(|m| m.slot == *slot && m.stored)
                    }
                    _ => false,
                };
                *shape == rows
                    && m_shape.0[1] == rows.0[0]
                    && s_is_member
                    && members
                        .iter()
                        .all(|m| reads_rows_aligned(g, values, m.node, p_slot, &rows))
            }
            _ => false,
        };
        if !fits {
            out.push(steps[i].clone());
            i += 1;
            continue;
        }
        out.extend(steps[i + 1..j].iter().cloned());
        let Step::Group { shape, members, .. } = steps[j].clone() else {
            unreachable!("matched above")
        };
        let after = matvec(&steps[k]).expect("matched above");
        out.push(Step::Group {
            shape,
            members,
            blocked: Some(RowBlocks {
                before: (p, p_slot),
                after,
            }),
        });
        out.extend(steps[j + 1..k].iter().cloned());
        i = k + 1;
    }
    out
}
