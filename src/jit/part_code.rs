//! One compiled function per distinct part. A part (a loop the plan splits between cores, or a
//! large parameter's update) reads its slots' addresses from a table in its own frame, in the
//! order it first uses them (`Tables::local`), so two parts that compute the same thing on
//! other slots are the same Cranelift function: the two blocks of a transformer, the updates of
//! parameters of one size. Before a part is compiled its function is compared with those
//! compiled before in the same module, and a repeat is not compiled again: the caller runs the
//! first one's code on its own frame.
//!
//! Equality is Cranelift's own, of the whole function (`FunctionStencil`, which holds every
//! instruction, immediate, constant address and stack slot) and of the functions it calls by
//! name, so a repeat is the same machine code by construction: nothing about the slots it
//! reads is in the code.

use cranelift::codegen::Context;
use cranelift::codegen::ir::Function;
use cranelift::frontend::FunctionBuilderContext;
use cranelift_module::FuncId;
use rustc_hash::FxHashMap as HashMap;
use std::hash::{Hash, Hasher};

/// The parts compiled so far in one module, by a hash of their functions, and the contexts
/// that build and compile them, reused from part to part: a fresh compilation context per
/// part allocated the register allocator's every table anew, and allocation was a third of
/// Cranelift's time on W8.
pub(super) struct PartCode {
    by_hash: HashMap<u64, Vec<(Function, FuncId)>>,
    /// The context every part is compiled in, one at a time.
    pub(super) compiling: Context,
    /// Builder contexts not in use: a part can be built while another is (a split loop inside
    /// an outlined step), each with its own.
    pub(super) building: Vec<FunctionBuilderContext>,
}

impl Default for PartCode {
    fn default() -> PartCode {
        PartCode {
            by_hash: HashMap::default(),
            compiling: Context::new(),
            building: Vec::new(),
        }
    }
}

impl PartCode {
    /// The function compiled earlier that is the same as `func`, or the key under which to
    /// record `func` once it is compiled (its hash, taken once).
    pub(super) fn find(&self, func: &Function) -> Result<FuncId, Key> {
        let key = Key(hash_of(func));
        let same = |f: &Function| {
            f.stencil == func.stencil
                && f.params.user_named_funcs() == func.params.user_named_funcs()
        };
        self.by_hash
            .get(&key.0)
            .and_then(|fs| fs.iter().find(|(f, _)| same(f)))
            .map(|&(_, id)| id)
            .ok_or(key)
    }

    /// Records `func`, compiled as `id`, under the key `find` gave it.
    pub(super) fn insert(&mut self, key: Key, func: Function, id: FuncId) {
        self.by_hash.entry(key.0).or_default().push((func, id));
    }
}

/// Where a function not found by `PartCode::find` is recorded.
pub(super) struct Key(u64);

fn hash_of(func: &Function) -> u64 {
    let mut h = rustc_hash::FxHasher::default();
    func.stencil.hash(&mut h);
    h.finish()
}
