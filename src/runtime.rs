//! Typed buffers and the only place generated code is called.
//!
//! Invariant: before any call into native code, every slot pointer comes from a buffer whose
//! length equals the slot's size under the bound dimensions; nothing the user passes can make
//! generated code read or write out of bounds.

use crate::ir::DType;
use crate::jit::{CodegenError, KernelFn, NativeFn};
use crate::lower::{Plan, SlotKind};
use crate::scratch::Scratch;

/// A contiguous array in the model's dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum Buffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Buffer {
    pub fn zeros(dtype: DType, len: usize) -> Buffer {
        Buffer::filled(dtype, len, 0.0)
    }

    /// `len` copies of `value` in `dtype`.
    pub fn filled(dtype: DType, len: usize, value: f64) -> Buffer {
        match dtype {
            DType::F32 => Buffer::F32(vec![value as f32; len]),
            DType::F64 => Buffer::F64(vec![value; len]),
        }
    }

    pub fn from_f64(dtype: DType, values: &[f64]) -> Buffer {
        match dtype {
            DType::F32 => Buffer::F32(values.iter().map(|&v| v as f32).collect()),
            DType::F64 => Buffer::F64(values.to_vec()),
        }
    }

    /// An empty buffer with room for `len` values.
    pub fn with_capacity(dtype: DType, len: usize) -> Buffer {
        match dtype {
            DType::F32 => Buffer::F32(Vec::with_capacity(len)),
            DType::F64 => Buffer::F64(Vec::with_capacity(len)),
        }
    }

    /// Appends a value, rounded to the buffer's dtype.
    pub fn push(&mut self, x: f64) {
        match self {
            Buffer::F32(v) => v.push(x as f32),
            Buffer::F64(v) => v.push(x),
        }
    }

    /// The values in `dtype`: this buffer itself when it is in that dtype already.
    pub fn in_dtype(&self, dtype: DType) -> std::borrow::Cow<'_, Buffer> {
        match (self, dtype) {
            (Buffer::F32(_), DType::F32) | (Buffer::F64(_), DType::F64) => {
                std::borrow::Cow::Borrowed(self)
            }
            (Buffer::F32(v), DType::F64) => {
                std::borrow::Cow::Owned(Buffer::F64(v.iter().map(|&x| x as f64).collect()))
            }
            (Buffer::F64(v), DType::F32) => std::borrow::Cow::Owned(Buffer::from_f64(dtype, v)),
        }
    }

    /// The first `len` values.
    pub fn head(&self, len: usize) -> Buffer {
        match self {
            Buffer::F32(v) => Buffer::F32(v[..len].to_vec()),
            Buffer::F64(v) => Buffer::F64(v[..len].to_vec()),
        }
    }

    /// Each value as f64, without copying the buffer.
    pub fn iter_f64(&self) -> Box<dyn Iterator<Item = f64> + '_> {
        match self {
            Buffer::F32(v) => Box::new(v.iter().map(|&x| x as f64)),
            Buffer::F64(v) => Box::new(v.iter().copied()),
        }
    }

    pub fn dtype(&self) -> DType {
        match self {
            Buffer::F32(_) => DType::F32,
            Buffer::F64(_) => DType::F64,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Buffer::F32(v) => v.len(),
            Buffer::F64(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn get(&self, i: usize) -> f64 {
        match self {
            Buffer::F32(v) => v[i] as f64,
            Buffer::F64(v) => v[i],
        }
    }

    pub fn set(&mut self, i: usize, x: f64) {
        match self {
            Buffer::F32(v) => v[i] = x as f32,
            Buffer::F64(v) => v[i] = x,
        }
    }

    /// The first value that is infinite or NaN, if any (without copying the buffer).
    /// Overwrites this buffer with `src`, of the same dtype and length.
    pub fn copy_from(&mut self, src: &Buffer) {
        match (self, src) {
            (Buffer::F32(d), Buffer::F32(s)) => d.copy_from_slice(s),
            (Buffer::F64(d), Buffer::F64(s)) => d.copy_from_slice(s),
            _ => panic!("copy between buffers of different dtypes"),
        }
    }

    pub fn first_non_finite(&self) -> Option<f64> {
        match self {
            Buffer::F32(v) => v.iter().find(|x| !x.is_finite()).map(|&x| x as f64),
            Buffer::F64(v) => v.iter().copied().find(|x| !x.is_finite()),
        }
    }

    pub fn to_f64(&self) -> Vec<f64> {
        match self {
            Buffer::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Buffer::F64(v) => v.clone(),
        }
    }

    /// Copies `rows` (indices into self viewed as rows of `width`) into `dst`.
    pub fn gather_rows(&self, width: usize, rows: &[usize], dst: &mut Buffer) {
        match (self, dst) {
            (Buffer::F32(s), Buffer::F32(d)) => gather(s, width, rows, d),
            (Buffer::F64(s), Buffer::F64(d)) => gather(s, width, rows, d),
            _ => panic!("adjoint internal error: gather between dtypes"),
        }
    }

    /// Copies, for each of `starts`, the `width` elements from `start + offset` into `dst`,
    /// one after another (windows of a sequence, as rows).
    pub fn gather_windows(&self, width: usize, offset: usize, starts: &[usize], dst: &mut Buffer) {
        fn windows<T: Copy>(
            src: &[T],
            w: usize,
            offset: usize,
            starts: &[usize],
            dst: &mut Vec<T>,
        ) {
            dst.clear();
            for &s in starts {
                dst.extend_from_slice(&src[s + offset..s + offset + w]);
            }
        }
        match (self, dst) {
            (Buffer::F32(s), Buffer::F32(d)) => windows(s, width, offset, starts, d),
            (Buffer::F64(s), Buffer::F64(d)) => windows(s, width, offset, starts, d),
            _ => panic!("adjoint internal error: gather between dtypes"),
        }
    }

    fn ptr(&self) -> *mut u8 {
        match self {
            Buffer::F32(v) => v.as_ptr() as *mut u8,
            Buffer::F64(v) => v.as_ptr() as *mut u8,
        }
    }
}

fn gather<T: Copy>(src: &[T], width: usize, rows: &[usize], dst: &mut Vec<T>) {
    dst.clear();
    if width == 1 {
        // One element per row (labels): a copy call per element would cost more than the copy.
        dst.extend(rows.iter().map(|&r| src[r]));
        return;
    }
    for &r in rows {
        dst.extend_from_slice(&src[r * width..(r + 1) * width]);
    }
}

/// The temporaries and outputs of one compiled function at one binding of its dimensions.
#[derive(Debug)]
pub struct Workspace {
    syms: Vec<u64>,
    /// The dimension sizes as native code reads them.
    dims: Vec<i64>,
    /// Slot addresses for the next call, kept so that steady-state calls allocate nothing.
    ptrs: Vec<usize>,
    /// Where each buffer of the plan's storage is (slots whose lifetimes do not overlap share
    /// one), by buffer.
    places: Vec<Place>,
    /// The buffers that hold an output of the plan, read back after a call.
    owned: Vec<Buffer>,
    /// The element type of every buffer.
    dtype: DType,
    /// The other buffers, temporaries that only native code reads and writes, in one region
    /// that is never zeroed (`scratch`).
    temps: Scratch,
}

/// Where one buffer of a workspace is.
#[derive(Clone, Copy, Debug)]
enum Place {
    /// `Workspace::owned[index]`.
    Owned(usize),
    /// `len` elements at this byte offset in `Workspace::temps`.
    Temp { offset: usize, len: usize },
}

/// The most memory one model's buffers may take (see [`crate::limits::memory_budget`]).
pub fn memory_limit() -> u64 {
    crate::limits::memory_budget()
}

fn slot_bytes(plan: &Plan, slot: u32, dtype: DType, syms: &[u64]) -> u128 {
    let shape = &plan.slots[slot as usize].shape;
    let n: u128 = shape.concrete(syms).iter().map(|&d| d as u128).product();
    n * dtype.size() as u128
}

impl Workspace {
    /// The bytes the temporaries and outputs of `plan` take at this binding of the dimensions:
    /// one allocation per buffer of its storage.
    pub fn bytes(plan: &Plan, dtype: DType, syms: &[u64]) -> u128 {
        let storage = &plan.storage;
        (0..storage.buffers.len())
            .map(|b| slot_bytes(plan, storage.first_slot(b), dtype, syms))
            .sum()
    }

    /// What [`Workspace::bytes`] would be if no two slots shared a buffer.
    pub fn bytes_without_reuse(plan: &Plan, dtype: DType, syms: &[u64]) -> u128 {
        plan.storage
            .buffers
            .iter()
            .flatten()
            .map(|&s| slot_bytes(plan, s, dtype, syms))
            .sum()
    }

    /// Allocates the temporaries and outputs, after checking that they fit in memory.
    pub fn new(plan: &Plan, dtype: DType, syms: &[u64]) -> Result<Workspace, RunError> {
        let bytes = Workspace::bytes(plan, dtype, syms);
        let limit = memory_limit() as u128;
        if bytes > limit {
            return Err(RunError::TooLarge {
                bytes: bytes.min(u64::MAX as u128) as u64,
                limit: limit as u64,
            });
        }
        let storage = &plan.storage;
        // Each buffer's length, and whether it holds an output (Rust reads those back).
        let buffers: Vec<(usize, bool)> = (0..storage.buffers.len())
            .map(|b| {
                let len = plan.slot_len(storage.first_slot(b) as usize, syms);
                let output = storage.buffers[b]
                    .iter()
                    .any(|&s| matches!(plan.slots[s as usize].kind, SlotKind::Output(_)));
                (len, output)
            })
            .collect();
        let temp_sizes = buffers.iter().filter(|b| !b.1).map(|b| b.0 * dtype.size());
        let (offsets, temp_bytes) = crate::scratch::layout(temp_sizes);
        let scratch = Scratch::new(temp_bytes).map_err(|e| RunError::TooLarge {
            bytes: e.bytes as u64,
            limit: limit as u64,
        })?;
        let mut owned = Vec::new();
        let mut offsets = offsets.into_iter();
        let places = buffers
            .iter()
            .map(|&(len, output)| match output {
                true => {
                    owned.push(Buffer::zeros(dtype, len));
                    Place::Owned(owned.len() - 1)
                }
                false => Place::Temp {
                    offset: offsets.next().expect("an offset per temporary buffer"),
                    len,
                },
            })
            .collect();
        Ok(Workspace {
            syms: syms.to_vec(),
            dims: syms.iter().map(|&d| d as i64).collect(),
            ptrs: Vec::new(),
            places,
            owned,
            dtype,
            temps: scratch,
        })
    }

    pub fn syms(&self) -> &[u64] {
        &self.syms
    }

    /// The buffer of output `k`.
    pub fn output(&self, plan: &Plan, k: usize) -> &Buffer {
        let b = plan.storage.of_slot[plan.outputs[k] as usize].expect("outputs have buffers");
        match self.places[b as usize] {
            Place::Owned(i) => &self.owned[i],
            Place::Temp { .. } => unreachable!("a buffer that holds an output is owned"),
        }
    }
}

/// A native function and the plan it was compiled from.
#[derive(Clone)]
pub struct Executable {
    pub plan: Plan,
    pub(crate) func: NativeFn,
    pub dtype: DType,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RunError {
    #[error("{what} has {found} elements but the model needs {expected}")]
    Length {
        what: String,
        expected: usize,
        found: usize,
    },
    #[error("{what} holds {found} values where the model computes in {expected}")]
    DType {
        what: String,
        expected: &'static str,
        found: &'static str,
    },
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    #[error("the model's buffers would take {} at this batch size, more than the {} this machine allows", human_bytes(*.bytes), human_bytes(*.limit))]
    TooLarge { bytes: u64, limit: u64 },
}

pub fn human_bytes(b: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.1} {}", units[u])
}

fn check(
    buf: &Buffer,
    expected: usize,
    dtype: DType,
    what: impl Fn() -> String,
) -> Result<(), RunError> {
    if buf.dtype() != dtype {
        return Err(RunError::DType {
            what: what(),
            expected: dtype.name(),
            found: buf.dtype().name(),
        });
    }
    if buf.len() != expected {
        return Err(RunError::Length {
            what: what(),
            expected,
            found: buf.len(),
        });
    }
    Ok(())
}

impl Workspace {
    /// Fills the workspace's reused list of slot addresses with `fill` and, when every check
    /// in it passed, calls `func` with those addresses, the dimension sizes and `scalars`.
    ///
    /// # Safety
    /// `fill` succeeds only with addresses of live buffers of the lengths `func` reads and
    /// writes under these dimensions, which nothing else uses during the call.
    unsafe fn call_checked(
        &mut self,
        func: KernelFn,
        scalars: &[f64],
        fill: impl FnOnce(&Workspace, &mut Vec<usize>) -> Result<(), RunError>,
    ) -> Result<(), RunError> {
        let mut ptrs = std::mem::take(&mut self.ptrs);
        let checked = fill(self, &mut ptrs);
        if checked.is_ok() {
            // SAFETY: forwarded from the caller.
            unsafe {
                func(
                    ptrs.as_ptr() as *const *mut u8,
                    self.dims.as_ptr(),
                    scalars.as_ptr(),
                )
            };
        }
        self.ptrs = ptrs;
        checked
    }
}

impl Executable {
    /// Runs the function: reads `inputs` and `params`, writes the workspace's outputs.
    pub fn run(
        &self,
        ws: &mut Workspace,
        inputs: &[Buffer],
        params: &[Buffer],
    ) -> Result<(), RunError> {
        self.run_step(ws, inputs, params, 0)
    }

    /// As `run`, for a training step: its dropout masks are those of the step whose key is
    /// `step_key` (`ir::dropout::step_key`), passed as the bits of the one scalar.
    pub fn run_step(
        &self,
        ws: &mut Workspace,
        inputs: &[Buffer],
        params: &[Buffer],
        step_key: u64,
    ) -> Result<(), RunError> {
        self.run_with_state(ws, inputs, params, &[], step_key)
    }

    /// As `run_step`, for a model with state tensors (`Graph::states`, a batch normalization's
    /// running statistics), which the function reads from `states`.
    pub fn run_with_state(
        &self,
        ws: &mut Workspace,
        inputs: &[Buffer],
        params: &[Buffer],
        states: &[Buffer],
        step_key: u64,
    ) -> Result<(), RunError> {
        let func = self.func.get()?;
        // SAFETY: every slot pointer comes from a live buffer of exactly the length the plan
        // needs under `dims` (checked in `slot_pointers`), the code writes only Output and Temp
        // slots, which the workspace owns exclusively through `&mut`, and it cannot trap.
        unsafe {
            ws.call_checked(func, &[f64::from_bits(step_key)], |ws, ptrs| {
                self.slot_pointers(ws, inputs, params, states, ptrs)
            })
        }
    }

    /// One address per plan slot into `ptrs`, after checking every buffer's length and dtype.
    fn slot_pointers(
        &self,
        ws: &Workspace,
        inputs: &[Buffer],
        params: &[Buffer],
        states: &[Buffer],
        ptrs: &mut Vec<usize>,
    ) -> Result<(), RunError> {
        ptrs.clear();
        if ws.dtype != self.dtype {
            return Err(RunError::DType {
                what: "workspace".into(),
                expected: self.dtype.name(),
                found: ws.dtype.name(),
            });
        }
        let syms = &ws.syms;
        for (i, slot) in self.plan.slots.iter().enumerate() {
            let len = self.plan.slot_len(i, syms);
            let buf = match slot.kind {
                SlotKind::Input(k) => {
                    let b = inputs.get(k as usize).ok_or_else(|| RunError::Length {
                        what: "inputs".into(),
                        expected: k as usize + 1,
                        found: inputs.len(),
                    })?;
                    check(b, len, self.dtype, || format!("input #{k}"))?;
                    b
                }
                SlotKind::Param(k) => {
                    let b = params.get(k as usize).ok_or_else(|| RunError::Length {
                        what: "params".into(),
                        expected: k as usize + 1,
                        found: params.len(),
                    })?;
                    check(b, len, self.dtype, || format!("parameter #{k}"))?;
                    b
                }
                SlotKind::State(k) => {
                    let b = states.get(k as usize).ok_or_else(|| RunError::Length {
                        what: "state tensors".into(),
                        expected: k as usize + 1,
                        found: states.len(),
                    })?;
                    check(b, len, self.dtype, || format!("state tensor #{k}"))?;
                    b
                }
                SlotKind::Output(_) | SlotKind::Temp => match self.plan.storage.of_slot[i] {
                    Some(b) => {
                        // Built only on failure: this runs for every slot of every call.
                        let place = ws.places.get(b as usize).ok_or_else(|| RunError::Length {
                            what: "workspace buffers".into(),
                            expected: b as usize + 1,
                            found: ws.places.len(),
                        })?;
                        match *place {
                            Place::Owned(k) => {
                                let b = &ws.owned[k];
                                check(b, len, self.dtype, || "workspace".into())?;
                                b
                            }
                            Place::Temp { offset, len: held } => {
                                if held != len {
                                    return Err(RunError::Length {
                                        what: "workspace".into(),
                                        expected: len,
                                        found: held,
                                    });
                                }
                                // `len` elements of this dtype (both checked) at `offset`, which
                                // `scratch::layout` placed inside the region.
                                ptrs.push(ws.temps.base() as usize + offset);
                                continue;
                            }
                        }
                    }
                    None => {
                        // A loop member kept in a register: no step reads or writes it through
                        // memory (the plan's verifier checks that a slot no step writes is
                        // never read), so it has no buffer and no address.
                        ptrs.push(0);
                        continue;
                    }
                },
            };
            ptrs.push(buf.ptr() as usize);
        }
        Ok(())
    }
}

/// The fused training loop: K steps of value-and-gradient plus update in one native call.
#[derive(Clone)]
pub struct TrainLoop {
    pub(crate) func: KernelFn,
    pub n_state: usize,
}

impl TrainLoop {
    /// Runs `steps` steps. `table` is `[steps, key, β1ᵗ, β2ᵗ, lr₁ … lr_steps]`: the bits of
    /// the dropout key of the step before the first (`ir::dropout::step_key`, which the loop
    /// advances by γ a step), the β powers before the first step and each step's learning rate
    /// (`table[0]` is set here).
    /// Inputs and params are checked against the plan exactly as `Executable::run` does.
    /// `model_state` holds the model's state tensors (`Graph::states`), which each step
    /// replaces by the next values its graph outputs.
    #[allow(clippy::too_many_arguments)]
    pub fn run(
        &self,
        exe: &Executable,
        ws: &mut Workspace,
        inputs: &[Buffer],
        params: &mut [Buffer],
        state: &mut [Buffer],
        model_state: &mut [Buffer],
        table: &mut [f64],
        steps: u64,
    ) -> Result<(), RunError> {
        let needed = 4 + steps as usize;
        if table.len() != needed {
            return Err(RunError::Length {
                what: "per-step scalars".into(),
                expected: needed,
                found: table.len(),
            });
        }
        table[0] = steps as f64;
        // SAFETY: as for `Executable::run`; in addition the params, the optimizer's and the
        // model's states are borrowed mutably for the call, and their lengths were checked
        // against the plan.
        unsafe {
            ws.call_checked(self.func, table, |ws, ptrs| {
                self.state_pointers(exe, ws, (inputs, params, model_state), state, ptrs)
            })
        }
    }

    /// The plan's slot addresses followed by every optimizer state array's, checked.
    fn state_pointers(
        &self,
        exe: &Executable,
        ws: &Workspace,
        (inputs, params, model_state): (&[Buffer], &[Buffer], &[Buffer]),
        state: &[Buffer],
        ptrs: &mut Vec<usize>,
    ) -> Result<(), RunError> {
        exe.slot_pointers(ws, inputs, params, model_state, ptrs)?;
        if state.len() != params.len() * self.n_state {
            return Err(RunError::Length {
                what: "optimizer state list".into(),
                expected: params.len() * self.n_state,
                found: state.len(),
            });
        }
        for (j, s) in state.iter().enumerate() {
            check(s, params[j / self.n_state.max(1)].len(), exe.dtype, || {
                format!("optimizer state #{j}")
            })?;
            ptrs.push(s.ptr() as usize);
        }
        Ok(())
    }
}

/// The compiled optimizer update over all parameters.
#[derive(Clone)]
pub struct UpdateFn {
    pub(crate) func: NativeFn,
    pub sizes: Vec<usize>,
    pub n_state: usize,
    pub dtype: DType,
}

impl UpdateFn {
    /// One update: `params[i] -= f(grads[i], state)`, with the per-step scalars.
    pub fn run(
        &self,
        params: &mut [Buffer],
        grads: &[&Buffer],
        state: &mut [Buffer],
        scalars: &[f64],
    ) -> Result<(), RunError> {
        let func = self.func.get()?;
        let n = self.sizes.len();
        let mut ptrs = Vec::with_capacity(n * (2 + self.n_state));
        let count = |what: &str, expected: usize, found: usize| {
            if expected == found {
                Ok(())
            } else {
                Err(RunError::Length {
                    what: what.into(),
                    expected,
                    found,
                })
            }
        };
        count("parameter list", n, params.len())?;
        count("gradient list", n, grads.len())?;
        count("optimizer state list", n * self.n_state, state.len())?;
        for (i, p) in params.iter().enumerate() {
            check(p, self.sizes[i], self.dtype, || format!("parameter #{i}"))?;
            ptrs.push(p.ptr());
        }
        for (i, g) in grads.iter().enumerate() {
            check(g, self.sizes[i], self.dtype, || format!("gradient #{i}"))?;
            ptrs.push(g.ptr());
        }
        for (j, s) in state.iter().enumerate() {
            check(s, self.sizes[j / self.n_state.max(1)], self.dtype, || {
                format!("optimizer state #{j}")
            })?;
            ptrs.push(s.ptr());
        }
        // SAFETY: lengths and dtypes checked above; params and state are borrowed mutably, so
        // the writes of the update alias nothing else.
        unsafe { func(ptrs.as_ptr(), [0i64].as_ptr(), scalars.as_ptr()) };
        Ok(())
    }
}
