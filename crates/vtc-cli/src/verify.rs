//! `vtc verify`: recompute every tensor's checksum and compare it with the one stored in
//! its record. Opening a model never does this (it would read every byte); run it after
//! a download or a copy.

use std::path::Path;
use std::time::Instant;

use serde_json::json;
use tvl_loader::TvlFile;

use crate::BoxError;

/// Check `path`; an error (exit status 1) if any tensor's bytes differ from its checksum.
pub fn verify(path: &Path, as_json: bool) -> Result<(), BoxError> {
    let t0 = Instant::now();
    let file = TvlFile::open(path)?;
    let (mut ok, mut unchecked, mut bytes) = (0usize, 0usize, 0u64);
    let mut bad = Vec::new();
    for t in file.tensors() {
        bytes += t.nbytes() as u64;
        match t.verify() {
            Some(true) => ok += 1,
            Some(false) => bad.push((t.index(), t.name().to_string(), t.offset())),
            None => unchecked += 1,
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    if as_json {
        println!(
            "{}",
            json!({
                "file": path.display().to_string(),
                "tensors": file.len(),
                "verified": ok,
                "without_checksum": unchecked,
                "mismatches": bad.iter().map(|(i, n, o)| json!({"index": i, "name": n, "offset": o})).collect::<Vec<_>>(),
                "bytes": bytes,
                "seconds": secs,
            })
        );
    } else {
        for (i, name, offset) in &bad {
            println!("MISMATCH tensor {i} {name:?} at offset {offset}");
        }
        println!(
            "{}: {} tensors, {ok} verified, {} mismatched, {unchecked} without a checksum; {:.1} MB in {:.2} s",
            path.display(),
            file.len(),
            bad.len(),
            bytes as f64 / 1e6,
            secs
        );
    }
    if !bad.is_empty() {
        return Err(format!(
            "{} tensor(s) of {} do not match their checksums: the file is damaged or was \
             changed after it was written. Get or convert it again, and replace model files \
             by writing a new file and renaming it over the old one: a process that has the \
             file mapped while it is rewritten in place can read changed weights or crash \
             (SIGBUS).",
            bad.len(),
            path.display()
        )
        .into());
    }
    if unchecked == file.len() && !file.is_empty() {
        eprintln!(
            "vtc: {} stores no checksums (written before they were added); convert it again to get them",
            path.display()
        );
    }
    Ok(())
}
