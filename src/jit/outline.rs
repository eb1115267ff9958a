//! Steps of long functions as functions of their own, each compiled once per distinct code.
//!
//! A transformer's blocks run the same steps on other slots, and one long function compiled
//! them once per block: Cranelift's time grows with the function. In a function generated
//! `bounded` for its length (`MAX_HELD_STEPS`), each step that only reads and writes memory
//! and reads scalars is built as a part (`Tx::part_function`). It reads its slots' pointers
//! through a list and its caller's scalars from a frame, in the order it first reads them, so
//! the same step on other slots is the same function, and `part_code` compiles it once. The
//! long function keeps what holds values across steps (scalar steps, the fused loop's state)
//! and calls each outlined step with its list and frame. Each parameter's update is a part of
//! its own there too (`Tx::update_in_part`), one function for every parameter of at least a
//! vector.
//!
//! A step runs the same instructions outlined as inline: its arithmetic and its order are
//! the plan's either way, so its results are the same to the bit.

use super::*;

/// Steps whose own function would have fewer instructions than this stay inline: their call
/// (the tables, their list of slots and a frame of the scalars they read) would cost about as
/// much as their code. A model of two thousand scalar parameters outlined every step and
/// doubled its instructions.
const MIN_OUTLINED_INSTRUCTIONS: usize = 32;

impl Tx<'_> {
    /// Generates `step` as a call of a function of its own, or returns false where it stays
    /// inline: in functions that do not outline, for scalar steps (they hold a value for the
    /// steps after them), for loops already split into parts (their code is a part) and for
    /// steps of little code.
    pub(super) fn outlined_step(
        &mut self,
        g: &Graph,
        plan: &Plan,
        step: &Step,
        decision: &Decision,
    ) -> bool {
        if !self.outlines || !outlinable(step, decision) {
            return false;
        }
        let built = self.part_function(PartEntry::Call, &mut |tx, _, _, _, _| {
            tx.step(g, plan, step, decision);
        });
        let part = match built {
            Ok(f) if instructions(&f.func) < MIN_OUTLINED_INSTRUCTIONS => return false,
            Ok(f) => self.define_part(f),
            Err(e) => Err(e),
        };
        let part = match part {
            Ok(part) => part,
            Err(e) => {
                // `define` reports it; the step is not generated.
                self.part.failure.get_or_insert(e);
                return true;
            }
        };
        let list = self.slot_list(&part.reads.slots);
        let captures = self.captures(&part.reads.scalars);
        let fref = self.module.declare_func_in_func(part.id, self.b.func);
        let tables = [self.tables.ptrs, self.tables.dims, self.tables.scalars];
        self.b
            .ins()
            .call(fref, &[tables[0], tables[1], tables[2], list, captures]);
        true
    }

    /// The scalar nodes' values in a frame on the stack, eight bytes apart; 0 for none.
    fn captures(&mut self, nodes: &[NodeId]) -> Value {
        if nodes.is_empty() {
            return self.iconst(0);
        }
        let values: Vec<Value> = nodes.iter().map(|&n| self.scalar_node(n)).collect();
        let slot = self.b.create_sized_stack_slot(StackSlotData::new(
            StackSlotKind::ExplicitSlot,
            8 * values.len() as u32,
            3,
        ));
        let base = self.b.ins().stack_addr(types::I64, slot, 0);
        for (k, v) in values.into_iter().enumerate() {
            self.b.ins().store(flags(), v, base, 8 * k as i32);
        }
        base
    }
}

/// Whether a step can run as a function of its own: it writes memory only, and reads only
/// memory, the tables and scalars held before it.
fn outlinable(step: &Step, decision: &Decision) -> bool {
    match step {
        Step::Copy { .. } | Step::Compute { .. } => true,
        Step::Group { .. } => matches!(decision.parts, Some(Parts::One(_))),
        Step::Scalar { .. } => false,
    }
}

fn instructions(func: &cranelift::codegen::ir::Function) -> usize {
    func.layout
        .blocks()
        .map(|b| func.layout.block_insts(b).count())
        .sum()
}
