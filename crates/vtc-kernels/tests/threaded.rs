//! `Threaded`: products split over 1-4 threads give the same bits as the wrapped
//! backend alone, for float and quantized matrices of awkward shapes, including
//! matrices with fewer tiles than threads; the other ops pass through.

mod common;

use common::{Dist, Rng, Tiled};
use tvl_format::quant::BLOCK;
use tvl_format::{BlockGeometry, DType, QuantData};
use vtc_kernels::{Backend, KernelError, Matrix, Q8Vec, QuantSlice, Threaded, WeightSlice};

fn same_bits(what: &str, got: &[f32], want: &[f32]) {
    let g: Vec<u32> = got.iter().map(|v| v.to_bits()).collect();
    let w: Vec<u32> = want.iter().map(|v| v.to_bits()).collect();
    assert_eq!(g, w, "{what}");
}

#[test]
fn float_products_are_bit_identical_for_any_thread_count() {
    let mut rng = Rng(21);
    for be in vtc_kernels::available() {
        for threads in 1..=4 {
            let t = Threaded::new(be, threads).unwrap();
            assert_eq!((t.threads(), t.name()), (threads, be.name()));
            for dtype in [DType::F32, DType::F16] {
                for &(rows, cols, tr) in &[
                    (1, 33, 4),
                    (7, 65, 4),
                    (33, 576, 4),
                    (1536, 64, 4),
                    (9, 100, 1),
                ] {
                    let m = Tiled::new(rows, cols, tr, dtype, &mut rng, Dist::Wide);
                    let x = rng.vec(cols, Dist::Wide);
                    let (mut want, mut got) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
                    be.matvec(&m.matrix(), &x, &mut want);
                    t.matvec(&m.matrix(), &x, &mut got);
                    same_bits(
                        &format!("{} x{threads} {}", be.name(), m.describe()),
                        &got,
                        &want,
                    );
                }
            }
        }
    }
}

#[test]
fn quantized_products_are_bit_identical_for_any_thread_count() {
    let mut rng = Rng(22);
    for be in vtc_kernels::available() {
        for threads in 1..=4 {
            let t = Threaded::new(be, threads).unwrap();
            for dtype in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
                for &(rows, cols) in &[(1, 32), (9, 64), (40, 576), (1536, 96)] {
                    let w = rng.vec(rows * cols, Dist::Unit);
                    let q = QuantData::quantize(dtype, &w, rows, cols).unwrap();
                    let g = BlockGeometry::new(rows, cols, 8, dtype).unwrap();
                    let bytes = q.tile(&g).unwrap();
                    let s0 = g.scales_offset().unwrap();
                    let scales: Vec<half::f16> = bytes[s0..s0 + 2 * g.scales_len().unwrap()]
                        .chunks_exact(2)
                        .map(|c| half::f16::from_le_bytes([c[0], c[1]]))
                        .collect();
                    let data = WeightSlice::Quant(QuantSlice {
                        dtype,
                        quants: &bytes[..g.quant_bytes().unwrap()],
                        scales: &scales,
                    });
                    let m = Matrix::new(data, rows, cols, 8).unwrap();
                    let xs = rng.vec(cols, Dist::Wide);
                    let mut x = Q8Vec::new(cols);
                    t.quantize_q8(&xs, &mut x);
                    assert_eq!(x.len() % BLOCK, 0);
                    let (mut want, mut got) = (vec![f32::NAN; rows], vec![f32::NAN; rows]);
                    be.matvec_q8(&m, &x, &mut want);
                    t.matvec_q8(&m, &x, &mut got);
                    let what = format!("{} x{threads} {dtype} {rows}x{cols}", be.name());
                    same_bits(&what, &got, &want);
                }
            }
        }
    }
}

#[test]
fn scope_runs_the_closure_and_other_ops_pass_through() {
    let be = vtc_kernels::detect();
    let t = Threaded::new(be, 2).unwrap();
    let mut ran = false;
    t.scope(&mut || ran = true);
    assert!(ran);
    let (mut a, mut b) = (vec![1.0f32, 2.0, 3.0], vec![1.0f32, 2.0, 3.0]);
    be.softmax(&mut a);
    t.softmax(&mut b);
    same_bits("softmax", &b, &a);
    assert!(matches!(Threaded::new(be, 0), Err(KernelError::Threads(_))));
    // Through a Box<dyn Backend>, the thread count and scope are the wrapper's.
    let boxed: Box<dyn Backend> = Box::new(t);
    assert_eq!(boxed.threads(), 2);
}
