//! VTC workspace root: examples and benches live here.
