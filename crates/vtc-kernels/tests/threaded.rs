//! `Threaded`: products split over 1-4 threads give the same bits as the wrapped
//! backend alone, for float and quantized matrices of awkward shapes, including
//! matrices with fewer tiles than threads; the other ops pass through.

mod common;

use common::{Dist, QMat, Rng, Tiled};
use tvl_format::DType;
use tvl_format::quant::BLOCK;
use vtc_kernels::{Backend, KernelError, Matrix, Q8Vec, Threaded};

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
                    let q = QMat::random(dtype, rows, cols, 8, &mut rng, Dist::Unit);
                    let m = q.matrix();
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
fn other_ops_pass_through() {
    let be = vtc_kernels::detect();
    let t = Threaded::new(be, 2).unwrap();
    let (mut a, mut b) = (vec![1.0f32, 2.0, 3.0], vec![1.0f32, 2.0, 3.0]);
    be.softmax(&mut a);
    t.softmax(&mut b);
    same_bits("softmax", &b, &a);
    assert!(matches!(Threaded::new(be, 0), Err(KernelError::Threads(_))));
    // Through a Box<dyn Backend>, the thread count is the wrapper's.
    let boxed: Box<dyn Backend> = Box::new(t);
    assert_eq!(boxed.threads(), 2);
}

#[test]
fn for_each_chunk_visits_every_chunk_once_with_its_index() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    // Chunk counts 0, 1, 31, 33 and lengths on both sides of the size where `Threaded`
    // starts to split; each chunk is filled from its index, so a chunk given the wrong
    // index, visited twice or skipped shows in the result.
    let fill = |i: usize, c: &mut [f32]| {
        for (j, v) in c.iter_mut().enumerate() {
            *v += (i * 1000 + j) as f32 + 1.0;
        }
    };
    for threads in 1..=4 {
        let t = Threaded::new(vtc_kernels::Scalar, threads).unwrap();
        for chunks in [0, 1, 2, 9, 31, 33] {
            for chunk_len in [1, 7, 64, 200, 2100] {
                let mut buf = vec![0.0f32; chunks * chunk_len];
                let calls = AtomicUsize::new(0);
                t.for_each_chunk(&mut buf, chunk_len, &|i, c| {
                    assert_eq!(c.len(), chunk_len);
                    calls.fetch_add(1, Ordering::Relaxed);
                    fill(i, c);
                });
                let mut want = vec![0.0f32; chunks * chunk_len];
                for (i, c) in want.chunks_exact_mut(chunk_len).enumerate() {
                    fill(i, c);
                }
                let what = format!("{threads} threads, {chunks} x {chunk_len}");
                assert_eq!(calls.into_inner(), chunks, "{what}");
                same_bits(&what, &buf, &want);
            }
        }
    }
}

#[test]
#[should_panic(expected = "not whole chunks")]
fn for_each_chunk_refuses_a_partial_chunk() {
    let t = Threaded::new(vtc_kernels::Scalar, 2).unwrap();
    t.for_each_chunk(&mut [0.0; 65], 64, &|_, _| {});
}

#[test]
#[should_panic(expected = "chunk length 0")]
fn for_each_chunk_refuses_chunk_length_zero() {
    vtc_kernels::Scalar.for_each_chunk(&mut [], 0, &|_, _| {});
}

/// `matvecs`: groups of 0 to 6 products (more than `Threaded` forks at once) of one
/// input, float and quantized mixed, tiny (fewer tiles than threads) and empty ones
/// included, give each product's own `matvec` / `matvec_q8` bits, on the default
/// implementation and on 1-4 threads.
#[test]
fn grouped_products_are_bit_identical_to_single_products() {
    let mut rng = Rng(23);
    let cols = 96;
    let shapes: [(usize, DType); 6] = [
        (576, DType::Q4_1),
        (1, DType::F32),
        (0, DType::Q8_0),
        (40, DType::F16),
        (9, DType::Q4_0),
        (200, DType::Q8_0),
    ];
    enum M {
        F(Tiled),
        Q(QMat),
    }
    let mats: Vec<M> = shapes
        .iter()
        .map(|&(rows, dtype)| match dtype {
            DType::F32 | DType::F16 => M::F(Tiled::new(rows, cols, 4, dtype, &mut rng, Dist::Wide)),
            _ => M::Q(QMat::random(dtype, rows, cols, 8, &mut rng, Dist::Unit)),
        })
        .collect();
    let matrices: Vec<Matrix<'_>> = mats
        .iter()
        .map(|m| match m {
            M::F(t) => t.matrix(),
            M::Q(q) => q.matrix(),
        })
        .collect();
    let x = rng.vec(cols, Dist::Wide);
    for be in vtc_kernels::available() {
        let mut xq = Q8Vec::new(cols);
        be.quantize_q8(&x, &mut xq);
        let want: Vec<Vec<f32>> = matrices
            .iter()
            .map(|w| {
                let mut y = vec![f32::NAN; w.rows()];
                if w.is_quantized() {
                    be.matvec_q8(w, &xq, &mut y);
                } else {
                    be.matvec(w, &x, &mut y);
                }
                y
            })
            .collect();
        let pools: Vec<Threaded<_>> = (1..=4).map(|t| Threaded::new(be, t).unwrap()).collect();
        let mut runs: Vec<(String, &dyn Backend)> = vec![(be.name().into(), &be)];
        for t in &pools {
            runs.push((format!("{} x{}", be.name(), t.threads()), t));
        }
        for (name, run) in &runs {
            for n in 0..=matrices.len() {
                // Every window of `n` consecutive products, so each shape sits in
                // every position of a group.
                for first in 0..=matrices.len() - n {
                    let ws = &matrices[first..first + n];
                    let mut ys: Vec<Vec<f32>> =
                        ws.iter().map(|w| vec![f32::NAN; w.rows()]).collect();
                    let mut products: Vec<(&Matrix<'_>, &mut [f32])> = ws
                        .iter()
                        .zip(ys.iter_mut())
                        .map(|(w, y)| (w, &mut y[..]))
                        .collect();
                    run.matvecs(&x, &xq, &mut products);
                    for (i, y) in ys.iter().enumerate() {
                        let what =
                            format!("{name}: product {} of {first}..{}", first + i, first + n);
                        same_bits(&what, y, &want[first + i]);
                    }
                }
            }
        }
    }
}
