//! The block quantizers against llama.cpp's reference rules as implemented by gguf-py
//! (`tests/data/llamacpp-quant-blocks.json`, written by `scripts/quant_fixture.py`):
//! same scale, minimum and quant bytes for every block, ties and degenerate blocks
//! included; and dequantization inverts the byte layout.

use half::f16;
use tvl_format::DType;
use tvl_format::quant::{BLOCK, dequantize_block, quantize_block};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn quantizers_match_llama_cpp_bit_for_bit() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/llamacpp-quant-blocks.json"
    );
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let blocks: Vec<Vec<f32>> = j["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            b.as_array()
                .unwrap()
                .iter()
                .map(|v| f32::from_bits(v.as_u64().unwrap() as u32))
                .collect()
        })
        .collect();
    assert!(blocks.len() > 100);
    for (dtype, key) in [
        (DType::Q8_0, "q8_0"),
        (DType::Q4_0, "q4_0"),
        (DType::Q4_1, "q4_1"),
    ] {
        let want = j[key].as_array().unwrap();
        assert_eq!(want.len(), blocks.len());
        let f = dtype.scale_fields();
        for (i, (x, w)) in blocks.iter().zip(want).enumerate() {
            let w = hex(w.as_str().unwrap());
            assert_eq!(w.len(), 2 * f + dtype.block_bytes());
            let mut q = vec![0u8; dtype.block_bytes()];
            let (d, m) = quantize_block(dtype, x, &mut q);
            assert_eq!(d.to_le_bytes(), [w[0], w[1]], "{key} block {i}: d");
            if f == 2 {
                assert_eq!(m.to_le_bytes(), [w[2], w[3]], "{key} block {i}: m");
            }
            assert_eq!(q, &w[2 * f..], "{key} block {i}: quants");
            // The GGUF block's value of each element (ggml's formulas) is what
            // dequantize_block gives.
            let mut out = [0.0f32; BLOCK];
            let mw = if f == 2 {
                f16::from_le_bytes([w[2], w[3]])
            } else {
                f16::ZERO
            };
            dequantize_block(dtype, &q, f16::from_le_bytes([w[0], w[1]]), mw, &mut out);
            for (k, &v) in out.iter().enumerate() {
                let nib = if k < 16 { q[k] & 15 } else { q[k - 16] >> 4 };
                let d = f16::from_le_bytes([w[0], w[1]]).to_f32();
                let want = match dtype {
                    DType::Q8_0 => q[k] as i8 as f32 * d,
                    DType::Q4_0 => (nib as f32 - 8.0) * d,
                    _ => nib as f32 * d + mw.to_f32(),
                };
                assert_eq!(v.to_bits(), want.to_bits(), "{key} block {i} element {k}");
            }
        }
    }
}
