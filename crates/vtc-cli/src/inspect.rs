//! `vtc inspect`: what a TVL file holds and how well each tensor uses its cache lines.

use std::path::Path;

use serde_json::json;
use tvl_format::{Layout, ModelConfig, NONE_ID};
use tvl_loader::TvlFile;

use crate::BoxError;

fn id(v: u32) -> serde_json::Value {
    if v == NONE_ID { json!(null) } else { json!(v) }
}

fn config_json(c: &ModelConfig) -> serde_json::Value {
    json!({
        "arch": c.arch, "dim": c.dim, "hidden_dim": c.hidden_dim, "n_layers": c.n_layers,
        "n_heads": c.n_heads, "n_kv_heads": c.n_kv_heads, "head_dim": c.head_dim,
        "vocab_size": c.vocab_size, "context_len": c.context_len,
        "rope_theta": c.rope_theta, "rms_eps": c.rms_eps, "rope_style": c.rope_style,
        "tied_output": c.tied_output != 0, "bos_id": id(c.bos_id), "eos_id": id(c.eos_id),
        "eot_id": id(c.eot_id), "unk_id": id(c.unk_id), "add_bos": c.add_bos != 0,
        "tokenizer": c.tokenizer, "pretokenizer": c.pretokenizer,
    })
}

/// Print the header, config and tensor table of `path`.
pub fn inspect(path: &Path, as_json: bool) -> Result<(), BoxError> {
    let file = TvlFile::open(path)?;
    let h = file.header();
    let c = file.config();
    if as_json {
        let tensors: Vec<_> = file
            .tensors()
            .map(|t| {
                json!({
                    "name": t.name(),
                    "dtype": t.dtype().name(),
                    "shape": t.shape(),
                    "layout": t.layout().name(),
                    "tile_rows": t.tile_rows(),
                    "offset": t.offset(),
                    "bytes": t.nbytes(),
                    "line_utilization": t.line_utilization(),
                })
            })
            .collect();
        let doc = json!({
            "file": path.display().to_string(),
            "header": {
                "version": h.version, "alignment": h.alignment, "tensor_count": h.tensor_count,
                "data_offset": h.data_offset, "data_len": h.data_len, "file_len": h.file_len,
            },
            "config": config_json(c),
            "tensors": tensors,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!("file      {}", path.display());
    println!(
        "header    TVL v{}, alignment {}, {} tensors, data at {} ({:.1} MB), file {} bytes",
        h.version,
        h.alignment,
        h.tensor_count,
        h.data_offset,
        h.data_len as f64 / 1e6,
        h.file_len
    );
    println!("config    {}", config_json(c));
    println!();
    println!(
        "{:<32} {:>5} {:>9} {:>14} {:>13} {:>12} {:>8}",
        "tensor", "dtype", "layout", "shape", "offset", "bytes", "lines"
    );
    let (mut weight_bytes, mut weight_used) = (0f64, 0f64);
    for t in file.tensors() {
        let shape = t
            .shape()
            .iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join("x");
        let layout = match t.layout() {
            Layout::Plain => "plain".to_string(),
            Layout::RowTiled => format!("tiled/{}", t.tile_rows()),
            Layout::BlockTiled => format!("blocks/{}", t.tile_rows()),
        };
        let u = t.line_utilization();
        if t.layout().is_tiled() {
            weight_bytes += t.nbytes() as f64;
            weight_used += t.nbytes() as f64 * u;
        }
        println!(
            "{:<32} {:>5} {:>9} {:>14} {:>13} {:>12} {:>7.1}%",
            t.name(),
            t.dtype().name(),
            layout,
            shape,
            t.offset(),
            t.nbytes(),
            u * 100.0
        );
    }
    if weight_bytes > 0.0 {
        println!(
            "\nweight matrices: {:.1} MB, line utilization {:.1}%",
            weight_bytes / 1e6,
            100.0 * weight_used / weight_bytes
        );
    }
    Ok(())
}
