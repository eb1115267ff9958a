//! The optimizer's update: the rule of `optim` evaluated element by element in native code,
//! split between cores for large parameters, with clipping and weight decay.

use super::*;

/// Where a parameter's update in a part runs (`Tx::update_in_part`).
#[derive(Clone, Copy)]
pub(super) enum PartRun {
    /// Split between cores by `parallel::run_parts`.
    OnCores,
    /// Whole, called here.
    Here,
}

impl<'a> Tx<'a> {
    /// One per-step scalar computed natively, exactly as `StepScalar::eval` computes it.
    pub(super) fn step_scalar(
        &mut self,
        x: optim::StepScalar,
        lr: Value,
        pow: [Value; 2],
    ) -> Value {
        use optim::StepScalar::*;
        let one = self.float_const(types::F64, 1.0);
        let v = match x {
            Lr => lr,
            Const(c) => self.float_const(types::F64, c),
            LrTimes(c) => {
                let c = self.float_const(types::F64, c);
                self.b.ins().fmul(lr, c)
            }
            InvBias1 | InvBias2 => {
                let p = pow[(x == InvBias2) as usize];
                let d = self.b.ins().fsub(one, p);
                self.b.ins().fdiv(one, d)
            }
            KerasLr => {
                let d2 = self.b.ins().fsub(one, pow[1]);
                let r = self.b.ins().sqrt(d2);
                let n = self.b.ins().fmul(lr, r);
                let d1 = self.b.ins().fsub(one, pow[0]);
                self.b.ins().fdiv(n, d1)
            }
        };
        self.in_dtype(v)
    }

    /// The optimizer update over every parameter: optional weight decay and global-norm
    /// clipping, then the rule, per parameter as the plan's `updates` say (one per parameter):
    /// a vectorized loop with a scalar tail or element by element, in parts or not.
    pub(super) fn update(
        &mut self,
        spec: &OptimizerSpec,
        sizes: &[usize],
        updates: &[Update],
        slots: &UpdateSlots,
        scalar_base: usize,
    ) {
        debug_assert_eq!(
            updates.len(),
            sizes.len(),
            "the plan splits or not every update"
        );
        let n_scalars = spec.n_scalars();
        let k: Vec<Value> = (0..n_scalars)
            .map(|i| self.scalar_arg(scalar_base + i))
            .collect();
        let wd = spec.get("weight_decay");
        let clip = spec.get("clip_norm");
        let scale = (clip > 0.0).then(|| self.clip_scale(sizes, slots, wd, clip));
        let rule = spec.rule();
        let (vty, lanes) = match self.dtype {
            DType::F32 => (types::F32X4, 4usize),
            DType::F64 => (types::F64X2, 2usize),
        };
        let any_vector = sizes.iter().any(|&n| n >= lanes);
        let kv: Vec<Value> = if any_vector {
            k.iter().map(|&v| self.splat(vty, v)).collect()
        } else {
            k.clone()
        };
        let wdv = (wd != 0.0).then(|| {
            let c = self.fconst(wd);
            (c, if any_vector { self.splat(vty, c) } else { c })
        });
        let scalev = scale.map(|c| (c, if any_vector { self.splat(vty, c) } else { c }));
        // Parameters before this one were updated by a loop over a run of scalar parameters.
        let mut rerolled_until = 0;
        for (i, &len) in sizes.iter().enumerate() {
            if i < rerolled_until {
                continue;
            }
            if let Some(run) = self.scalar_run(sizes, slots, i) {
                let (wds, scs) = (wdv.map(|w| w.0), scalev.map(|s| s.0));
                self.update_scalar_run(&rule, &run, &k, wds, scs);
                rerolled_until = i + run.len;
                continue;
            }
            let (p, g, st) = (slots.params[i], slots.grads[i], slots.states[i].clone());
            let n_vec = (len / lanes) as i64;
            let span = self.iconst(n_vec * lanes as i64);
            let ctx = RuleCtx {
                rule: &rule,
                p,
                g,
                st: &st,
            };
            if self.update_is_split(len, &updates[i].parts, &ctx) {
                self.update_in_part(&ctx, &k, wd, scale, len, PartRun::OnCores);
                continue;
            }
            // In a function that outlines its steps, an update of at least a vector is a
            // function of its own too, shared by the parameters of its size.
            if self.outlines && len >= lanes {
                self.update_in_part(&ctx, &k, wd, scale, len, PartRun::Here);
                continue;
            }
            let (kvec, wdvec, scvec) = (kv.clone(), wdv.map(|w| w.1), scalev.map(|s| s.1));
            if self.update_vectorized(len, &updates[i].vector) {
                self.for_loop_by(span, lanes as i64, &mut |tx, j| {
                    tx.straight(|tx| {
                        tx.rule_element(&ctx, j, Some(vty), &kvec, wdvec, scvec);
                    })
                });
            }
            let (k, wds, scs) = (k.clone(), wdv.map(|w| w.0), scalev.map(|s| s.0));
            // The few elements past the last full vector are unrolled: no loop.
            for r in 0..(len % lanes) as i64 {
                let j = self.iconst(n_vec * lanes as i64 + r);
                self.rule_element(&ctx, j, None, &k, wds, scs);
            }
        }
    }

    /// The run of single-element parameters from `first` on whose slots are evenly spaced (as
    /// the plan numbers parameters, their gradients and their state), for a bounded function
    /// (`Tx::bounded`), where it is updated by one loop over the run instead of code per
    /// parameter: ten thousand scalar parameters made a quarter of a million instructions of
    /// update, most of the function's compile time. Each element is updated by the same
    /// operations either way, so the values are the same.
    fn scalar_run(&self, sizes: &[usize], slots: &UpdateSlots, first: usize) -> Option<ScalarRun> {
        // A part reads its slots through a list of its own, not evenly spaced.
        if !self.bounded || self.tables.local.is_some() {
            return None;
        }
        // A slot that shares its buffer's address with another is read through that one.
        let own_address = |slot: u32| {
            self.tables
                .address_slot
                .get(slot as usize)
                .is_none_or(|&a| a == slot)
        };
        let in_memory = |slot: u32| !self.fused.promoted.contains_key(&slot) && own_address(slot);
        let mut columns = vec![&slots.params, &slots.grads];
        let states: Vec<Vec<u32>> = (0..slots.states.first().map_or(0, Vec::len))
            .map(|k| slots.states.iter().map(|st| st[k]).collect())
            .collect();
        columns.extend(&states);
        let fits = |i: usize| {
            sizes.get(i) == Some(&1)
                && columns.iter().all(|c| {
                    let d = c[first + 1] as i64 - c[first] as i64;
                    c[i] as i64 == c[first] as i64 + d * (i - first) as i64 && in_memory(c[i])
                })
        };
        if first + 1 >= sizes.len() || sizes[first] != 1 || sizes[first + 1] != 1 {
            return None;
        }
        let len = (first..sizes.len()).take_while(|&i| fits(i)).count();
        (len >= MIN_SCALAR_RUN).then(|| ScalarRun {
            len,
            first: columns.iter().map(|c| c[first]).collect(),
            stride: (columns.iter())
                .map(|c| c[first + 1] as i64 - c[first] as i64)
                .collect(),
        })
    }

    /// The update of a run of single-element parameters, as a loop over the run: iteration r
    /// reads each slot's pointer at `first + r·stride` of the slot table and updates one element
    /// as `rule_element` does.
    fn update_scalar_run(
        &mut self,
        rule: &[(optim::Target, optim::E)],
        run: &ScalarRun,
        k: &[Value],
        wd: Option<Value>,
        scale: Option<Value>,
    ) {
        let n = self.iconst(run.len as i64);
        self.for_loop(n, &mut |tx, r| {
            tx.straight(|tx| {
                let table = tx.tables.ptrs;
                let ptrs: Vec<Value> = (run.first.iter().zip(&run.stride))
                    .map(|(&first, &stride)| {
                        let off = tx.mul_imm(r, stride * 8);
                        let at = tx.add(table, off);
                        tx.b.ins().load(types::I64, flags(), at, first as i32 * 8)
                    })
                    .collect();
                let ty = tx.ty;
                let mut p = tx.b.ins().load(ty, flags(), ptrs[0], 0);
                let mut g = tx.b.ins().load(ty, flags(), ptrs[1], 0);
                if let Some(w) = wd {
                    let d = tx.b.ins().fmul(w, p);
                    g = tx.b.ins().fadd(g, d);
                }
                if let Some(c) = scale {
                    g = tx.b.ins().fmul(g, c);
                }
                let mut s: Vec<Value> = (ptrs[2..].iter())
                    .map(|&at| tx.b.ins().load(ty, flags(), at, 0))
                    .collect();
                for (target, e) in rule {
                    let v = tx.rule_expr(e, p, g, &s, k);
                    match target {
                        optim::Target::P => p = v,
                        optim::Target::S(i) => s[*i] = v,
                    }
                }
                for (&at, &v) in ptrs[2..].iter().zip(&s) {
                    tx.b.ins().store(flags(), v, at, 0);
                }
                tx.b.ins().store(flags(), p, ptrs[0], 0);
            })
        });
    }

    /// Whether the plan runs a parameter's update in vectors (`lower::vectorize::update_vector`),
    /// of this function's lanes.
    fn update_vectorized(&self, len: usize, vector: &Vector) -> bool {
        let vectors = self.in_lanes(vector);
        debug_assert_eq!(
            vectors,
            len as i64 >= self.vector_type().1,
            "the plan's vectorization is the update's"
        );
        vectors
    }

    /// Whether the plan splits a parameter's update between cores (`lower::parts`). A split
    /// parameter is large, so never one the fused loop holds in registers.
    pub(super) fn update_is_split(&self, len: usize, parts: &Parts, ctx: &RuleCtx) -> bool {
        let split = matches!(parts, Parts::Split { .. });
        debug_assert_eq!(parts, &crate::lower::parts::update_parts(len));
        debug_assert!(
            !split
                || [ctx.p, ctx.g]
                    .iter()
                    .chain(ctx.st)
                    .all(|s| !self.fused.promoted.contains_key(s)),
            "a split update reads and writes memory"
        );
        split
    }

    /// One parameter's update as a part: a function that updates chunks `lo..hi` of
    /// `UPDATE_CHUNK` elements (the last one shorter), reading the rule's scalars, the
    /// clipping scale and the parameter's length from the frame, run over all chunks split
    /// between cores or here. Each element is updated by the same operations as inline, so the
    /// values are the same.
    pub(super) fn update_in_part(
        &mut self,
        ctx: &RuleCtx,
        k: &[Value],
        wd: f64,
        scale: Option<Value>,
        len: usize,
        run: PartRun,
    ) {
        let n_k = k.len();
        // The rule's scalars, the clipping scale, then the parameter's length: nothing of
        // which parameter it is is in the part's code, so parameters share it.
        let len_at = PartFrame::capture_at(n_k + scale.is_some() as usize);
        let n_captured = n_k + scale.is_some() as usize + 1;
        let entry = PartEntry::Frame {
            first_scalar: n_captured,
        };
        let part = self.build_part(entry, &mut |tx, base, lo, hi, _| {
            let load = |tx: &mut Tx, i: usize| {
                tx.b.ins()
                    .load(tx.ty, flags(), base, PartFrame::capture_at(i))
            };
            let k: Vec<Value> = (0..n_k).map(|i| load(tx, i)).collect();
            let scale = scale.map(|_| load(tx, n_k));
            let wd = (wd != 0.0).then(|| tx.fconst(wd));
            let (vty, lanes) = tx.vector_type();
            let kv: Vec<Value> = k.iter().map(|&v| tx.splat(vty, v)).collect();
            let wdv = wd.map(|w| tx.splat(vty, w));
            let scv = scale.map(|c| tx.splat(vty, c));
            let from = tx.mul_imm(lo, UPDATE_CHUNK);
            let to = tx.mul_imm(hi, UPDATE_CHUNK);
            let end = tx.b.ins().load(types::I64, flags(), base, len_at);
            let past = tx.b.ins().icmp(IntCC::SignedGreaterThan, to, end);
            let to = tx.b.ins().select(past, end, to);
            let n = tx.sub(to, from);
            let n_vec = tx.shr_imm(n, lanes.trailing_zeros() as i64);
            let span = tx.mul_imm(n_vec, lanes);
            tx.for_loop_by(span, lanes, &mut |tx, j| {
                tx.straight(|tx| {
                    let j = tx.add(from, j);
                    tx.rule_element(ctx, j, Some(vty), &kv, wdv, scv);
                })
            });
            let rest = tx.sub(n, span);
            let tail = tx.add(from, span);
            tx.for_loop(rest, &mut |tx, t| {
                let j = tx.add(tail, t);
                tx.rule_element(ctx, j, None, &k, wd, scale);
            });
        });
        let Some(part) = part else { return };
        let length = self.iconst(len as i64);
        let captured: Vec<Value> = k.iter().copied().chain(scale).chain([length]).collect();
        let base = self.frame_with(&captured, 0, &part);
        let chunks = len.div_ceil(UPDATE_CHUNK as usize) as i64;
        let items = self.iconst(chunks);
        match run {
            PartRun::OnCores => {
                let work = self.iconst(UPDATE_CHUNK);
                self.run_parts(part.id, base, items, work);
            }
            PartRun::Here => {
                let fref = self.module.declare_func_in_func(part.id, self.b.func);
                let zero = self.iconst(0);
                self.b.ins().call(fref, &[base, zero, items, zero]);
            }
        }
    }

    /// min(1, clip / ‖g‖) over all gradients (after weight decay), summed in f64 in order.
    pub(super) fn clip_scale(
        &mut self,
        sizes: &[usize],
        slots: &UpdateSlots,
        wd: f64,
        clip: f64,
    ) -> Value {
        let acc = self.b.declare_var(types::F64);
        let zero = self.float_const(types::F64, 0.0);
        self.b.def_var(acc, zero);
        let wdc = self.fconst(wd);
        for (i, &len) in sizes.iter().enumerate() {
            let (p, g) = (slots.params[i], slots.grads[i]);
            let n = self.iconst(len as i64);
            self.for_loop(n, &mut |tx, j| {
                let mut gv = tx.load_at(g, j);
                if wd != 0.0 {
                    let pv = tx.load_at(p, j);
                    let d = tx.b.ins().fmul(wdc, pv);
                    gv = tx.b.ins().fadd(gv, d);
                }
                let gv = if tx.dtype == DType::F32 {
                    tx.b.ins().fpromote(types::F64, gv)
                } else {
                    gv
                };
                let sq = tx.b.ins().fmul(gv, gv);
                let a = tx.b.use_var(acc);
                let a = tx.b.ins().fadd(a, sq);
                tx.b.def_var(acc, a);
            });
        }
        let total = self.b.use_var(acc);
        let norm = self.b.ins().sqrt(total);
        let c = self.float_const(types::F64, clip);
        let one = self.float_const(types::F64, 1.0);
        let ratio = self.b.ins().fdiv(c, norm);
        let over = self.b.ins().fcmp(FloatCC::GreaterThan, norm, c);
        let scale = self.b.ins().select(over, ratio, one);
        match self.dtype {
            DType::F32 => self.b.ins().fdemote(types::F32, scale),
            DType::F64 => scale,
        }
    }

    /// One element (or one vector of elements) of the update rule at offset `j`.
    pub(super) fn rule_element(
        &mut self,
        ctx: &RuleCtx,
        j: Value,
        vty: Option<Type>,
        k: &[Value],
        wd: Option<Value>,
        scale: Option<Value>,
    ) {
        let load = |tx: &mut Self, slot: u32| match vty {
            None => tx.load_at(slot, j),
            Some(vty) => {
                let base = tx.slot_ptr(slot);
                let addr = tx.elem_addr(base, j);
                tx.b.ins().load(vty, flags(), addr, 0)
            }
        };
        let mut p = load(self, ctx.p);
        let mut g = load(self, ctx.g);
        if let Some(w) = wd {
            let d = self.b.ins().fmul(w, p);
            g = self.b.ins().fadd(g, d);
        }
        if let Some(c) = scale {
            g = self.b.ins().fmul(g, c);
        }
        let mut s: Vec<Value> = ctx.st.iter().map(|&slot| load(self, slot)).collect();
        for (target, e) in ctx.rule {
            let v = self.rule_expr(e, p, g, &s, k);
            match target {
                optim::Target::P => p = v,
                optim::Target::S(i) => s[*i] = v,
            }
        }
        let store = |tx: &mut Self, slot: u32, v: Value| match vty {
            None => tx.store_at(slot, j, v),
            Some(_) => {
                let base = tx.slot_ptr(slot);
                let addr = tx.elem_addr(base, j);
                tx.b.ins().store(flags(), v, addr, 0);
            }
        };
        for (slot, v) in ctx.st.iter().zip(&s) {
            store(self, *slot, *v);
        }
        store(self, ctx.p, p);
    }

    pub(super) fn rule_expr(
        &mut self,
        e: &optim::E,
        p: Value,
        g: Value,
        s: &[Value],
        k: &[Value],
    ) -> Value {
        use optim::E;
        match e {
            E::P => p,
            E::G => g,
            E::S(i) => s[*i],
            E::K(i) => k[*i],
            E::Add(a, b) | E::Sub(a, b) | E::Mul(a, b) | E::Div(a, b) => {
                let x = self.rule_expr(a, p, g, s, k);
                let y = self.rule_expr(b, p, g, s, k);
                match e {
                    E::Add(..) => self.b.ins().fadd(x, y),
                    E::Sub(..) => self.b.ins().fsub(x, y),
                    E::Mul(..) => self.b.ins().fmul(x, y),
                    _ => self.b.ins().fdiv(x, y),
                }
            }
            E::Sqrt(a) => {
                let x = self.rule_expr(a, p, g, s, k);
                self.b.ins().sqrt(x)
            }
        }
    }
}

/// Slots an update reads and writes.
#[derive(Clone, Debug)]
pub struct UpdateSlots {
    pub params: Vec<u32>,
    pub grads: Vec<u32>,
    /// Per parameter, its state arrays.
    pub states: Vec<Vec<u32>>,
}

impl UpdateSlots {
    /// The layout of a standalone update function: params, then gradients, then states.
    pub fn standalone(n_params: usize, n_state: usize) -> UpdateSlots {
        UpdateSlots {
            params: (0..n_params as u32).collect(),
            grads: (n_params as u32..2 * n_params as u32).collect(),
            states: (0..n_params)
                .map(|i| {
                    (0..n_state)
                        .map(|k| (2 * n_params + i * n_state + k) as u32)
                        .collect()
                })
                .collect(),
        }
    }
}

/// Elements per item of a split update (the plan's: `lower::parts`).
pub(super) use crate::lower::parts::UPDATE_CHUNK;

/// The fewest single-element parameters updated by a loop (`Tx::scalar_run`).
const MIN_SCALAR_RUN: usize = 4;

/// A run of single-element parameters whose slots are evenly spaced: for the parameter, its
/// gradient and each state array (in that order), the first one's slot and the step between
/// consecutive parameters' slots.
pub(super) struct ScalarRun {
    len: usize,
    first: Vec<u32>,
    stride: Vec<i64>,
}

pub(super) struct RuleCtx<'r> {
    pub(super) rule: &'r [(optim::Target, optim::E)],
    pub(super) p: u32,
    pub(super) g: u32,
    pub(super) st: &'r [u32],
}
