//! The worker pool behind [`Threaded`](crate::Threaded): fork-join for many small jobs
//! (a few hundred per token) on a machine that may be busy with other work.
//!
//! A job is `n` numbered parts and one function. Each thread (the caller and every
//! worker) has a home run of contiguous parts, which it claims from the front, in
//! order, so it streams one contiguous piece of the weights as a static split would
//! (its prefetches run on into its own next part). A thread out of home parts takes
//! the others' from the back. So a job never waits for a worker to start: a worker
//! that is asleep, or descheduled because its core is busy with another process,
//! claims nothing and the caller runs its parts too. The caller waits only for the
//! parts a worker has already claimed.
//!
//! An idle worker spins on the job word (with the CPU's pause hint) for [`SPIN`],
//! longer than the gaps between the products of one token, then yields its core for
//! [`YIELD`] (staying runnable where it is), and then sleeps on a futex
//! (`thread::park`), to be unparked by the next job. A worker that finds, while
//! spinning, that the kernel's scheduler pre-empted it for another thread (its core is
//! shared with other work) skips the spinning and yielding for a while: spinning on a
//! shared core uses up the worker's share of it between jobs, so it is then pre-empted
//! in the middle of a part, which the caller has to wait for. A pause of the spinning
//! that is not such a pre-emption (the hypervisor running another guest's vCPU, an
//! interrupt) is no reason to stop spinning: no thread of this system wanted the core.
//! On Linux the thread's count of involuntary context switches tells the two apart
//! (see [`Preemptions`]); a worker that parks on every pause would leave the caller to
//! run most parts alone (measured on a VM whose vCPUs pause every few milliseconds:
//! 2-thread SmolLM2 q4_1 decode at 1.1x the 1-thread speed instead of 1.8x). These choices were measured, with a busy process pinned
//! to one core and with one left free to move (see `docs/performance-log.md`, session 6).
//!
//! The protocol, on one 64-bit job word (`state`): the epoch (high 32 bits) counts
//! jobs, bit 31 says the job is closed, the low 31 bits count the workers inside it.
//! A worker enters the open job of the epoch it saw with a compare-and-swap that adds
//! one (so it can never enter a closed job), claims parts until none is left,
//! and leaves by subtracting one. The caller, out of parts, closes the job and waits
//! until no worker is inside; only then does it return (and the borrowed function
//! go out of scope), and only then may the next job be written.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};

/// How long an idle worker spins (longer than the gaps between the products of one
/// token).
const SPIN: Duration = Duration::from_micros(30);

/// How long an idle worker then yields its core before it sleeps.
const YIELD: Duration = Duration::from_millis(1);

/// Spins between two looks at the clock.
const SPINS_PER_CLOCK: u32 = 64;

/// A gap between two looks at the clock of a spinning worker that means it was
/// descheduled (64 spins take a few microseconds); it counts as sharing its core only
/// if the scheduler pre-empted it for another thread ([`Preemptions`]).
const DESCHEDULED: Duration = Duration::from_micros(50);

/// How long a worker that was descheduled while spinning parks as soon as it is idle.
const SHARED_CORE_HOLD: Duration = Duration::from_millis(200);

/// Spins of the caller waiting for workers to leave a job before it yields its core
/// (to a worker descheduled on the same core).
const CALLER_SPINS: u32 = 1 << 12;

/// Bit of `state`: the job is closed to workers.
const CLOSED: u64 = 1 << 31;
/// Bits of `state`: workers inside the job.
const INSIDE: u64 = CLOSED - 1;

/// The epoch (job number) of a job word.
fn epoch(state: u64) -> u32 {
    (state >> 32) as u32
}

/// One part's work: `f(part_index)`.
type PartFn<'a> = dyn Fn(usize) + Sync + 'a;

/// A value alone in its cache lines (two, for the adjacent-line prefetcher), so the
/// caller's and the workers' writes to different words do not contend.
#[repr(align(128))]
struct Padded<T>(T);

struct Shared {
    /// The job word: epoch, closed bit, workers inside.
    state: Padded<AtomicU64>,
    /// Per thread (the caller first, then the workers), its home run of parts not yet
    /// claimed: `front << 32 | back`, claimed by its owner from the front and by the
    /// others from the back.
    runs: Vec<Padded<AtomicU64>>,
    /// The current job's function (lifetime erased, see [`Pool::run`]; its parts are
    /// in `runs`); written only by the caller while no worker is inside a job.
    job: UnsafeCell<*const PartFn<'static>>,
    /// Per worker: it is (about to be) parked and needs an unpark.
    sleeping: Vec<Padded<AtomicBool>>,
    shutdown: AtomicBool,
    /// A panic raised by a part on a worker, for the caller to resume.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: every field but `job` is Sync. `job` is written by `Pool::run` only while it
// holds `Pool::caller` and no worker is inside a job (the previous job was closed and
// its inside-count seen at zero), and read by a worker only between entering an open
// job (an acquire CAS on `state`, which the caller published with a SeqCst store after
// writing `job`) and leaving it; the caller does not write `job` again before every
// worker has left. The function behind `job` is `Sync`, so calling it from the
// workers is sound.
unsafe impl Sync for Shared {}
// SAFETY: `Shared` is only ever shared (in an `Arc`); the raw pointer in `job` points
// to a `Sync` function, so moving the handle to a worker thread is sound.
unsafe impl Send for Shared {}

/// A fork-join pool: `workers` threads plus the calling thread.
pub(crate) struct Pool {
    shared: Arc<Shared>,
    threads: Vec<Thread>,
    handles: Vec<JoinHandle<()>>,
    /// Held while a job runs: jobs from two threads at once (or from inside a part)
    /// run serially on their caller instead of sharing the one job slot.
    caller: Mutex<()>,
}

impl Pool {
    /// A pool with `workers` threads besides the caller (0 runs everything on the
    /// caller).
    pub(crate) fn new(workers: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Padded(AtomicU64::new(0)),
            runs: (0..=workers).map(|_| Padded(AtomicU64::new(0))).collect(),
            job: UnsafeCell::new(&|_| {}),
            sleeping: (0..workers)
                .map(|_| Padded(AtomicBool::new(false)))
                .collect(),
            shutdown: AtomicBool::new(false),
            panic: Mutex::new(None),
        });
        let mut pool = Pool {
            shared,
            threads: Vec::with_capacity(workers),
            handles: Vec::with_capacity(workers),
            caller: Mutex::new(()),
        };
        for me in 0..workers {
            let shared = Arc::clone(&pool.shared);
            // On failure `pool` drops here and stops the workers already started.
            let handle = thread::Builder::new()
                .name(format!("vtc-worker-{me}"))
                .spawn(move || work(&shared, me))?;
            pool.threads.push(handle.thread().clone());
            pool.handles.push(handle);
        }
        Ok(pool)
    }

    /// Run `f(i)` for every part `i` in `0..parts`, each exactly once, on the calling
    /// thread and whichever workers join in; return when all are done. A panic in any
    /// part is resumed here once every worker has left the job.
    pub(crate) fn run(&self, parts: usize, f: &PartFn<'_>) {
        let serial = || (0..parts).for_each(f);
        if parts <= 1 || self.handles.is_empty() {
            return serial();
        }
        let _one = match self.caller.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(e)) => e.into_inner(),
            Err(TryLockError::WouldBlock) => return serial(),
        };
        let shared = &*self.shared;
        // SAFETY: only the lifetime changes (the same fat pointer). The pointer is read
        // by workers only inside this job, and this function does not return (even by
        // unwinding: `Close`) before the job is closed and no worker is inside it.
        let f_static =
            unsafe { std::mem::transmute::<*const PartFn<'_>, *const PartFn<'static>>(f) };
        // SAFETY: `caller` is held, so no other job is being published, and the
        // previous job was closed with no worker inside (see `Close`): no worker reads
        // `job` until it enters the job published below.
        unsafe {
            *shared.job.get() = f_static;
        }
        let total = u32::try_from(parts).expect("a job has fewer than 2^32 parts");
        let threads = shared.runs.len() as u64;
        for (t, run) in (0u64..).zip(&shared.runs) {
            let front = u64::from(total) * t / threads;
            let back = u64::from(total) * (t + 1) / threads;
            run.0.store(front << 32 | back, Ordering::Relaxed);
        }
        let old = shared.state.0.load(Ordering::Relaxed);
        let open = u64::from(epoch(old).wrapping_add(1)) << 32;
        // SeqCst, paired with the sleepers' SeqCst flag store and state load: either a
        // worker sees this job before it parks, or its flag is seen here and it is
        // unparked.
        shared.state.0.store(open, Ordering::SeqCst);
        for (flag, t) in shared.sleeping.iter().zip(&self.threads) {
            if flag.0.load(Ordering::SeqCst) {
                t.unpark();
            }
        }
        let close = Close(shared);
        claim_parts(shared, 0, f);
        drop(close);
        let worker_panic = shared
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(p) = worker_panic {
            panic::resume_unwind(p);
        }
    }
}

/// Claim parts of the current job until none is left, running each: thread `me`'s
/// home run from the front, then every other run from the back.
fn claim_parts(shared: &Shared, me: usize, f: &PartFn<'_>) {
    let runs = &shared.runs;
    while let Some(i) = claim(&runs[me].0, true) {
        f(i);
    }
    for k in 1..runs.len() {
        let run = &runs[(me + k) % runs.len()].0;
        while let Some(i) = claim(run, false) {
            f(i);
        }
    }
}

/// Claim the first (`front`) or the last part left in `run`, if any.
fn claim(run: &AtomicU64, front: bool) -> Option<usize> {
    let mut now = run.load(Ordering::Relaxed);
    loop {
        let (first, end) = (now >> 32, now & u64::from(u32::MAX));
        if first >= end {
            return None;
        }
        let (next, part) = if front {
            (now + (1 << 32), first)
        } else {
            (now - 1, end - 1)
        };
        match run.compare_exchange_weak(now, next, Ordering::Relaxed, Ordering::Relaxed) {
            // Below 2^32 (`run` was set from a `u32` part count).
            Ok(_) => return Some(part as usize),
            Err(seen) => now = seen,
        }
    }
}

/// Closes the current job and waits until no worker is inside it, on return and on
/// unwinding from a panicking part alike.
struct Close<'a>(&'a Shared);

impl Drop for Close<'_> {
    fn drop(&mut self) {
        let state = &self.0.state.0;
        state.fetch_or(CLOSED, Ordering::AcqRel);
        let mut spins = 0u32;
        // Acquire, paired with the workers' release on leaving: their parts' writes
        // are visible once the count reads zero.
        while state.load(Ordering::Acquire) & INSIDE != 0 {
            if spins < CALLER_SPINS {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::yield_now();
            }
        }
    }
}

/// A worker's life: wait for a job, enter it if it is still open, claim parts, leave.
fn work(shared: &Shared, me: usize) {
    let mut seen = 0u32;
    let mut shared_until = Instant::now();
    let mut preemptions = Preemptions::new();
    while let Some(state) = wait_for_job(shared, me, seen, &mut shared_until, &mut preemptions) {
        seen = epoch(state);
        let Some(entered) = enter(shared, state) else {
            continue;
        };
        seen = epoch(entered);
        // SAFETY: inside an open job, which the caller published (writing `job`
        // before its SeqCst store of the job word, acquired by our CAS) and will not
        // overwrite nor let go out of scope before we leave.
        let f = unsafe { &**shared.job.get() };
        let result = panic::catch_unwind(AssertUnwindSafe(|| claim_parts(shared, me + 1, f)));
        if let Err(p) = result {
            *shared.panic.lock().unwrap_or_else(PoisonError::into_inner) = Some(p);
        }
        // Release: our parts' writes happen before the caller sees us gone.
        shared.state.0.fetch_sub(1, Ordering::Release);
    }
}

/// Enter the open job of `state`'s epoch or a later one; `None` once it is closed.
/// Returns the job word as entered.
fn enter(shared: &Shared, mut state: u64) -> Option<u64> {
    loop {
        if state & CLOSED != 0 {
            return None;
        }
        match shared.state.0.compare_exchange_weak(
            state,
            state + 1,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => return Some(state + 1),
            Err(now) => state = now,
        }
    }
}

/// Wait until the job word's epoch differs from `seen`; `None` on shutdown.
///
/// The worker spins for [`SPIN`], yields for [`YIELD`], then parks. While spinning it
/// looks at the clock every [`SPINS_PER_CLOCK`] spins: a gap of [`DESCHEDULED`] in
/// which the scheduler pre-empted it ([`Preemptions`]) means its core is shared with
/// another runnable thread, and for the next [`SHARED_CORE_HOLD`] (`shared_until`) it
/// parks as soon as it is idle.
fn wait_for_job(
    shared: &Shared,
    me: usize,
    seen: u32,
    shared_until: &mut Instant,
    preemptions: &mut Preemptions,
) -> Option<u64> {
    let mut start = Instant::now();
    let mut last = start;
    let mut spins = 0u32;
    loop {
        let state = shared.state.0.load(Ordering::Acquire);
        if epoch(state) != seen {
            return Some(state);
        }
        if shared.shutdown.load(Ordering::Relaxed) {
            return None;
        }
        if start >= *shared_until {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if !spins.is_multiple_of(SPINS_PER_CLOCK) {
                continue;
            }
            let now = Instant::now();
            if now.duration_since(last) >= DESCHEDULED && preemptions.new_since_last_look() {
                *shared_until = now + SHARED_CORE_HOLD;
            } else if now.duration_since(last) >= DESCHEDULED {
                // Paused, but not for another thread of this system: spin on.
                last = now;
                continue;
            } else if now.duration_since(start) < SPIN {
                last = now;
                continue;
            } else if now.duration_since(start) < SPIN + YIELD {
                // Runnable, but letting other threads have the core. (A sleeping worker
                // is woken onto a busy CPU when none is idle, often the caller's,
                // where it only takes turns with the caller.)
                thread::yield_now();
                // A yield that let another thread run counts as involuntary.
                preemptions.new_since_last_look();
                last = Instant::now();
                continue;
            }
        }
        let flag = &shared.sleeping[me].0;
        flag.store(true, Ordering::SeqCst);
        if epoch(shared.state.0.load(Ordering::SeqCst)) == seen
            && !shared.shutdown.load(Ordering::SeqCst)
        {
            // Returns on unpark (or spuriously; the loop looks again).
            thread::park();
        }
        flag.store(false, Ordering::Relaxed);
        preemptions.new_since_last_look();
        start = Instant::now();
        last = start;
    }
}

/// The calling thread's count of involuntary context switches: times the kernel's
/// scheduler took its core away for another thread while it was runnable (Linux
/// `getrusage(RUSAGE_THREAD)`, `ru_nivcsw`), as of the last look. Where the count
/// cannot be read, every look reports new pre-emptions (so any pause counts, as a
/// pause of the clock is the only sign left).
struct Preemptions {
    last: Option<u64>,
}

impl Preemptions {
    fn new() -> Self {
        let mut p = Preemptions { last: None };
        p.new_since_last_look();
        p
    }

    /// Whether the count grew since the last look (always, where it cannot be read).
    fn new_since_last_look(&mut self) -> bool {
        let now = involuntary_switches();
        let grew = match (self.last, now) {
            (Some(before), Some(now)) => now > before,
            _ => true,
        };
        self.last = now;
        grew
    }
}

#[cfg(target_os = "linux")]
fn involuntary_switches() -> Option<u64> {
    // SAFETY: `rusage` is plain integers, for which all-zero is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `getrusage` writes only into the `rusage` it is given, which lives for
    // the call; RUSAGE_THREAD asks for the calling thread's counts.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) };
    if rc != 0 {
        return None;
    }
    u64::try_from(usage.ru_nivcsw).ok()
}

#[cfg(not(target_os = "linux"))]
fn involuntary_switches() -> Option<u64> {
    None
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        for t in &self.threads {
            t.unpark();
        }
        for h in self.handles.drain(..) {
            // A worker never panics outside a part (those are caught), so there is
            // nothing to report here.
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Every part runs exactly once, for part counts around the worker count, many
    /// jobs in a row (so workers go through spinning, sleeping and waking).
    #[test]
    fn every_part_runs_once() {
        for workers in 0..=3 {
            let pool = Pool::new(workers).unwrap();
            for parts in [0, 1, 2, 3, 31, 33, 200] {
                for round in 0..50 {
                    let counts: Vec<AtomicUsize> =
                        (0..parts).map(|_| AtomicUsize::new(0)).collect();
                    pool.run(parts, &|i| {
                        counts[i].fetch_add(1, Ordering::Relaxed);
                    });
                    let got: Vec<usize> =
                        counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
                    assert_eq!(
                        got,
                        vec![1; parts],
                        "{workers} workers, {parts} parts, round {round}"
                    );
                    if round == 25 {
                        // Long enough for the workers to spin, yield and go to sleep.
                        thread::sleep((SPIN + YIELD) * 2);
                    }
                }
            }
        }
    }

    /// Jobs from several threads at once (one runs on the pool, the others serially)
    /// and from inside a part all complete.
    #[test]
    fn concurrent_and_nested_jobs_complete() {
        let pool = Pool::new(2).unwrap();
        let total = AtomicUsize::new(0);
        thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..100 {
                        pool.run(8, &|_| {
                            pool.run(4, &|_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.into_inner(), 3 * 100 * 8 * 4);
    }

    /// The pre-emption count is readable on Linux and only grows; a fresh look right
    /// after another reports nothing new unless the thread was pre-empted in between.
    #[cfg(target_os = "linux")]
    #[test]
    fn preemptions_are_counted_on_linux() {
        let first = involuntary_switches().expect("getrusage(RUSAGE_THREAD) works");
        let mut p = Preemptions::new();
        assert!(p.last.is_some_and(|n| n >= first));
        for _ in 0..1000 {
            let before = p.last.unwrap();
            let grew = p.new_since_last_look();
            let now = p.last.unwrap();
            assert!(now >= before);
            assert_eq!(grew, now > before);
        }
    }

    /// A panic in a part reaches the caller, and the pool still works afterwards.
    #[test]
    fn a_panicking_part_panics_the_caller() {
        let pool = Pool::new(2).unwrap();
        for bad in [0, 7, 15] {
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.run(16, &|i| {
                    if i == bad {
                        panic!("part {i} failed");
                    }
                });
            }));
            let msg = r
                .expect_err("the panic is resumed")
                .downcast::<String>()
                .unwrap();
            assert_eq!(*msg, format!("part {bad} failed"));
        }
        let ran = AtomicUsize::new(0);
        pool.run(16, &|_| {
            ran.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(ran.into_inner(), 16);
    }
}
