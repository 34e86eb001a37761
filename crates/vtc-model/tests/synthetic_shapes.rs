//! Random-weight models written by `vtc_import::synthetic` load, tokenize ASCII and
//! generate (the stories15M shape, in every output dtype).

use tvl_loader::TvlFile;
use vtc_import::convert::OutDType;
use vtc_import::synthetic::{SyntheticSpec, write_synthetic};
use vtc_model::{GenerateOptions, Model, Session};

#[test]
fn stories15m_shaped_model_runs() {
    let dir = tempfile::tempdir().unwrap();
    for dtype in [
        OutDType::F32,
        OutDType::F16,
        OutDType::Q8_0,
        OutDType::Q4_0,
        OutDType::Q4_1,
    ] {
        let spec = SyntheticSpec {
            dtype,
            ..SyntheticSpec::stories15m()
        };
        let path = dir.path().join("s15m.tvl");
        let report = write_synthetic(&spec, &path).unwrap();
        assert_eq!(report.tensors, 2 + 6 * 9 + 1 + 3);
        let file = TvlFile::open(&path).unwrap();
        let model = Model::load(&file).unwrap();
        let c = model.config();
        assert_eq!(
            (c.dim, c.hidden_dim, c.n_layers, c.vocab_size),
            (288, 768, 6, 32000)
        );
        // Matrices are laid out in forward order: offsets increase along the pass.
        let w = model.weights();
        let l0 = &w.layers[0];
        let off = |m: &vtc_kernels::Matrix| match m.data() {
            vtc_kernels::WeightSlice::F32(s) => s.as_ptr() as usize,
            vtc_kernels::WeightSlice::F16(s) => s.as_ptr() as usize,
            vtc_kernels::WeightSlice::Quant(q) => q.quants.as_ptr() as usize,
        };
        assert!(off(&w.token_embd) < off(&l0.wq) && off(&l0.wq) < off(&l0.w_down));
        assert!(
            off(&l0.w_down) < off(&w.layers[1].wq) && off(&w.layers[5].w_down) < off(&w.output)
        );

        let tok = model.tokenizer();
        let ids = tok.encode_prompt("Hi!").unwrap();
        assert_eq!(
            ids,
            vec![0, 1 + (b'H' - b'!') as u32, 1 + (b'i' - b'!') as u32, 1]
        );
        let mut s = Session::new(&model, vtc_kernels::Scalar, 32).unwrap();
        let opts = GenerateOptions {
            max_tokens: 8,
            stop_at_eos: false,
            ..Default::default()
        };
        let out: Vec<u32> = s
            .generate(&ids, opts)
            .unwrap()
            .map(|g| g.unwrap().id)
            .collect();
        assert_eq!(out.len(), 8);
        assert!(s.logits().iter().all(|x| x.is_finite()));
    }
}
