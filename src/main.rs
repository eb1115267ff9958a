// The command line's allocator (the library leaves the choice to programs embedding it).
// mimalloc marks its regions of memory for transparent huge pages, so a step's buffers lie in
// 2 MiB pages rather than 4 KiB ones: W8's step ran 0.90–0.93× the time it takes under glibc's
// allocator, and compiling, which allocates a great deal, about 0.85×. BENCHMARKS.md has the
// measurements, W1–W7 included.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(adjoint::cli::main());
}
