//! The fused training loop: the gradient plan and the optimizer update in one native loop over
//! steps, with the per-step scalars derived in the loop and single-element slots held in
//! registers across steps.

use super::*;

/// Slots of the fused training loop that can live in registers for all K steps: the plan's
/// (`lower::parts::fused_registers`: single-element parameters and gradients and a
/// single-element loss, none a product or a gather touches), and the optimizer state of every
/// single-element parameter.
pub(super) fn promotable_slots(
    f: &GraphFn,
    plan: &Plan,
    sizes: &[usize],
    slots: &UpdateSlots,
) -> Vec<u32> {
    debug_assert!(crate::lower::parts::is_training_step(&f.graph, plan));
    let mut out = crate::lower::parts::fused_registers(&f.graph, plan);
    for (i, &size) in sizes.iter().enumerate() {
        if size == 1 {
            out.extend(&slots.states[i]);
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// For each state tensor of the model (`Graph::states`): its slot, the slot of the output
/// holding its next value (the step graph's outputs after the gradients, in state order) and
/// its element count. Empty for a model without state.
fn model_state_copies(f: &GraphFn, plan: &Plan, n_params: usize) -> Vec<(u32, u32, usize)> {
    let next = &plan.outputs[1 + n_params..];
    debug_assert_eq!(
        next.len(),
        f.graph.states.len(),
        "an output per state tensor"
    );
    plan.slots
        .iter()
        .enumerate()
        .filter_map(|(s, slot)| match slot.kind {
            crate::lower::SlotKind::State(k) => {
                let len = slot
                    .shape
                    .fixed_elements()
                    .expect("a state tensor's fixed shape");
                Some((s as u32, next[k as usize], len))
            }
            crate::lower::SlotKind::Input(_)
            | crate::lower::SlotKind::Param(_)
            | crate::lower::SlotKind::Output(_)
            | crate::lower::SlotKind::Temp => None,
        })
        .collect()
}

impl Jit {
    /// Compiles the whole training step, looped. The table `scalars` holds the number of steps
    /// K, a reserved entry, β1ᵗ and β2ᵗ before the first step, then each step's learning rate;
    /// the loop derives the optimizer's other per-step scalars itself (`step_scalar`). Each
    /// iteration runs the gradient plan, then the update, which reads the gradients from the
    /// plan's output slots. Slots: the plan's, then every parameter's optimizer state arrays.
    pub fn compile_train_loop(
        &mut self,
        f: &GraphFn,
        plan: &Plan,
        spec: &OptimizerSpec,
        sizes: &[usize],
    ) -> Result<FuncId, CodegenError> {
        let n_state = spec.kind.state_arrays();
        let n_params = sizes.len();
        let first_state = plan.slots.len();
        let mut param_slots = vec![u32::MAX; n_params];
        for (k, s) in plan.slots.iter().enumerate() {
            if let crate::lower::SlotKind::Param(i) = s.kind {
                param_slots[i as usize] = k as u32;
            }
        }
        debug_assert!(
            param_slots.iter().all(|&s| s != u32::MAX),
            "a slot per parameter"
        );
        let slots = UpdateSlots {
            params: param_slots,
            grads: plan.outputs[1..=n_params].to_vec(),
            states: (0..n_params)
                .map(|i| {
                    (0..n_state)
                        .map(|k| (first_state + i * n_state + k) as u32)
                        .collect()
                })
                .collect(),
        };
        let state_copies = model_state_copies(f, plan, n_params);
        let n_slots = first_state + n_params * n_state;
        let bounded = is_bounded(n_slots, plan);
        // Held in registers for all K steps, a bounded function's many slots would be spilled
        // across the whole loop anyway.
        let promotable = if bounded {
            Vec::new()
        } else {
            promotable_slots(f, plan, sizes, &slots)
        };
        let constants = spec.constants();
        let step_scalars = spec.step_scalars(&constants);
        let shape = FnShape {
            n_slots,
            n_syms: f.graph.syms.len(),
            dtype: f.graph.dtype,
            bounded,
            // The optimizer's state arrays, after the plan's slots, have addresses of their own.
            address_slot: plan.storage.address_slots(n_slots),
            outline: outlines_steps(&f.graph, plan),
        };
        self.define(shape, |tx| {
            let count = tx.b.ins().load(types::F64, flags(), tx.tables.scalars, 0);
            let count = tx.b.ins().fcvt_to_sint_sat(types::I64, count);
            for &slot in &promotable {
                let var = tx.b.declare_var(tx.ty);
                let zero = tx.iconst(0);
                let v = tx.load_at(slot, zero);
                tx.b.def_var(var, v);
                tx.fused.promoted.insert(slot, var);
            }
            // β1ᵗ and β2ᵗ before the first step, advanced in the loop as in `advance_with`.
            // A bounded function keeps them in stack slots: in registers they would be live
            // across the whole step, and be spilled around every value of it.
            let pow = [0, 1].map(|_| match tx.bounded {
                true => Held::Slot(tx.vector_slot()),
                false => Held::Var(tx.b.declare_var(types::F64)),
            });
            for (k, home) in pow.iter().enumerate() {
                let v =
                    tx.b.ins()
                        .load(types::F64, flags(), tx.tables.scalars, 16 + 8 * k as i32);
                tx.set_held(*home, v);
            }
            let table_block = tx.b.create_block();
            let done = tx.b.create_block();
            tx.b.ins().jump(table_block, &[]);
            tx.b.switch_to_block(table_block);
            tx.loops.hoist_next = !tx.bounded;
            let draws = f
                .graph
                .ids()
                .any(|id| matches!(f.graph.op(id), Op::DropMask { .. }));
            tx.for_loop(count, &mut |tx, i| {
                if draws {
                    // Step i's key is the key before the first step plus (i + 1)·γ.
                    let before = tx.b.ins().load(types::I64, flags(), tx.tables.scalars, 8);
                    let counter = tx.b.ins().iadd_imm_s(i, 1);
                    let gamma = tx.iconst(crate::ir::dropout::GAMMA as i64);
                    let advance = tx.b.ins().imul(counter, gamma);
                    tx.fused.step_key = Some(tx.b.ins().iadd(before, advance));
                }
                for (step, decision) in plan.steps.iter().zip(&plan.decisions) {
                    tx.step(&f.graph, plan, step, decision);
                }
                let mut powers = [Value::from_u32(0); 2];
                for (k, beta) in [constants.beta1, constants.beta2].into_iter().enumerate() {
                    // As `optim::next_power`: flushed to zero below the normal range.
                    let p = tx.get_held(pow[k], types::F64);
                    let b = tx.float_const(types::F64, beta);
                    let q = tx.b.ins().fmul(p, b);
                    let min = tx.float_const(types::F64, f64::MIN_POSITIVE);
                    let zero = tx.float_const(types::F64, 0.0);
                    let tiny = tx.b.ins().fcmp(FloatCC::LessThan, q, min);
                    powers[k] = tx.b.ins().select(tiny, zero, q);
                    tx.set_held(pow[k], powers[k]);
                }
                let off = tx.mul_imm(i, 8);
                let scalars = tx.tables.scalars;
                let addr = tx.add(scalars, off);
                let lr = tx.b.ins().load(types::F64, flags(), addr, 32);
                let values = step_scalars
                    .iter()
                    .map(|x| tx.step_scalar(*x, lr, powers))
                    .collect();
                tx.fused.step_values = Some(values);
                tx.update(spec, sizes, &plan.updates, &slots, 0);
                tx.fused.step_values = None;
                // The next step normalizes with its own batch; only the running statistics
                // carry over, stored once the step is done.
                for &(state, next, len) in &state_copies {
                    let n = tx.iconst(len as i64);
                    tx.for_loop(n, &mut |tx, j| {
                        let v = tx.load_at(next, j);
                        tx.store_at(state, j, v);
                    });
                }
            });
            tx.b.ins().jump(done, &[]);
            tx.b.switch_to_block(done);
            // In slot order, so that the generated code does not depend on hash order.
            let mut promoted: Vec<(u32, Variable)> = tx.fused.promoted.drain().collect();
            promoted.sort_unstable_by_key(|&(slot, _)| slot);
            for (slot, var) in promoted {
                let v = tx.b.use_var(var);
                let zero = tx.iconst(0);
                tx.store_at(slot, zero, v);
            }
        })
    }
}
