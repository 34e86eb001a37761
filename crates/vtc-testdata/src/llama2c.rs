//! llama2.c inputs: checkpoint headers (legacy and versioned), legacy checkpoints in
//! `run.c`'s order, and `tokenizer.bin` files.

/// The magic of versioned checkpoints (`ak42`, little-endian).
pub const MAGIC: u32 = 0x616b_3432;

/// Bytes of a legacy header (seven i32).
pub const LEGACY_HEADER_LEN: usize = 28;

/// Bytes of a versioned header (zero padded).
pub const VERSIONED_HEADER_LEN: usize = 256;

/// A legacy header: `p` is dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size
/// (negative: a separate classifier follows the weights), seq_len.
pub fn legacy_header(p: [i32; 7]) -> Vec<u8> {
    p.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Legacy header parameters that pass every range check but claim 2^20 layers of
/// 2^20 x 2^20 matrices (1024 heads of 1024): a parser must compare the file length
/// with what they imply before building anything per layer or tensor.
pub const HUGE_PARAMS: [i32; 7] = [
    1 << 20,
    1 << 20,
    1 << 20,
    1 << 10,
    1 << 10,
    1 << 20,
    1 << 20,
];

/// A version-1 (f32) or version-2 (Q8_0) header: magic, `version`, the seven
/// parameters as in [`legacy_header`], the shared-classifier byte, `group_size`, zeros
/// up to 256 bytes. (Version 1 has no group size: 0 there is the same bytes as none.)
pub fn versioned_header(version: i32, p: [i32; 7], shared: u8, group_size: i32) -> Vec<u8> {
    let mut b = MAGIC.to_le_bytes().to_vec();
    b.extend(version.to_le_bytes());
    for v in p {
        b.extend(v.to_le_bytes());
    }
    b.push(shared);
    b.extend(group_size.to_le_bytes());
    b.resize(VERSIONED_HEADER_LEN, 0);
    b
}

/// How many f32 follow a legacy header `p` in a complete checkpoint: the embedding,
/// per layer the attention norm, wq, wk, wv, wo, the FFN norm, w1, w2, w3, then the
/// final norm, the `freq_cis` tables (seq_len x head_dim / 2, real and imaginary) and,
/// for a negative vocab_size, the classifier. `p` must be a valid header.
pub fn legacy_weight_count(p: [i32; 7]) -> usize {
    let [dim, hidden, layers, heads, kv_heads, vocab, seq] = p.map(|v| v.unsigned_abs() as usize);
    let head_dim = dim / heads;
    let kv_dim = kv_heads * head_dim;
    let layer = dim + dim * dim + 2 * kv_dim * dim + dim * dim + dim + 3 * hidden * dim;
    let classifier = if p[5] < 0 { vocab * dim } else { 0 };
    vocab * dim + layers * layer + dim + seq * head_dim + classifier
}

/// A complete legacy checkpoint: `legacy_header(p)`, then f32 number `i` of the file
/// (from 0, in file order) is `value(i)`.
pub fn legacy_checkpoint(p: [i32; 7], mut value: impl FnMut(usize) -> f32) -> Vec<u8> {
    let mut b = legacy_header(p);
    for i in 0..legacy_weight_count(p) {
        b.extend(value(i).to_le_bytes());
    }
    b
}

/// One `tokenizer.bin` entry: the f32 score, the i32 length, the bytes.
pub fn vocab_entry(score: f32, token: &[u8]) -> Vec<u8> {
    let mut e = score.to_le_bytes().to_vec();
    e.extend((token.len() as i32).to_le_bytes());
    e.extend(token);
    e
}

/// A `tokenizer.bin`: the i32 `max_token_length`, then one entry per token, token `i`
/// scored `-i`.
pub fn tokenizer_bin<T: AsRef<[u8]>>(max_token_length: i32, tokens: &[T]) -> Vec<u8> {
    let mut b = max_token_length.to_le_bytes().to_vec();
    for (i, t) in tokens.iter().enumerate() {
        b.extend(vocab_entry(-(i as f32), t.as_ref()));
    }
    b
}

/// The first tokens of the tiny vocabularies, as llama2.c stores them: `<unk>`, BOS and
/// EOS (with llama2.c's newlines), the byte token of `\n`, then pieces with a leading
/// space where SentencePiece has `▁`. The longest is 8 bytes.
pub const TINY_TOKENS: [&[u8]; 8] = [
    b"<unk>",
    b"\n<s>\n",
    b"\n</s>\n",
    b"<0x0A>",
    b" a",
    b"b",
    b" the",
    b"th",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weight_count_follows_run_c() {
        // dim 8, hidden 16, 1 layer, 2 heads of 4, 1 kv head, vocab 10, seq 4.
        let shared = 10 * 8 + 8 + 8 * 8 + 2 * 4 * 8 + 8 * 8 + 8 + 3 * 16 * 8 + 8 + 2 * 4 * 2;
        assert_eq!(legacy_weight_count([8, 16, 1, 2, 1, 10, 4]), shared);
        assert_eq!(
            legacy_weight_count([8, 16, 1, 2, 1, -10, 4]),
            shared + 10 * 8
        );
        let b = legacy_checkpoint([8, 16, 1, 2, 1, 10, 4], |i| i as f32);
        assert_eq!(b.len(), LEGACY_HEADER_LEN + 4 * shared);
        assert_eq!(&b[b.len() - 4..], ((shared - 1) as f32).to_le_bytes());
    }

    #[test]
    fn headers_and_vocabularies() {
        let h = versioned_header(1, [8, 16, 1, 2, 1, 10, 4], 1, 0);
        assert_eq!(h.len(), VERSIONED_HEADER_LEN);
        assert_eq!(&h[..8], [MAGIC.to_le_bytes(), 1i32.to_le_bytes()].concat());
        assert_eq!(h[36], 1);
        assert!(h[37..].iter().all(|&b| b == 0));
        let v = tokenizer_bin(8, &TINY_TOKENS[..2]);
        let mut want = 8i32.to_le_bytes().to_vec();
        want.extend(vocab_entry(-0.0, b"<unk>"));
        want.extend(vocab_entry(-1.0, b"\n<s>\n"));
        assert_eq!(v, want);
        assert!(TINY_TOKENS.iter().all(|t| t.len() <= 8));
    }
}
