//! Bytes -> GGUF parse -> metadata accessors -> convert to TVL (output type from the
//! first byte) -> write -> the loader must accept what was written -> model load.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vtc_import::{ConvertOptions, GgufFile, OutDType, convert};

#[path = "common.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, bytes)) = data.split_first() else {
        return;
    };
    let Ok(g) = GgufFile::from_bytes(bytes.to_vec()) else {
        return;
    };
    for (k, v) in g.metadata() {
        let _ = (
            g.get(k),
            v.to_string(),
            v.as_u64(),
            v.as_i64(),
            v.as_f32(),
            v.as_str(),
        );
        if let Some(a) = v.as_array() {
            let _ = (a.len(), a.get(0), a.get(a.len()), a.to_f32s(), a.to_i64s());
        }
    }
    for t in g.tensors() {
        assert_eq!(g.tensor_data(t).len() as u64, t.nbytes);
        if t.n_elements() <= 1 << 20 {
            let _ = vtc_import::dequant::dequantize_to_vec(
                t.ggml_type,
                g.tensor_data(t),
                t.n_elements() as usize,
            );
        }
    }
    let dtype = OutDType::ALL[sel as usize % OutDType::ALL.len()];
    let opts = ConvertOptions {
        dtype,
        tile_rows: 1 + (sel as usize >> 4) % 8,
        block_tile_rows: 8,
    };
    if let Ok(conv) = convert(&g, &opts, &mut |_, _| {}) {
        common::write_and_touch(conv);
    }
});
