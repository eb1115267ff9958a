//! Running one loop of generated code on several cores.
//!
//! A loop group large enough to share (`Tx::parallel_group`) is compiled as a second function
//! over a range of its outer axis, `part(frame, lo, hi, index)`. The function it came from calls
//! [`run_parts`] with that function, a frame on its own stack (the values the loop reads, and
//! one area per part for the sums it writes), and the number of items. The range is cut into
//! equal parts (as many as the work warrants, up to `MAX_PARTS`), dealt round-robin to the
//! calling thread and persistent workers, which wait briefly between jobs (yielding the core)
//! before they sleep, since a training step hands them work a few times per step. Large
//! optimizer updates (generated the same way) and large matrix products ([`for_parts`], from
//! Rust) use the same workers.
//!
//! The cut depends only on the number of items and their work, never on the thread count or
//! on timing: a caller that finds the workers busy (another thread running compiled code at the
//! same moment) runs every part itself, over the same ranges, writing the same partial sums. So
//! results are the same bit for bit whatever `--threads` says.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};

// The rule that cuts a range into parts is the plan's (`lower::parts`), which records it.
pub use crate::lower::parts::{MAX_PARTS, MIN_WORK_PER_PART, part_range, parts_for};

/// A compiled part: `(frame, lo, hi, index)`.
pub type PartFn = unsafe extern "C" fn(*mut u8, i64, i64, i64);

/// Calls of `run_parts` that cut their loop into more than one part, since the process began.
static SPLIT: AtomicU64 = AtomicU64::new(0);

/// How many loops have been split into parts so far (for tests and diagnostics).
pub fn split_loops() -> u64 {
    SPLIT.load(Ordering::Relaxed)
}

/// 0: not set, use the machine's cores.
static THREADS: AtomicUsize = AtomicUsize::new(0);

/// Sets the threads that generated loops use (`--threads`); 1 keeps all code on the caller.
/// Workers already started stay, but no more than `n - 1` are used.
pub fn set_threads(n: usize) {
    THREADS.store(n.clamp(1, MAX_PARTS), Ordering::Relaxed);
}

/// The threads generated loops use: the setting, or the machine's cores (at most `MAX_PARTS`).
pub fn threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => machine_cores(),
        n => n,
    }
}

/// The cores this process may use, at most `MAX_PARTS`; asked of the system once (it reads the
/// affinity mask and cgroup limits, too slow to repeat for every loop).
fn machine_cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, MAX_PARTS)
    })
}

/// Called from generated code: runs `f` over `0..items` in parts and returns how many parts
/// there were (each wrote its own partial-sum area of the frame).
///
/// # Safety
/// `f` is the address of a function with `PartFn`'s signature that may be called with
/// `frame` and any range of `0..items` from any thread, while this call lasts.
pub(crate) unsafe extern "C" fn run_parts(f: i64, frame: i64, items: i64, work: i64) -> i64 {
    // SAFETY: the caller passes the address of a function with `PartFn`'s signature.
    let f: PartFn = unsafe { std::mem::transmute::<usize, PartFn>(f as usize) };
    let job = Job::new(f, frame as usize, items, parts_for(items, work));
    if job.parts > 1 {
        SPLIT.fetch_add(1, Ordering::Relaxed);
    }
    job.dispatch();
    job.parts as i64
}

/// Runs `f(lo, hi)` for each of `parts` parts of `0..items`, on the pool, from Rust.
pub fn for_parts<F: Fn(i64, i64) + Sync>(items: i64, parts: usize, f: &F) {
    unsafe extern "C" fn call<F: Fn(i64, i64) + Sync>(frame: *mut u8, lo: i64, hi: i64, _: i64) {
        // SAFETY: `frame` is the `&F` that `for_parts` holds until every part is done.
        let f = unsafe { &*(frame as *const F) };
        f(lo, hi)
    }
    Job::new(
        call::<F>,
        f as *const F as usize,
        items,
        parts.clamp(1, MAX_PARTS),
    )
    .dispatch();
}

/// Parts `first, first + step, …` of `parts` over `0..items`.
#[derive(Clone, Copy)]
struct Job {
    f: PartFn,
    frame: usize,
    items: i64,
    parts: usize,
    first: usize,
    step: usize,
    /// Whether this call takes its parts last to first.
    reverse: bool,
    /// The caller's floating-point modes (`fpenv`), which its workers take on for the job.
    control: super::fpenv::Modes,
}

impl Job {
    /// Every part of `0..items`, from the first, for `dispatch` to deal out.
    fn new(f: PartFn, frame: usize, items: i64, parts: usize) -> Job {
        Job {
            f,
            frame,
            items,
            parts,
            first: 0,
            step: 1,
            reverse: false,
            control: super::fpenv::Modes::current(),
        }
    }

    /// Runs every part: on the calling thread and the workers when they are free, else all
    /// on the calling thread. Every other call, each thread takes its parts in reverse order:
    /// a loop over more data than a core's L2 then starts where the last call ended, on data
    /// still in the cache. The parts' results are the same in either order.
    fn dispatch(mut self) {
        static CALLS: AtomicU64 = AtomicU64::new(0);
        self.reverse = CALLS.fetch_add(1, Ordering::Relaxed) % 2 == 1;
        let lanes = crate::lower::parts::lanes_for(threads(), self.parts);
        let pool = pool();
        if lanes == 1
            || pool
                .busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            self.run();
            return;
        }
        self.control = super::fpenv::Modes::current();
        // Thread t runs parts t, t + lanes, …: the same parts, whichever thread runs them.
        let tickets: Vec<u64> = (1..lanes)
            .map(|t| {
                pool.worker(t - 1).post(Job {
                    first: t,
                    step: lanes,
                    ..self
                })
            })
            .collect();
        Job {
            step: lanes,
            ..self
        }
        .run();
        for (t, ticket) in tickets.into_iter().enumerate() {
            pool.worker(t).wait(ticket);
        }
        pool.busy.store(false, Ordering::Release);
    }

    fn run(&self) {
        let mine = crate::lower::parts::lane_parts(self.parts, self.first, self.step);
        let part = |p: usize| {
            let (lo, hi) = part_range(self.items, self.parts, p);
            // SAFETY: the frame lives on the stack of the generated code that called
            // `run_parts` until every part is done, and parts write disjoint ranges of the slots
            // and disjoint areas of the frame.
            unsafe { (self.f)(self.frame as *mut u8, lo, hi, p as i64) };
        };
        match self.reverse {
            true => mine.rev().for_each(part),
            false => mine.for_each(part),
        }
    }
}

struct Pool {
    /// Held by the one caller whose parts the workers run.
    busy: AtomicBool,
    workers: [OnceLock<&'static Worker>; MAX_PARTS - 1],
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| Pool {
        busy: AtomicBool::new(false),
        workers: Default::default(),
    })
}

impl Pool {
    fn worker(&self, i: usize) -> &'static Worker {
        self.workers[i].get_or_init(Worker::start)
    }
}

/// One worker thread and its mailbox. Jobs are numbered; `posted` is the last one handed over,
/// `done` the last one finished. Only the caller holding `Pool::busy` posts.
struct Worker {
    job: UnsafeCell<Option<Job>>,
    posted: AtomicU64,
    done: AtomicU64,
    sleeping: Mutex<bool>,
    wake: Condvar,
}

// SAFETY: `job` is written only by the poster before it publishes `posted` (Release) and read
// by the worker after it observes it (Acquire), and the poster waits for `done` before it
// writes again.
unsafe impl Sync for Worker {}

/// How long a worker waits for its next job before it sleeps, and a caller for its workers
/// before it yields the core. A training step hands out work a few times per step, so the next
/// job usually comes within this time; meanwhile the waiting thread yields at every check, so
/// that other threads (the GEMM kernel's) get the core whenever they want it.
const PATIENCE: std::time::Duration = std::time::Duration::from_micros(200);

/// Waits until `ready()`, spinning a little, then yielding the core at each check, for at most
/// `PATIENCE`; returns whether it became ready.
fn wait_briefly(ready: impl Fn() -> bool) -> bool {
    for _ in 0..64 {
        if ready() {
            return true;
        }
        std::hint::spin_loop();
    }
    let start = std::time::Instant::now();
    while start.elapsed() < PATIENCE {
        if ready() {
            return true;
        }
        std::thread::yield_now();
    }
    ready()
}

impl Worker {
    fn start() -> &'static Worker {
        let w: &'static Worker = Box::leak(Box::new(Worker {
            job: UnsafeCell::new(None),
            posted: AtomicU64::new(0),
            done: AtomicU64::new(0),
            sleeping: Mutex::new(false),
            wake: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("adjoint-worker".into())
            .spawn(move || w.serve())
            .expect("the system can start a thread");
        w
    }

    fn post(&self, job: Job) -> u64 {
        let ticket = self.posted.load(Ordering::Relaxed) + 1;
        // SAFETY: see `unsafe impl Sync`: the previous job is done, so the worker does not
        // read this cell now.
        unsafe { *self.job.get() = Some(job) };
        let sleeping = self.sleeping.lock().unwrap_or_else(|e| e.into_inner());
        self.posted.store(ticket, Ordering::Release);
        if *sleeping {
            self.wake.notify_one();
        }
        ticket
    }

    fn wait(&self, ticket: u64) {
        while !wait_briefly(|| self.done.load(Ordering::Acquire) >= ticket) {}
    }

    fn serve(&self) {
        let mut seen = 0u64;
        loop {
            if !wait_briefly(|| self.posted.load(Ordering::Acquire) != seen) {
                let mut sleeping = self.sleeping.lock().unwrap_or_else(|e| e.into_inner());
                *sleeping = true;
                while self.posted.load(Ordering::Acquire) == seen {
                    sleeping = self.wake.wait(sleeping).unwrap_or_else(|e| e.into_inner());
                }
                *sleeping = false;
            }
            seen = self.posted.load(Ordering::Acquire);
            // SAFETY: published before `posted` was stored.
            let job = unsafe { (*self.job.get()).expect("a posted job") };
            // The caller's modes, so that a part gives the same bits on any thread.
            if super::fpenv::Modes::current() != job.control {
                job.control.apply();
            }
            job.run();
            self.done.store(seen, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI64;

    #[test]
    fn parts_cover_the_range_once_in_order() {
        for items in [1i64, 2, 7, 391, 1_000_000] {
            for parts in 1..=MAX_PARTS {
                let mut next = 0;
                for p in 0..parts {
                    let (lo, hi) = part_range(items, parts, p);
                    assert_eq!(lo, next);
                    assert!(hi >= lo);
                    next = hi;
                }
                assert_eq!(next, items);
            }
        }
    }

    #[test]
    fn parts_follow_the_work_not_the_threads() {
        assert_eq!(parts_for(4096, 1), 1);
        assert_eq!(parts_for(100_000, 1), 3);
        assert_eq!(parts_for(1_000_000, 1), MAX_PARTS);
        assert_eq!(parts_for(3, 1 << 20), 3);
    }

    /// Each part adds its range's sum into its own frame entry.
    unsafe extern "C" fn sum_range(frame: *mut u8, lo: i64, hi: i64, part: i64) {
        let sums = frame as *const AtomicI64;
        let s: i64 = (lo..hi).sum();
        // SAFETY: the frame holds `MAX_PARTS` atomics and `part` is below that.
        unsafe { (*sums.add(part as usize)).fetch_add(s, Ordering::Relaxed) };
    }

    #[test]
    fn every_part_runs_once_even_from_many_callers() {
        // Results do not depend on the thread count, so other tests may run under this one.
        set_threads(4);
        let callers: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..200 {
                        let frame: Vec<AtomicI64> =
                            (0..MAX_PARTS).map(|_| AtomicI64::new(0)).collect();
                        let n = 1_000_000i64;
                        // SAFETY: `sum_range` is a `PartFn` that adds into the frame's
                        // atomics, which live until the call returns.
                        let parts = unsafe {
                            run_parts(
                                sum_range as PartFn as usize as i64,
                                frame.as_ptr() as i64,
                                n,
                                1,
                            )
                        };
                        assert_eq!(parts, MAX_PARTS as i64);
                        for (p, sum) in frame.iter().enumerate() {
                            let (lo, hi) = part_range(n, MAX_PARTS, p);
                            assert_eq!(sum.load(Ordering::Relaxed), (lo..hi).sum::<i64>());
                        }
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
    }
}
