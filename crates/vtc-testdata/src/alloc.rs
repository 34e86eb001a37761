//! A global allocator that counts the bytes it hands out, for tests that bound how much
//! a parser allocates for a hostile input. The `#[global_allocator]` static must be in
//! the test binary itself:
//!
//! ```
//! use vtc_testdata::alloc::CountingAlloc;
//!
//! #[global_allocator]
//! static GLOBAL: CountingAlloc = CountingAlloc::new();
//!
//! fn main() {
//!     let (v, bytes) = GLOBAL.measure(|| vec![1u8; 1000]);
//!     assert_eq!(v.len(), 1000);
//!     assert!(bytes >= 1000);
//! }
//! ```
//!
//! The counter is global to the process and tests run on parallel threads: a binary
//! that measures should hold a single test function.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Forwards every request to the system allocator unchanged and adds the size of each
/// allocation (and the new size of each reallocation) to a counter. Freed bytes are not
/// subtracted: the counter is every byte handed out, not the peak.
pub struct CountingAlloc {
    allocated: AtomicUsize,
}

impl CountingAlloc {
    /// A counter at 0 (`const`: usable in a `static`).
    pub const fn new() -> Self {
        Self {
            allocated: AtomicUsize::new(0),
        }
    }

    /// The bytes handed out since the process started.
    pub fn allocated(&self) -> usize {
        self.allocated.load(Ordering::Relaxed)
    }

    /// Runs `f` and returns its result with the bytes handed out while it ran (by any
    /// thread: keep other threads quiet).
    pub fn measure<T>(&self, f: impl FnOnce() -> T) -> (T, usize) {
        let before = self.allocated();
        let r = f();
        (r, self.allocated() - before)
    }
}

impl Default for CountingAlloc {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: forwards to the system allocator unchanged; only counts the bytes.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocated.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's (`ptr` came from `System` with `layout`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.allocated.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
