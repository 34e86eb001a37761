//! Shared by the fuzz targets: touching every byte of a TVL file the way the runtime
//! would (and writing a converted model first), and a little input splitter.
#![allow(dead_code)]

use tvl_loader::TvlFile;
use vtc_kernels::Scalar;
use vtc_model::{Model, Session};

/// Validate-time invariants that must hold for any file the loader accepts, then every
/// view read whole, every typed accessor tried, every checksum verified, the model loaded
/// and, for tiny models, one forward pass on the scalar backend (the kernels read every
/// weight through the views: an unchecked offset would be an out-of-bounds read).
pub fn touch_tvl(file: &TvlFile) {
    let len = file.file_len() as usize;
    assert_eq!(file.as_bytes().len(), len);
    let mut sum = 0u64;
    for (i, t) in file.tensors().enumerate() {
        assert_eq!(t.index(), i);
        assert!(t.offset() as usize + t.bytes().len() <= len);
        assert_eq!(t.offset() % 128, 0);
        assert_eq!(t.bytes().len(), t.nbytes());
        assert!(file.get(t.name()).is_some());
        for &b in t.bytes() {
            sum = sum.wrapping_add(u64::from(b));
        }
        let _ = (t.shape(), t.numel(), t.dtype(), t.layout(), t.tile_rows());
        if let Ok(v) = t.as_f32() {
            assert_eq!(std::mem::size_of_val(v), t.nbytes());
        }
        if let Ok(v) = t.as_f16() {
            assert_eq!(std::mem::size_of_val(v), t.nbytes());
        }
        let _ = t.as_u8();
        let _ = t.as_u32();
        let _ = t.geometry();
        let _ = t.block_geometry();
        if let Ok(q) = t.as_quant() {
            std::hint::black_box(&q);
        }
        let _ = t.line_utilization();
        let _ = t.stored_checksum();
        let _ = t.verify();
    }
    std::hint::black_box(sum);
    assert!(file.tensor_at(file.len()).is_none());
    let Ok(model) = Model::load(file) else {
        return;
    };
    let c = model.config();
    let tok = model.tokenizer();
    if let Ok(ids) = tok.encode_prompt("Once upon a time, 12 ünïcödé <|im_end|>") {
        assert!(ids.iter().all(|&id| (id as usize) < tok.vocab_size()));
        let _ = tok.decode(&ids);
    }
    // One forward pass when it is cheap (the fuzzer's inputs are small anyway).
    let work = c.dim * (c.hidden_dim + c.vocab_size + c.dim) * c.n_layers.max(1);
    if work <= 1 << 22 {
        let ctx = c.context_len.min(4);
        if let Ok(mut s) = Session::new(&model, Scalar, ctx) {
            let token = tok.bos_id().unwrap_or(0);
            if let Ok(logits) = s.forward(token) {
                assert_eq!(logits.len(), c.vocab_size);
            }
        }
    }
}

/// What the importing targets do with a model they converted: write it, the loader must
/// accept what was written, then [`touch_tvl`].
pub fn write_and_touch(conv: vtc_import::Conversion) {
    let mut out = Vec::new();
    conv.writer
        .write_to(&mut out)
        .expect("a converted model writes");
    let file = TvlFile::from_bytes(&out).expect("the loader accepts what was written");
    touch_tvl(&file);
}

/// Cut `data` into a length-prefixed head (u32 LE length, clamped) and the rest.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    if data.len() < 4 {
        return (data, &[]);
    }
    let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    let rest = &data[4..];
    let n = n.min(rest.len());
    rest.split_at(n)
}
