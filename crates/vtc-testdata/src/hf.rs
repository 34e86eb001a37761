//! Hugging Face model directories: the tensors of a tiny Llama and safetensors files.

/// Names and shapes (`[out, in]`) of the tensors of the tiny Hugging Face Llama of the
/// tests' `config.json` files: hidden_size 8, intermediate_size 16, 1 layer, 2 heads,
/// 1 key/value head (width 4), `vocab` tokens, tied output (no `lm_head`).
pub fn tiny_llama_tensors(vocab: usize) -> Vec<(String, Vec<usize>)> {
    [
        ("model.embed_tokens.weight", vec![vocab, 8]),
        ("model.norm.weight", vec![8]),
        ("model.layers.0.input_layernorm.weight", vec![8]),
        ("model.layers.0.self_attn.q_proj.weight", vec![8, 8]),
        ("model.layers.0.self_attn.k_proj.weight", vec![4, 8]),
        ("model.layers.0.self_attn.v_proj.weight", vec![4, 8]),
        ("model.layers.0.self_attn.o_proj.weight", vec![8, 8]),
        ("model.layers.0.post_attention_layernorm.weight", vec![8]),
        ("model.layers.0.mlp.gate_proj.weight", vec![16, 8]),
        ("model.layers.0.mlp.up_proj.weight", vec![16, 8]),
        ("model.layers.0.mlp.down_proj.weight", vec![8, 16]),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_string(), s))
    .collect()
}

/// A safetensors file holding `tensors` (name, shape) in `dtype`; the bytes of each
/// come from `data(element count)`, called once per tensor in order. Panics when a
/// tensor's bytes do not fit its shape and dtype.
pub fn safetensors(
    dtype: safetensors::Dtype,
    tensors: Vec<(String, Vec<usize>)>,
    mut data: impl FnMut(usize) -> Vec<u8>,
) -> Vec<u8> {
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(n, s)| {
            let bytes = data(s.iter().product());
            (n, s, bytes)
        })
        .collect();
    let views = data.iter().map(|(n, s, b)| {
        (
            n.clone(),
            safetensors::tensor::TensorView::new(dtype, s.clone(), b).unwrap(),
        )
    });
    safetensors::serialize(views, None).unwrap()
}
