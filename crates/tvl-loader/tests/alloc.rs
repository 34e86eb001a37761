//! A hostile tensor count must be refused before anything is allocated for it. This
//! binary counts the bytes the global allocator hands out while a file is validated.

mod common;

use tvl_loader::{LoadError, TvlFile};
use vtc_testdata::alloc::CountingAlloc;

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc::new();

#[test]
fn allocation_is_bounded_by_the_tensor_count() {
    // One test function: the counter is global and tests run on parallel threads.
    let mut b = common::valid();
    common::patch_header(&mut b, |h| h.tensor_count = u32::MAX);
    let (r, used) = GLOBAL.measure(|| TvlFile::from_bytes(&b));
    assert!(matches!(r, Err(LoadError::TableTooLarge { .. })));
    assert!(used < 4096, "{used} bytes allocated for a refused table");

    let b = common::valid();
    let (file, used) = GLOBAL.measure(|| TvlFile::from_bytes(&b).unwrap());
    assert_eq!(file.len(), 4);
    assert!(used < 4096, "{used} bytes allocated for 4 tensors");
}
