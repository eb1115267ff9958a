// The command line's allocator (the library leaves the choice to programs embedding it).
// mimalloc marks its regions of memory for transparent huge pages, so a step's buffers cost
// far fewer TLB misses and their first touch a fault per 2 MiB rather than per 4 KiB: W8's step
// ran 0.90–0.93× the time it takes under glibc's allocator, its compile latency (W9) 0.79–0.84×.
// BENCHMARKS.md has the measurements, W1–W7 included.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(adjoint::cli::main());
}
