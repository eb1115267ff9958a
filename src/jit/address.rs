//! Where a function finds its data: the tables of slot pointers, dimensions and scalars, a
//! part's own list of slots and frame of scalars (`LocalTables`), and the addresses of slots,
//! rows and elements, computed where the loops that use them are entered.

use super::*;

/// The function's three tables, and what is loaded from them in the entry block.
pub(super) struct Tables {
    /// The function's table of slot pointers, of dimension sizes and of f64 scalars.
    pub(super) ptrs: Value,
    pub(super) dims: Value,
    pub(super) scalars: Value,
    /// The slot pointers loaded so far, by the slot whose address they are (`address_slot`):
    /// each loaded once, in the entry block so that it dominates every use, on first use (a
    /// part of a step uses a few of the step's slots; loading all of them in each part made
    /// most of the instructions of a transformer's code). Not used when `bounded`.
    pub(super) slot_ptrs: HashMap<u32, Value>,
    /// The entry block's instruction after which the next slot pointer is loaded: after the
    /// tables and dimensions are loaded and before any code that could use it.
    pub(super) slot_tail: Option<cranelift::codegen::ir::Inst>,
    pub(super) n_slots: usize,
    /// See `FnShape::address_slot`.
    pub(super) address_slot: Vec<u32>,
    /// In a part: where it finds its slots' pointers and its caller's scalars.
    pub(super) local: Option<LocalTables>,
    pub(super) dim_vals: Vec<Value>,
}

/// How a part reads its slots and its caller's scalars: a slot's pointer through the byte
/// offset in the plan's table that the frame's list gives for it, a scalar from the frame's
/// captures, each numbered in the order the part first reads it. Nothing of which slots or
/// scalars they are is then in the part's code, so parts that differ only in those are the
/// same function (`part_code`).
pub(super) struct LocalTables {
    /// Where the scalars it reads are: `scalars_at` bytes into `frame`, eight bytes apart.
    pub(super) frame: Value,
    pub(super) scalars_at: i32,
    /// The address of its list of offsets, loaded from the frame.
    pub(super) list: Value,
    /// The address slots it reads, in the list's order.
    pub(super) slots: Vec<u32>,
    /// The scalar nodes it reads, in their order in the frame.
    pub(super) scalars: Vec<NodeId>,
}

/// The index of `x` in `list`, where it is appended when first seen.
fn place_in<T: PartialEq>(list: &mut Vec<T>, x: T) -> usize {
    match list.iter().position(|y| *y == x) {
        Some(i) => i,
        None => {
            list.push(x);
            list.len() - 1
        }
    }
}

/// How a slot's pointer is read (`Tx::pointer_read`).
#[derive(Clone, Copy)]
struct PointerRead {
    /// The plan's table of slot pointers.
    table: Value,
    /// The byte offset of the pointer in the table, or in a part the byte offset in its
    /// list of where that offset is.
    at: i32,
    /// A part's list of offsets.
    list: Option<Value>,
}

impl PointerRead {
    fn emit(self, cur: &mut FuncCursor) -> Value {
        match self.list {
            None => cur.ins().load(types::I64, flags(), self.table, self.at),
            Some(list) => {
                let readonly = flags().with_readonly();
                let offset = cur.ins().load(types::I64, readonly, list, self.at);
                let entry = cur.ins().iadd(self.table, offset);
                cur.ins().load(types::I64, flags(), entry, 0)
            }
        }
    }
}

/// Row pointers with at least this many terms are summed level by level (`Tx::row_ptr`).
const MIN_TERMS_BY_LEVEL: usize = 3;

impl Tx<'_> {
    pub(super) fn slot_ptr(&mut self, slot: u32) -> Value {
        if let Some(&p) = self.part.overrides.get(&slot) {
            return p;
        }
        let from = self.address_slot(slot);
        self.address_ptr(from)
    }

    /// The pointer of address slot `from` (`address_slot`), loaded once in the entry block, or
    /// where the loop being generated is entered, or in a bounded function where it is used.
    pub(super) fn address_ptr(&mut self, from: u32) -> Value {
        let read = self.pointer_read(from);
        let load = move |cur: &mut FuncCursor| read.emit(cur);
        if let Some(p) = self.at_loop_entry(EntryKey::Slot(from), load) {
            return p;
        }
        if self.bounded {
            return read.emit(&mut self.b.cursor());
        }
        if let Some(&p) = self.tables.slot_ptrs.get(&from) {
            return p;
        }
        let entry = self.consts.entry;
        let p = emit_after(self.b.func, entry, &mut self.tables.slot_tail, load);
        self.tables.slot_ptrs.insert(from, p);
        p
    }

    /// The slot whose table entry holds `slot`'s address: slots that share a buffer share it.
    fn address_slot(&self, slot: u32) -> u32 {
        self.tables
            .address_slot
            .get(slot as usize)
            .copied()
            .unwrap_or(slot)
    }

    /// How address slot `from`'s pointer is read here: from its place in the plan's table, or
    /// in a part through its list, where `from` is given a place on first use.
    fn pointer_read(&mut self, from: u32) -> PointerRead {
        let table = self.tables.ptrs;
        let Some(local) = &mut self.tables.local else {
            return PointerRead {
                table,
                at: from as i32 * 8,
                list: None,
            };
        };
        let index = place_in(&mut local.slots, from);
        PointerRead {
            table,
            at: index as i32 * 8,
            list: Some(local.list),
        }
    }

    /// In a part, its caller's scalar `node`, loaded from the frame once, in the entry block;
    /// `None` elsewhere.
    pub(super) fn captured_scalar(&mut self, node: NodeId) -> Option<Value> {
        let local = self.tables.local.as_mut()?;
        let index = place_in(&mut local.scalars, node);
        let at = local.scalars_at + 8 * index as i32;
        let (frame, ty, entry) = (local.frame, self.ty, self.consts.entry);
        Some(emit_after(
            self.b.func,
            entry,
            &mut self.tables.slot_tail,
            |cur| cur.ins().load(ty, flags(), frame, at),
        ))
    }

    /// `slot`'s address where loop `level` (an index into `loops.entries`) is entered.
    fn slot_ptr_entering(&mut self, slot: u32, level: usize) -> Value {
        if let Some(&p) = self.part.overrides.get(&slot) {
            return p;
        }
        let from = self.address_slot(slot);
        let read = self.pointer_read(from);
        self.at_entry(level, EntryKey::Slot(from), |cur| read.emit(cur))
    }

    /// The address of element `outer · strides` of `slot`, for indices of enclosing loops:
    /// computed where the innermost loop is entered, so that inside it an element's address is
    /// this pointer plus the inner index's byte offset, a single addressing mode.
    ///
    /// The sum is built level by level: each enclosing loop adds its own index's term to the
    /// address its parent computed, where it is entered. The innermost loop's entry then costs
    /// one multiply-add per row, not one per enclosing loop (an im2col copy of rows of eight
    /// spent most of its time recomputing the address of each row from six indices). Only for
    /// addresses of `MIN_TERMS_BY_LEVEL` terms or more: a partial sum lives across the loops
    /// inside its own, and for the two or three axes of a transformer's loops that cost
    /// Cranelift more time allocating registers than it saved.
    pub(super) fn row_ptr(&mut self, slot: u32, outer: &[Value], strides: &[Value]) -> Value {
        let terms: Vec<(Value, Value)> = outer
            .iter()
            .zip(strides)
            .filter(|(i, s)| self.known(**i) != Some(0) && self.known(**s) != Some(0))
            .map(|(i, s)| (*i, *s))
            .collect();
        if terms.is_empty() {
            return self.slot_ptr(slot);
        }
        let Some((levels, term_levels)) = self.entering_levels(&terms) else {
            let ptr = self.slot_ptr(slot);
            let off = self.dot(outer, strides);
            return self.elem_addr(ptr, off);
        };
        let mut first = match terms.len() < MIN_TERMS_BY_LEVEL {
            true => levels.end - 1,
            false => levels.start,
        };
        // A slot given by its own pointer (a part's stack area) starts where that pointer
        // exists.
        if let Some(&p) = self.part.overrides.get(&slot) {
            match self.level_of(&[p], levels.start) {
                Some(level) => first = first.max(level),
                None => {
                    let off = self.dot(outer, strides);
                    return self.elem_addr(p, off);
                }
            }
        }
        let mut addr = self.slot_ptr_entering(slot, first);
        // Keyed by the pointer too: a part's stack area may stand for the slot in one loop and
        // not in the next.
        let mut key = (slot, vec![addr]);
        for level in first..levels.end {
            let here: Vec<(Value, Value)> = terms
                .iter()
                .zip(&term_levels)
                .filter(|(_, l)| (**l).max(first) == level)
                .map(|(t, _)| *t)
                .collect();
            if here.is_empty() {
                continue;
            }
            key.1.extend(here.iter().flat_map(|(i, s)| [*i, *s]));
            addr = self.row_ptr_entering(level, &key, addr, &here);
        }
        addr
    }

    /// The loops, outermost first, whose entries can compute an address from `terms`: a run of
    /// hoisting loops ending at the innermost, in which each term's index and stride exist
    /// before one of them is entered; and the outermost such loop of each term. `None` outside
    /// loops or when a term is computed inside the innermost loop.
    fn entering_levels(
        &self,
        terms: &[(Value, Value)],
    ) -> Option<(std::ops::Range<usize>, Vec<usize>)> {
        let entries = &self.loops.entries;
        let end = entries.len();
        let first = entries.iter().rposition(|e| !e.hoists).map_or(0, |k| k + 1);
        if first >= end {
            return None;
        }
        let levels = terms
            .iter()
            .map(|(i, s)| self.level_of(&[*i, *s], first))
            .collect::<Option<Vec<usize>>>()?;
        Some((first..end, levels))
    }

    /// The outermost loop at or inside `first` before whose entry every one of `values`
    /// exists.
    fn level_of(&self, values: &[Value], first: usize) -> Option<usize> {
        let consts = &self.consts.ints;
        let exists = |v: &Value, e: &LoopEntry| v.as_u32() < e.mark || consts.contains_key(v);
        (first..self.loops.entries.len())
            .find(|&k| values.iter().all(|v| exists(v, &self.loops.entries[k])))
    }

    /// `base` plus the byte offsets `terms`, computed where loop `level` is entered, once per
    /// entry and `key`.
    fn row_ptr_entering(
        &mut self,
        level: usize,
        key: &(u32, Vec<Value>),
        base: Value,
        terms: &[(Value, Value)],
    ) -> Value {
        let size = self.dtype.size() as i64;
        let known: Vec<Option<i64>> = terms.iter().map(|(_, s)| self.known(*s)).collect();
        let entry = &mut self.loops.entries[level];
        if let Some(&p) = entry.rows.get(key) {
            return p;
        }
        let mut cur = FuncCursor::new(self.b.func).at_inst(entry.enter);
        let mut addr = base;
        for ((i, s), k) in terms.iter().zip(known) {
            let bytes = match k {
                Some(k) => cur.ins().imul_imm_s(*i, k * size),
                None => {
                    let t = cur.ins().imul(*i, *s);
                    cur.ins().imul_imm_s(t, size)
                }
            };
            addr = cur.ins().iadd(addr, bytes);
        }
        entry.rows.insert(key.clone(), addr);
        addr
    }

    /// The address of element `j` of the row at `row`, inside a straight loop body.
    pub(super) fn row_elem_addr(&mut self, row: Value, j: Value) -> Value {
        let size = self.dtype.size() as i64;
        let bytes = self.memo(Memo::Bytes, j, |tx| tx.mul_imm(j, size));
        self.memo(Memo::Addr, row, |tx| tx.add(row, bytes))
    }
}
