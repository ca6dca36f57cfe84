//! The hand-written kernels' parts, run on libtorch's own OpenMP team.
//!
//! Why: after each parallel op, libtorch's OpenMP workers spin a while before they sleep
//! (libgomp's `GOMP_SPINCOUNT`). A kernel that runs its parts on threads of its own shares the
//! cores with those spinning workers. On the 2-core machine the official @80 training step ran
//! 250–260 problems/s with the kernels on std threads, and 280–304 with the spin cut
//! (`GOMP_SPINCOUNT=10000` or `0`, 2 runs each, 2026-12-07). Run on the team's own threads
//! (libgomp's `GOMP_parallel`, the call that `#pragma omp parallel` compiles to), the parts take
//! the cores the workers would spin on, and no setting is needed before the process starts.
//!
//! The threads claim the items in turn (an atomic counter), so a thread that finishes early
//! takes the next item instead of waiting at the end for a slower one: with one part per
//! thread, the team's second thread spent ≈ 4 % of the step waiting for the first inside the
//! kernels (`perf`, 2026-12-07). Which thread runs an item does not change its result.
//!
//! libgomp is found at run time (`dlsym`): where the process has none in its global scope
//! (another OpenMP runtime, a notebook that loaded libtorch locally) or `AVR_OPENMP_TEAM=0`,
//! the parts run on scoped std threads, with the same results.

use std::ffi::{c_char, c_uint, c_void};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// libgomp's `GOMP_parallel`: runs `f(data)` on a team of `threads` (0: the default).
type GompParallel = unsafe extern "C" fn(extern "C" fn(*mut c_void), *mut c_void, c_uint, c_uint);

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// libgomp's `GOMP_parallel`, looked up once.
fn gomp_parallel() -> Option<GompParallel> {
    static GOMP: OnceLock<Option<GompParallel>> = OnceLock::new();
    *GOMP.get_or_init(|| {
        if std::env::var("AVR_OPENMP_TEAM").is_ok_and(|v| v == "0") {
            return None;
        }
        // SAFETY: the name is NUL-terminated; a null handle is glibc's RTLD_DEFAULT (the
        // process's global scope), which libtorch's libgomp joins as a load dependency.
        let p = unsafe { dlsym(std::ptr::null_mut(), c"GOMP_parallel".as_ptr()) };
        // SAFETY: the signature is libgomp's ABI (`GOMP_parallel` since GCC 4.9).
        (!p.is_null()).then(|| unsafe { std::mem::transmute::<*mut c_void, GompParallel>(p) })
    })
}

/// `work` on each item, on libtorch's number of threads, each thread claiming the next item
/// left; the results in the items' order. A panic in `work` is raised again here.
pub fn map_on_team<I: Send, T: Send>(items: Vec<I>, work: impl Fn(I) -> T + Sync) -> Vec<T> {
    let threads = (tch::get_num_threads().max(1) as usize).min(items.len());
    if threads <= 1 {
        return items.into_iter().map(work).collect();
    }
    run_on(gomp_parallel(), threads, items, &work)
}

/// [`map_on_team`] on `threads` threads of libgomp's team, or of std's without it.
fn run_on<I: Send, T: Send>(
    gomp: Option<GompParallel>,
    threads: usize,
    items: Vec<I>,
    work: &(dyn Fn(I) -> T + Sync),
) -> Vec<T> {
    let job = Job::new(items, work);
    match gomp {
        // SAFETY: `job` outlives the call (GOMP_parallel returns when the team has finished),
        // and `drain_job::<I, T>` reads it as the type it is.
        Some(parallel) => unsafe {
            parallel(
                drain_job::<I, T>,
                &job as *const Job<I, T> as *mut c_void,
                threads as c_uint,
                0,
            )
        },
        None => std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| job.drain());
            }
        }),
    }
    job.results()
}

/// One call's items, their results and the next item to claim.
struct Job<'a, I, T> {
    items: Vec<Mutex<Option<I>>>,
    results: Vec<Mutex<Option<std::thread::Result<T>>>>,
    work: &'a (dyn Fn(I) -> T + Sync),
    next: AtomicUsize,
}

impl<'a, I: Send, T: Send> Job<'a, I, T> {
    fn new(items: Vec<I>, work: &'a (dyn Fn(I) -> T + Sync)) -> Self {
        let n = items.len();
        Job {
            items: items.into_iter().map(|i| Mutex::new(Some(i))).collect(),
            results: (0..n).map(|_| Mutex::new(None)).collect(),
            work,
            next: AtomicUsize::new(0),
        }
    }

    /// Claims and runs items until none is left. A panic is kept as the item's result (no
    /// unwinding across libgomp's C frames) and raised by [`Job::results`].
    fn drain(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = self.items.get(i) else {
                return;
            };
            if let Some(item) = lock(slot).take() {
                let out = catch_unwind(AssertUnwindSafe(|| (self.work)(item)));
                *lock(&self.results[i]) = Some(out);
            }
        }
    }

    fn results(self) -> Vec<T> {
        let results = self.results.into_iter();
        results
            .map(
                |r| match r.into_inner().unwrap_or_else(PoisonError::into_inner) {
                    Some(Ok(t)) => t,
                    Some(Err(panic)) => resume_unwind(panic),
                    None => panic!("a team left a kernel's part unrun"),
                },
            )
            .collect()
    }
}

fn lock<V>(m: &Mutex<V>) -> std::sync::MutexGuard<'_, V> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A team thread's body: [`Job::drain`].
extern "C" fn drain_job<I: Send, T: Send>(data: *mut c_void) {
    // SAFETY: `data` is the `Job<I, T>` that `map_on_team` passed, alive until the team
    // finishes.
    let job = unsafe { &*(data as *const Job<I, T>) };
    job.drain();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_item_runs_once_in_order_and_a_panic_comes_back() {
        if std::env::var("AVR_OPENMP_TEAM").map_or(true, |v| v != "0") {
            let found = gomp_parallel().is_some();
            assert!(
                found,
                "libtorch's libgomp is in the test binary's global scope"
            );
        }
        for n in [0, 1, 2, 5] {
            let items: Vec<usize> = (0..n).collect();
            let out = map_on_team(items, |i| (i, std::thread::current().id()));
            assert_eq!(
                out.iter().map(|o| o.0).collect::<Vec<_>>(),
                (0..n).collect::<Vec<_>>()
            );
        }
        let mut buffer = vec![0u32; 8];
        let parts: Vec<&mut [u32]> = buffer.chunks_mut(3).collect();
        map_on_team(parts, |p| p.iter_mut().for_each(|v| *v += 1));
        assert_eq!(buffer, [1; 8]);
        let caught = catch_unwind(|| map_on_team(vec![1, 2], |i| assert_ne!(i, 2, "part two")));
        assert!(caught.is_err());
        // The team still works after a part panicked.
        assert_eq!(map_on_team(vec![3, 4], |i| i * 2), [6, 8]);
        // More items than threads, of uneven cost: each once, in order.
        let items: Vec<u64> = (0..40).collect();
        let slow = |i: u64| {
            std::thread::sleep(std::time::Duration::from_micros(if i % 7 == 0 {
                500
            } else {
                10
            }));
            i + 1
        };
        assert_eq!(
            map_on_team(items.clone(), slow),
            (1..41).collect::<Vec<_>>()
        );
        let on_std = run_on(None, 2, items, &slow);
        assert_eq!(on_std, (1..41).collect::<Vec<_>>());
    }
}
