//! `select(None)` honours `VTC_BACKEND`. A test binary of its own, with one test, so
//! that changing the environment cannot race with other tests reading it.

use vtc_kernels::{KNOWN_BACKENDS, KernelError, available, detect, select};

fn set(value: Option<&str>) {
    // SAFETY: this is the only test in this binary, so no other thread reads or writes
    // the environment while it runs.
    unsafe {
        match value {
            Some(v) => std::env::set_var("VTC_BACKEND", v),
            None => std::env::remove_var("VTC_BACKEND"),
        }
    }
}

#[test]
fn select_honours_vtc_backend() {
    // Unset or empty: the detected backend.
    set(None);
    assert_eq!(select(None).unwrap().name(), detect().name());
    set(Some(""));
    assert_eq!(select(None).unwrap().name(), detect().name());

    // Every runnable backend by name; an explicit name wins over the variable.
    for b in available() {
        set(Some(b.name()));
        assert_eq!(select(None).unwrap().name(), b.name());
        assert_eq!(select(Some("scalar")).unwrap().name(), "scalar");
    }

    // Known but not runnable here: Unsupported, never a fallback.
    let runnable: Vec<_> = available().iter().map(|b| b.name()).collect();
    for name in KNOWN_BACKENDS.iter().filter(|n| !runnable.contains(n)) {
        set(Some(name));
        assert!(
            matches!(select(None), Err(KernelError::Unsupported(ref n)) if n == name),
            "{name}"
        );
    }

    set(Some("no-such-backend"));
    assert!(matches!(select(None), Err(KernelError::UnknownBackend(_))));
    set(None);
}
