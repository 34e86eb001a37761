//! Helpers shared by the loader's integration tests: a small valid file and byte
//! patching of its header and records.
#![allow(dead_code)]

use half::f16;
use tvl_format::{Header, ModelConfig, TABLE_OFFSET, TensorData, TensorRecord, TvlWriter};

/// A valid file with four tensors of different dtypes and layouts:
/// 0 `a` F32 plain [3, 5], 1 `w` F32 row-tiled [5, 33] (tile 4), 2 `t` U8 plain [10],
/// 3 `e` F16 plain [7].
pub fn valid() -> Vec<u8> {
    let cfg = ModelConfig {
        arch: 1,
        dim: 33,
        ..ModelConfig::default()
    };
    let mut w = TvlWriter::new(cfg);
    w.add_plain(
        "a",
        &[3, 5],
        TensorData::F32((0..15).map(|i| i as f32).collect()),
    )
    .unwrap();
    w.add_tiled(
        "w",
        5,
        33,
        4,
        TensorData::F32((0..165).map(|i| i as f32 * 0.5).collect()),
    )
    .unwrap();
    w.add_plain("t", &[10], TensorData::U8((0..10).collect()))
        .unwrap();
    w.add_plain(
        "e",
        &[7],
        TensorData::F16((0..7).map(|i| f16::from_f32(i as f32)).collect()),
    )
    .unwrap();
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
}

pub fn header(bytes: &[u8]) -> Header {
    bytemuck::pod_read_unaligned(&bytes[..128])
}

pub fn patch_header(bytes: &mut [u8], f: impl FnOnce(&mut Header)) {
    let mut h = header(bytes);
    f(&mut h);
    bytes[..128].copy_from_slice(bytemuck::bytes_of(&h));
}

fn record_range(i: usize) -> std::ops::Range<usize> {
    TABLE_OFFSET + i * 128..TABLE_OFFSET + (i + 1) * 128
}

pub fn record(bytes: &[u8], i: usize) -> TensorRecord {
    bytemuck::pod_read_unaligned(&bytes[record_range(i)])
}

pub fn patch_record(bytes: &mut [u8], i: usize, f: impl FnOnce(&mut TensorRecord)) {
    let mut r = record(bytes, i);
    f(&mut r);
    bytes[record_range(i)].copy_from_slice(bytemuck::bytes_of(&r));
}

/// Touch everything a consumer could: every view, every typed accessor, every byte.
pub fn touch_all(file: &tvl_loader::TvlFile) -> u64 {
    let mut sum = 0u64;
    for t in file.tensors() {
        let _ = t.as_f32().map(|s| s.len());
        let _ = t.as_f16().map(|s| s.len());
        let _ = t.as_u8().map(|s| s.len());
        let _ = t.as_u32().map(|s| s.len());
        let _ = t.line_utilization();
        if let Some(g) = t.geometry() {
            sum = sum.wrapping_add(g.tile_elems() as u64);
            sum = sum.wrapping_add(g.total_elems().unwrap_or(0) as u64);
        }
        sum = sum.wrapping_add(t.numel() as u64);
        sum = sum.wrapping_add(t.bytes().iter().map(|&b| u64::from(b)).sum::<u64>());
        assert!(file.get(t.name()).is_some());
        assert_eq!(t.offset() % 128, 0);
    }
    sum
}
