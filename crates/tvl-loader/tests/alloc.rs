//! A hostile tensor count must be refused before anything is allocated for it. This
//! binary counts the bytes the global allocator hands out while a file is validated.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use tvl_loader::{LoadError, TvlFile};

struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts the bytes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn allocation_is_bounded_by_the_tensor_count() {
    // One test function: the counter is global and tests run on parallel threads.
    let mut b = common::valid();
    common::patch_header(&mut b, |h| h.tensor_count = u32::MAX);
    let before = ALLOCATED.load(Ordering::Relaxed);
    let r = TvlFile::from_bytes(&b);
    let used = ALLOCATED.load(Ordering::Relaxed) - before;
    assert!(matches!(r, Err(LoadError::TableTooLarge { .. })));
    assert!(used < 4096, "{used} bytes allocated for a refused table");

    let b = common::valid();
    let before = ALLOCATED.load(Ordering::Relaxed);
    let file = TvlFile::from_bytes(&b).unwrap();
    let used = ALLOCATED.load(Ordering::Relaxed) - before;
    assert_eq!(file.len(), 4);
    assert!(used < 4096, "{used} bytes allocated for 4 tensors");
}
