//! Memory for a workspace's temporaries: one region per workspace, aligned pieces in it, never
//! zeroed.
//!
//! Native code writes every element of a temporary before it reads it: a buffer is shared by
//! temporaries whose lifetimes do not overlap, so each step already finds the last one's values
//! in it, and the plan's verifier checks that no slot is read before a step writes it. Zeroing
//! the region would be work thrown away: as `Vec`s of zeros, W8's 35 MiB of temporaries cost a
//! 35 MiB `memset` (or a page fault per 4 KiB of fresh memory) in the first step of every
//! workspace. Rust code never reads the region: it holds no references into it, only its
//! address, which the workspace hands to native code. In builds with debug assertions the region
//! starts as NaNs, so the tests would see any temporary read before it is written.

use std::alloc::Layout;
use std::ptr::NonNull;

/// Where each piece of a region starts: a cache line, so that vector loads of a piece's first
/// elements never straddle two.
pub const PIECE_ALIGN: usize = 64;

/// A cache line's worth of bytes, aligned as one: where an empty region points.
#[repr(C, align(64))]
struct Line([u8; PIECE_ALIGN]);

const _: () = assert!(std::mem::align_of::<Line>() == PIECE_ALIGN);

/// A region of memory of unspecified contents, owned.
#[derive(Debug)]
pub struct Scratch {
    base: NonNull<u8>,
    /// `None` for an empty region, which allocates nothing.
    layout: Option<Layout>,
}

// SAFETY: a `Scratch` owns its memory as a `Vec` owns its buffer, and gives out only its
// address; what is written through that address is its holder's business.
unsafe impl Send for Scratch {}
// SAFETY: as above; `&Scratch` allows nothing but reading the address.
unsafe impl Sync for Scratch {}

/// The region could not be allocated: the system refused `bytes` more.
#[derive(Debug)]
pub struct ScratchError {
    pub bytes: usize,
}

impl Scratch {
    /// A region of `bytes` bytes starting at a multiple of [`PIECE_ALIGN`].
    pub fn new(bytes: usize) -> Result<Scratch, ScratchError> {
        if bytes == 0 {
            return Ok(Scratch {
                base: NonNull::<Line>::dangling().cast(),
                layout: None,
            });
        }
        let layout =
            Layout::from_size_align(bytes, PIECE_ALIGN).map_err(|_| ScratchError { bytes })?;
        // SAFETY: `layout` has a non-zero size.
        let base =
            NonNull::new(unsafe { std::alloc::alloc(layout) }).ok_or(ScratchError { bytes })?;
        // Builds with debug assertions (the tests) fill the region with NaNs, so that a value
        // read before it is written shows in every result it reaches.
        if cfg!(debug_assertions) {
            // SAFETY: the region's `bytes` bytes, just allocated.
            unsafe { std::ptr::write_bytes(base.as_ptr(), 0xff, bytes) };
        }
        Ok(Scratch {
            base,
            layout: Some(layout),
        })
    }

    /// The region's first byte.
    pub fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    pub fn bytes(&self) -> usize {
        self.layout.map_or(0, |l| l.size())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `new` with this layout, freed once.
            unsafe { std::alloc::dealloc(self.base.as_ptr(), layout) };
        }
    }
}

/// The byte offset of each of the pieces of the given sizes in one region, in order, each a
/// multiple of [`PIECE_ALIGN`]; and the region's size.
pub fn layout(sizes: impl IntoIterator<Item = usize>) -> (Vec<usize>, usize) {
    let mut end = 0usize;
    let offsets = sizes
        .into_iter()
        .map(|size| {
            let at = end.next_multiple_of(PIECE_ALIGN);
            end = at + size;
            at
        })
        .collect();
    (offsets, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_aligned_disjoint_and_in_order() {
        let (offsets, end) = layout([3, 0, 100, 64, 1]);
        assert_eq!(offsets, vec![0, 64, 64, 192, 256]);
        assert_eq!(end, 257);
    }

    #[test]
    fn a_region_keeps_what_is_written_in_it() {
        for bytes in [1, 4096, 3 << 20] {
            let region = Scratch::new(bytes).unwrap();
            assert_eq!(region.bytes(), bytes);
            assert_eq!(region.base() as usize % PIECE_ALIGN, 0);
            // SAFETY: the region's `bytes` bytes, written before they are read.
            let all = unsafe {
                std::ptr::write_bytes(region.base(), 7, bytes);
                std::slice::from_raw_parts(region.base(), bytes)
            };
            assert!(all.iter().all(|&b| b == 7));
        }
    }

    #[test]
    fn an_empty_region_allocates_nothing() {
        let region = Scratch::new(0).unwrap();
        assert_eq!(region.bytes(), 0);
        assert_eq!(region.base() as usize % PIECE_ALIGN, 0);
    }
}
