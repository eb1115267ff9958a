//! The floating-point environment that training steps run in: subnormal numbers flushed to zero.
//!
//! A long run drifts into subnormal numbers. An Adam moment of a weight whose input is almost
//! always zero (a border pixel of a digit) decays by β at every step without a gradient, and
//! reaches the subnormal range after several hundred steps. An x86 core takes a microcode
//! assist, a hundred cycles or more, for each operation with a subnormal operand or result:
//! five hundred epochs of `examples/digits.dsl` took 45 % longer with them than without.
//!
//! So `Trainer` runs its steps with the CPU's flush-to-zero and denormals-are-zero modes on, as
//! XLA and TensorFlow do on the CPU, and restores the caller's modes afterwards. A value that
//! would be subnormal (below 1.2·10⁻³⁸ in f32, 2.2·10⁻³⁰⁸ in f64) becomes zero. Setting
//! `Trainer::flush_subnormals` to false (`--keep-subnormals`) keeps IEEE gradual underflow.
//! Threads of the worker pool take the modes of the thread whose loop they run, so results do
//! not depend on the thread count either way.
//!
//! The modes are the MXCSR bits FTZ and DAZ on x86-64 and the FPCR bit FZ on AArch64; on other
//! targets nothing is flushed.

/// A thread's floating-point modes (rounding, exception masks, flushing), without the sticky
/// exception flags that every computation may set. A value can only be read from a thread
/// (`current`) and have flushing added, so applying one never sets a mode Rust code does not
/// expect (an unmasked exception, another rounding direction).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Modes(u64);

impl Modes {
    /// The calling thread's modes.
    pub fn current() -> Modes {
        Modes(imp::control())
    }

    /// These modes with subnormal numbers flushed to zero.
    fn flushing(self) -> Modes {
        Modes(self.0 | imp::FLUSH)
    }

    /// Makes these the calling thread's modes.
    pub(crate) fn apply(self) {
        imp::set_control(self.0)
    }
}

/// While alive, the thread flushes subnormal numbers to zero; dropping it restores the modes
/// the thread had before.
pub struct FlushSubnormals {
    saved: Modes,
}

impl FlushSubnormals {
    /// Turns flushing on for this thread, or does nothing when `on` is false.
    pub fn when(on: bool) -> Option<FlushSubnormals> {
        on.then(|| {
            let saved = Modes::current();
            saved.flushing().apply();
            FlushSubnormals { saved }
        })
    }
}

impl Drop for FlushSubnormals {
    fn drop(&mut self) {
        self.saved.apply();
    }
}

/// Whether the calling thread flushes subnormal numbers now.
pub fn flushing() -> bool {
    imp::FLUSH != 0 && imp::control() & imp::FLUSH == imp::FLUSH
}

#[cfg(target_arch = "x86_64")]
mod imp {
    /// MXCSR: flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    pub const FLUSH: u64 = (1 << 15) | (1 << 6);

    pub fn control() -> u64 {
        let mut csr: u32 = 0;
        // SAFETY: stores the MXCSR register into a local.
        unsafe {
            std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags))
        };
        // Bits 0–5 are the exception flags; the modes are above them.
        (csr & !0x3f) as u64
    }

    /// Loads a word from `control`, possibly with `FLUSH` added (`Modes` makes no other).
    pub fn set_control(word: u64) {
        let csr = word as u32;
        // SAFETY: loads a value read from MXCSR, possibly with FTZ and DAZ added; both are
        // valid modes, and no other bit changes.
        unsafe {
            std::arch::asm!(
                "ldmxcsr [{}]",
                in(reg) &csr,
                options(nostack, readonly, preserves_flags)
            )
        };
    }
}

#[cfg(target_arch = "aarch64")]
mod imp {
    /// FPCR: flush-to-zero (bit 24).
    pub const FLUSH: u64 = 1 << 24;

    pub fn control() -> u64 {
        let fpcr: u64;
        // SAFETY: reads the FPCR register.
        unsafe { std::arch::asm!("mrs {}, fpcr", out(reg) fpcr, options(nomem, nostack)) };
        fpcr
    }

    /// Writes a word from `control`, possibly with `FLUSH` added (`Modes` makes no other).
    pub fn set_control(word: u64) {
        // SAFETY: writes a value read from FPCR, possibly with FZ added.
        unsafe { std::arch::asm!("msr fpcr, {}", in(reg) word, options(nomem, nostack)) };
    }
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
mod imp {
    pub const FLUSH: u64 = 0;

    pub fn control() -> u64 {
        0
    }

    pub fn set_control(_: u64) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `black_box` keeps the compiler from folding the product at build time.
    fn tiny_product() -> f64 {
        std::hint::black_box(1e-300f64) * std::hint::black_box(1e-10f64)
    }

    #[test]
    fn subnormal_results_are_zero_only_while_the_guard_lives() {
        let before = Modes::current();
        assert!(tiny_product() > 0.0, "IEEE gradual underflow by default");
        {
            let _guard = FlushSubnormals::when(true);
            if imp::FLUSH != 0 {
                assert!(flushing());
                assert_eq!(tiny_product(), 0.0);
            }
            let _nested = FlushSubnormals::when(true);
        }
        assert_eq!(Modes::current(), before);
        assert!(tiny_product() > 0.0);
        assert!(FlushSubnormals::when(false).is_none());
        assert_eq!(Modes::current(), before);
    }
}
