//! The plan's verifier: what the code generator assumes of a plan, checked.
//!
//! - Every slot is written by exactly one step (inputs and parameters by the caller), and
//!   before any step reads it; every output slot is written.
//! - A scalar held in a register is computed by a step before any step reads it.
//! - Every view stays inside its slot, under several bindings of the symbolic dimensions (the
//!   strides are products of dimensions, so a view that fits at these fits at every binding
//!   lowering produces; a wrong stride shows at one of them).
//!
//! The code generator trusts these: a slot read before it is written would be garbage, a view
//! past its slot's end an out-of-bounds read in native code.

use super::{Member, MemberKind, Plan, SlotKind, Step, Stride, Val};
use crate::ir::{Dim, Graph, NodeId, Shape};
use crate::model::GraphFn;
use std::collections::HashSet;

/// A broken invariant, with the step (by index in `Plan::steps`) where it shows.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PlanError {
    #[error("step {step} reads slot s{slot} before any step writes it")]
    ReadBeforeWrite { step: usize, slot: u32 },
    #[error("step {step} writes slot s{slot}, which step {first} wrote already")]
    WrittenTwice {
        step: usize,
        slot: u32,
        first: usize,
    },
    #[error("step {step} writes slot s{slot}, which holds an input or a parameter")]
    WritesCallerSlot { step: usize, slot: u32 },
    #[error("no step writes output slot s{slot}")]
    OutputNotWritten { slot: u32 },
    #[error("step {step} reads the register of {node} before a step computes it")]
    RegisterBeforeScalar { step: usize, node: NodeId },
    #[error(
        "{node} is read through slot s{slot} at offset {offset}, past its {len} elements (binding {binding:?})"
    )]
    ViewOutOfBounds {
        node: NodeId,
        slot: u32,
        offset: u128,
        len: u128,
        binding: Vec<u64>,
    },
    #[error("step {step} reads {node}, which has no planned value")]
    Unplanned { step: usize, node: NodeId },
}

/// Checks every invariant of `plan`, a plan of `f`.
pub fn verify(f: &GraphFn, plan: &Plan) -> Result<(), PlanError> {
    views_in_bounds(&f.graph, plan)?;
    let mut state = Written::new(plan);
    for (i, step) in plan.steps.iter().enumerate() {
        state.step(&f.graph, plan, i, step)?;
    }
    for &slot in &plan.outputs {
        if state.by[slot as usize].is_none() {
            return Err(PlanError::OutputNotWritten { slot });
        }
    }
    Ok(())
}

/// Which step wrote each slot so far (`usize::MAX`: the caller), and which registers exist.
struct Written {
    by: Vec<Option<usize>>,
    registers: HashSet<NodeId>,
}

const CALLER: usize = usize::MAX;

impl Written {
    fn new(plan: &Plan) -> Written {
        let by = plan
            .slots
            .iter()
            .map(|s| matches!(s.kind, SlotKind::Input(_) | SlotKind::Param(_)).then_some(CALLER))
            .collect();
        Written {
            by,
            registers: HashSet::new(),
        }
    }

    fn step(&mut self, g: &Graph, plan: &Plan, i: usize, step: &Step) -> Result<(), PlanError> {
        let reads = Reads { g, plan, step: i };
        let mut read = Vec::new();
        let mut writes = Vec::new();
        match step {
            Step::Compute { node, slot, aux } => {
                reads.operands(*node, &[], &mut read, &self.registers)?;
                writes.push(*slot);
                writes.extend(aux);
            }
            Step::Scalar { node } => {
                reads.operands(*node, &[], &mut read, &self.registers)?;
            }
            Step::Copy { src, slot, .. } => {
                reads.value(src, &[], &mut read, &self.registers)?;
                writes.push(*slot);
            }
            Step::Group {
                members, blocked, ..
            } => {
                let lanes: Vec<NodeId> = members.iter().map(|m| m.node).collect();
                let own: Vec<u32> = members.iter().filter_map(written_slot).collect();
                for m in members {
                    reads.operands(m.node, &lanes, &mut read, &self.registers)?;
                }
                writes.extend(&own);
                if let Some(b) = blocked {
                    reads.operands(b.before.0, &[], &mut read, &self.registers)?;
                    writes.push(b.before.1);
                    let mut after = Vec::new();
                    reads.operands(b.after.0, &[], &mut after, &self.registers)?;
                    // The product after the loop reads what the loop stored, block by block.
                    read.extend(after.into_iter().filter(|s| !own.contains(s)));
                    writes.push(b.after.1);
                }
                // The product before the loop writes what the loop reads.
                if let Some(b) = blocked {
                    read.retain(|&s| s != b.before.1);
                }
            }
        }
        for &slot in &read {
            if self.by[slot as usize].is_none() {
                return Err(PlanError::ReadBeforeWrite { step: i, slot });
            }
        }
        for &slot in &writes {
            match self.by[slot as usize] {
                Some(CALLER) => return Err(PlanError::WritesCallerSlot { step: i, slot }),
                Some(first) => {
                    return Err(PlanError::WrittenTwice {
                        step: i,
                        slot,
                        first,
                    });
                }
                None => self.by[slot as usize] = Some(i),
            }
        }
        if let Step::Scalar { node } = step {
            self.registers.insert(*node);
        }
        Ok(())
    }
}

/// The slot a loop member writes, if it writes one.
pub(super) fn written_slot(m: &Member) -> Option<u32> {
    match m.kind {
        MemberKind::Elementwise => m.stored.then_some(m.slot),
        MemberKind::Sum | MemberKind::ColumnSum | MemberKind::RowSum => Some(m.slot),
    }
}

/// The slots a step reads, found through the values of its nodes' operands.
struct Reads<'a> {
    g: &'a Graph,
    plan: &'a Plan,
    step: usize,
}

impl Reads<'_> {
    fn operands(
        &self,
        id: NodeId,
        lanes: &[NodeId],
        out: &mut Vec<u32>,
        registers: &HashSet<NodeId>,
    ) -> Result<(), PlanError> {
        for &a in &self.g.node(id).inputs {
            if lanes.contains(&a) {
                continue;
            }
            let Some(v) = &self.plan.values[a.index()] else {
                return Err(PlanError::Unplanned {
                    step: self.step,
                    node: a,
                });
            };
            self.value(v, lanes, out, registers)?;
        }
        Ok(())
    }

    fn value(
        &self,
        v: &Val,
        lanes: &[NodeId],
        out: &mut Vec<u32>,
        registers: &HashSet<NodeId>,
    ) -> Result<(), PlanError> {
        match v {
            Val::Const(_) | Val::DimSize(_) => Ok(()),
            Val::View { slot, .. } => {
                out.push(*slot);
                Ok(())
            }
            Val::Inline(id) => self.operands(*id, lanes, out, registers),
            Val::Register(id) if registers.contains(id) => Ok(()),
            Val::Register(id) => Err(PlanError::RegisterBeforeScalar {
                step: self.step,
                node: *id,
            }),
        }
    }
}

/// Bindings of the symbolic dimensions the views are checked under: all 1, then distinct
/// sizes, so that a stride taken from the wrong dimension overruns at one of them.
fn bindings(n_syms: usize) -> Vec<Vec<u64>> {
    vec![
        vec![1; n_syms],
        (0..n_syms as u64).map(|i| 2 + 3 * i).collect(),
        (0..n_syms as u64).map(|i| 7 + i).collect(),
    ]
}

fn views_in_bounds(g: &Graph, plan: &Plan) -> Result<(), PlanError> {
    for binding in bindings(g.syms.len()) {
        for id in g.ids() {
            let Some(Val::View { slot, strides }) = &plan.values[id.index()] else {
                continue;
            };
            let sizes = g.shape(id).concrete(&binding);
            if sizes.contains(&0) {
                continue;
            }
            let offset: u128 = sizes
                .iter()
                .zip(strides)
                .map(|(&n, s)| (n as u128 - 1) * stride_under(s, &binding))
                .sum();
            let len = elements(&plan.slots[*slot as usize].shape, &binding);
            if offset >= len {
                return Err(PlanError::ViewOutOfBounds {
                    node: id,
                    slot: *slot,
                    offset,
                    len,
                    binding,
                });
            }
        }
    }
    Ok(())
}

fn stride_under(s: &Stride, binding: &[u64]) -> u128 {
    match s {
        Stride::Zero => 0,
        Stride::Prod(dims) => dims.iter().map(|d| dim_under(d, binding)).product(),
    }
}

fn dim_under(d: &Dim, binding: &[u64]) -> u128 {
    match *d {
        Dim::Fixed(k) => k as u128,
        Dim::Sym(s) => binding[s as usize] as u128,
    }
}

fn elements(shape: &Shape, binding: &[u64]) -> u128 {
    shape.0.iter().map(|d| dim_under(d, binding)).product()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnostics::SourceFile;

    fn gradient_of(src: &str) -> GraphFn {
        let file = SourceFile::new("t.dsl", src);
        let (model, _) = crate::compile::check_source(&file).expect("checks");
        crate::compile::graphs(&model).gradient
    }

    const MODEL: &str = "dtype f64\ninput A[n, 3]\ninput z[n]\nparam w[3] ~ zeros\n\
                         let r = A @ w - z\nloss mean(r^2)\n";

    #[test]
    fn a_lowered_plan_verifies() {
        let f = gradient_of(MODEL);
        assert_eq!(verify(&f, &super::super::plan(&f)), Ok(()));
    }

    /// Each broken invariant is found: a step moved before the step that writes what it
    /// reads, a slot written twice, a view one element too long, an output never written.
    #[test]
    fn every_broken_invariant_is_found() {
        let f = gradient_of(MODEL);
        let good = super::super::plan(&f);

        let mut reversed = good.clone();
        reversed.steps.reverse();
        assert!(matches!(
            verify(&f, &reversed),
            Err(PlanError::ReadBeforeWrite { .. } | PlanError::RegisterBeforeScalar { .. })
        ));

        let mut twice = good.clone();
        let writer = twice
            .steps
            .iter()
            .position(|s| !matches!(s, Step::Scalar { .. }))
            .unwrap();
        let again = twice.steps[writer].clone();
        twice.steps.insert(writer + 1, again);
        assert!(matches!(
            verify(&f, &twice),
            Err(PlanError::WrittenTwice { .. })
        ));

        let mut long = good.clone();
        let a = f
            .graph
            .ids()
            .find(|&id| f.graph.node(id).op == crate::ir::Op::Input(0));
        long.values[a.unwrap().index()] = Some(Val::View {
            slot: 0,
            strides: vec![Stride::Prod(vec![Dim::Fixed(4)]), Stride::Prod(vec![])],
        });
        assert!(matches!(
            verify(&f, &long),
            Err(PlanError::ViewOutOfBounds { .. })
        ));

        let mut unwritten = good.clone();
        unwritten.steps.clear();
        assert!(matches!(
            verify(&f, &unwritten),
            Err(PlanError::OutputNotWritten { .. })
        ));
    }
}
