//! A GGUF (v2 and v3) reader that never panics on hostile input.
//!
//! The file is memory-mapped (or parsed from an owned buffer); the header, the
//! metadata and the tensor table are decoded eagerly and validated, the tensor data
//! stays in the mapping and is handed out as byte slices.
//!
//! Every length read from the file is checked against the bytes that remain before
//! anything is allocated for it, so a hostile count (say an array of 2^60 elements)
//! is a typed [`GgufError`], never an allocation failure. Memory held for metadata is
//! bounded by a small multiple of the file size: arrays are stored typed ([`Array`]),
//! not as one enum value per element.
//!
//! Where llama.cpp is lenient, so is this reader: any integer type is accepted where a
//! count or an id is meant ([`Value::as_u64`]), a boolean is any nonzero byte, and
//! tensors may appear in the data section in any order. Where llama.cpp is strict,
//! so is this reader (duplicate keys or tensor names, tensor names of 64 bytes or
//! more, more than 4 dimensions, unknown ggml types, rows that are not a whole number
//! of blocks). Unlike llama.cpp it also reads nested arrays, up to
//! [`MAX_ARRAY_DEPTH`] levels, and it checks that every string is UTF-8.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The first four bytes of a GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";
/// Alignment of the data section and of tensor offsets when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// The metadata key that sets the alignment.
pub const ALIGNMENT_KEY: &str = "general.alignment";
/// Longest tensor name accepted, in bytes (ggml's `GGML_MAX_NAME` - 1).
pub const MAX_TENSOR_NAME: usize = 63;
/// Most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: usize = 4;
/// Most levels of arrays nested in one metadata value (an array of arrays is 2).
pub const MAX_ARRAY_DEPTH: usize = 4;

/// Fewest bytes one metadata pair can occupy: empty key, type, one-byte value.
const MIN_KV_BYTES: usize = 8 + 4 + 1;
/// Fewest bytes one tensor-info entry can occupy: empty name, n_dims 0, type, offset.
const MIN_TENSOR_INFO_BYTES: usize = 8 + 4 + 4 + 8;

/// Errors of the GGUF reader. Offsets are byte offsets from the start of the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be opened, inspected or mapped.
    #[error("cannot read GGUF file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file ends inside a fixed-size field.
    #[error("GGUF truncated at byte {offset}: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// Where the field starts.
        offset: u64,
        /// What was being read.
        what: &'static str,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },
    /// The first four bytes are not `GGUF`.
    #[error("not a GGUF file: magic is {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The first four bytes.
        found: [u8; 4],
    },
    /// The version is not 2 or 3.
    #[error("unsupported GGUF version {version} (2 and 3 are supported)")]
    UnsupportedVersion {
        /// The version field.
        version: u32,
    },
    /// The tensor count cannot fit in the rest of the file.
    #[error(
        "GGUF header claims {count} tensors but only {available} bytes follow the header \
         (each tensor entry needs at least {MIN_TENSOR_INFO_BYTES})"
    )]
    TooManyTensors {
        /// The tensor count field.
        count: u64,
        /// Bytes after the header.
        available: u64,
    },
    /// The metadata count cannot fit in the rest of the file.
    #[error(
        "GGUF header claims {count} metadata pairs but only {available} bytes follow the header \
         (each pair needs at least {MIN_KV_BYTES})"
    )]
    TooManyKeys {
        /// The metadata count field.
        count: u64,
        /// Bytes after the header.
        available: u64,
    },
    /// A string's length runs past the end of the file.
    #[error("string at byte {offset} claims {len} bytes but only {available} are left")]
    StringTooLong {
        /// Where the string's length field starts.
        offset: u64,
        /// The length field.
        len: u64,
        /// Bytes left after the length field.
        available: u64,
    },
    /// A string is not UTF-8.
    #[error("{what} is not valid UTF-8 (first bad byte at offset {offset})")]
    BadUtf8 {
        /// What the string is (a key, a value, a tensor name).
        what: &'static str,
        /// Offset of the first invalid byte.
        offset: u64,
    },
    /// A metadata value has a type id outside 0..=12.
    #[error("metadata key {key:?}: unknown value type {type_id} at byte {offset}")]
    UnknownValueType {
        /// The key being read.
        key: String,
        /// The type id.
        type_id: u32,
        /// Where the type id is.
        offset: u64,
    },
    /// An array's element count cannot fit in the rest of the file.
    #[error(
        "metadata key {key:?}: array at byte {offset} claims {count} elements of at least \
         {min_elem_bytes} bytes but only {available} bytes are left"
    )]
    ArrayTooLong {
        /// The key being read.
        key: String,
        /// Where the array header starts.
        offset: u64,
        /// The element count.
        count: u64,
        /// Fewest bytes one element occupies.
        min_elem_bytes: u64,
        /// Bytes left after the array header.
        available: u64,
    },
    /// Arrays are nested deeper than [`MAX_ARRAY_DEPTH`].
    #[error(
        "metadata key {key:?}: arrays nested deeper than {MAX_ARRAY_DEPTH} levels at byte {offset}"
    )]
    ArrayTooDeep {
        /// The key being read.
        key: String,
        /// Where the too-deep array starts.
        offset: u64,
    },
    /// A metadata key appears twice.
    #[error("duplicate metadata key {key:?} at byte {offset}")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second occurrence starts.
        offset: u64,
    },
    /// `general.alignment` is not a nonzero power of two (or not an integer).
    #[error("{ALIGNMENT_KEY} is {value}, not a nonzero power-of-two integer")]
    BadAlignment {
        /// The value, printed.
        value: String,
    },
    /// A tensor name is longer than [`MAX_TENSOR_NAME`] bytes.
    #[error("tensor name at byte {offset} is {len} bytes long (at most {MAX_TENSOR_NAME})")]
    TensorNameTooLong {
        /// Where the name's length field starts.
        offset: u64,
        /// The name's length.
        len: u64,
    },
    /// Two tensors share a name.
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor {
        /// The name.
        name: String,
    },
    /// A tensor has more than [`MAX_DIMS`] dimensions.
    #[error("tensor {name:?} has {n_dims} dimensions (at most {MAX_DIMS})")]
    TooManyDims {
        /// The tensor.
        name: String,
        /// Its n_dims field.
        n_dims: u32,
    },
    /// A tensor's type id is not a ggml type.
    #[error("tensor {name:?} has unknown ggml type id {type_id}")]
    UnknownGgmlType {
        /// The tensor.
        name: String,
        /// The type id.
        type_id: u32,
    },
    /// A tensor's element count or byte size overflows (ggml's limit is i64::MAX elements).
    #[error("tensor {name:?}: dims {dims:?} overflow the element count or byte size")]
    SizeOverflow {
        /// The tensor.
        name: String,
        /// Its dims (GGUF order).
        dims: Vec<u64>,
    },
    /// A tensor's rows are not a whole number of quantization blocks.
    #[error(
        "tensor {name:?}: row length {row_len} is not a multiple of the {ggml_type} block size {block}"
    )]
    NotBlockMultiple {
        /// The tensor.
        name: String,
        /// `dims[0]`.
        row_len: u64,
        /// The tensor's type.
        ggml_type: GgmlType,
        /// Elements per block.
        block: u64,
    },
    /// A tensor's offset is not a multiple of the alignment.
    #[error("tensor {name:?}: offset {offset} is not a multiple of the alignment {alignment}")]
    MisalignedOffset {
        /// The tensor.
        name: String,
        /// Its offset, relative to the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },
    /// A tensor's bytes run past the end of the file.
    #[error(
        "tensor {name:?}: {nbytes} bytes at data offset {offset} run past the end of the \
         data section ({data_len} bytes)"
    )]
    TensorOutOfBounds {
        /// The tensor.
        name: String,
        /// Its offset, relative to the data section.
        offset: u64,
        /// Its size in bytes.
        nbytes: u64,
        /// Bytes in the data section.
        data_len: u64,
    },
}

/// The type of a metadata value (the numbers are GGUF's type ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// u8.
    U8 = 0,
    /// i8.
    I8 = 1,
    /// u16.
    U16 = 2,
    /// i16.
    I16 = 3,
    /// u32.
    U32 = 4,
    /// i32.
    I32 = 5,
    /// f32.
    F32 = 6,
    /// bool (one byte).
    Bool = 7,
    /// UTF-8 string with a u64 length.
    String = 8,
    /// Array: element type, u64 count, elements.
    Array = 9,
    /// u64.
    U64 = 10,
    /// i64.
    I64 = 11,
    /// f64.
    F64 = 12,
}

impl ValueType {
    /// Decode a type id.
    pub fn from_id(id: u32) -> Option<Self> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Lower-case name (`u8`, `string`, `array`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Fewest bytes one value of this type occupies in the file.
    fn min_bytes(self) -> usize {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 4 + 8,
        }
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// u8.
    U8(u8),
    /// i8.
    I8(i8),
    /// u16.
    U16(u16),
    /// i16.
    I16(i16),
    /// u32.
    U32(u32),
    /// i32.
    I32(i32),
    /// f32.
    F32(f32),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// Array (stored typed, see [`Array`]).
    Array(Array),
    /// u64.
    U64(u64),
    /// i64.
    I64(i64),
    /// f64.
    F64(f64),
}

impl Value {
    /// The value's type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::F32(_) => ValueType::F32,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(_) => ValueType::Array,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F64(_) => ValueType::F64,
        }
    }

    /// Any integer type holding a non-negative value, as u64 (counts and ids).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type, as i64 (`None` for a u64 above i64::MAX).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::U8(v) => Some(v.into()),
            Self::U16(v) => Some(v.into()),
            Self::U32(v) => Some(v.into()),
            Self::U64(v) => i64::try_from(v).ok(),
            Self::I8(v) => Some(v.into()),
            Self::I16(v) => Some(v.into()),
            Self::I32(v) => Some(v.into()),
            Self::I64(v) => Some(v),
            _ => None,
        }
    }

    /// An f32, an f64 (rounded to f32) or an integer (converted), as f32.
    pub fn as_f32(&self) -> Option<f32> {
        match *self {
            Self::F32(v) => Some(v),
            Self::F64(v) => Some(v as f32),
            _ => self.as_i64().map(|v| v as f32),
        }
    }

    /// A bool, or any integer (nonzero = true).
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Self::Bool(v) => Some(v),
            _ => self.as_i64().map(|v| v != 0),
        }
    }

    /// The string, if this is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array, if this is an array.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::U8(v) => write!(f, "{v}"),
            Self::I8(v) => write!(f, "{v}"),
            Self::U16(v) => write!(f, "{v}"),
            Self::I16(v) => write!(f, "{v}"),
            Self::U32(v) => write!(f, "{v}"),
            Self::I32(v) => write!(f, "{v}"),
            Self::F32(v) => write!(f, "{v}"),
            Self::Bool(v) => write!(f, "{v}"),
            Self::String(v) => write!(f, "{v:?}"),
            Self::Array(a) => write!(f, "[{}; {}]", a.elem_type(), a.len()),
            Self::U64(v) => write!(f, "{v}"),
            Self::I64(v) => write!(f, "{v}"),
            Self::F64(v) => write!(f, "{v}"),
        }
    }
}

/// A metadata array, stored with its element type so that a large table (token
/// strings, scores) costs about what it costs in the file.
#[derive(Clone, Debug, PartialEq)]
pub enum Array {
    /// u8 elements.
    U8(Vec<u8>),
    /// i8 elements.
    I8(Vec<i8>),
    /// u16 elements.
    U16(Vec<u16>),
    /// i16 elements.
    I16(Vec<i16>),
    /// u32 elements.
    U32(Vec<u32>),
    /// i32 elements.
    I32(Vec<i32>),
    /// f32 elements.
    F32(Vec<f32>),
    /// bool elements.
    Bool(Vec<bool>),
    /// String elements.
    String(Vec<String>),
    /// Nested arrays.
    Array(Vec<Array>),
    /// u64 elements.
    U64(Vec<u64>),
    /// i64 elements.
    I64(Vec<i64>),
    /// f64 elements.
    F64(Vec<f64>),
}

impl Array {
    /// Type of the elements.
    pub fn elem_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::F32(_) => ValueType::F32,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(_) => ValueType::Array,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F64(_) => ValueType::F64,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element `i` as a [`Value`] (cloned), or `None` past the end.
    pub fn get(&self, i: usize) -> Option<Value> {
        Some(match self {
            Self::U8(v) => Value::U8(*v.get(i)?),
            Self::I8(v) => Value::I8(*v.get(i)?),
            Self::U16(v) => Value::U16(*v.get(i)?),
            Self::I16(v) => Value::I16(*v.get(i)?),
            Self::U32(v) => Value::U32(*v.get(i)?),
            Self::I32(v) => Value::I32(*v.get(i)?),
            Self::F32(v) => Value::F32(*v.get(i)?),
            Self::Bool(v) => Value::Bool(*v.get(i)?),
            Self::String(v) => Value::String(v.get(i)?.clone()),
            Self::Array(v) => Value::Array(v.get(i)?.clone()),
            Self::U64(v) => Value::U64(*v.get(i)?),
            Self::I64(v) => Value::I64(*v.get(i)?),
            Self::F64(v) => Value::F64(*v.get(i)?),
        })
    }

    /// The strings, if this is an array of strings.
    pub fn as_strings(&self) -> Option<&[String]> {
        match self {
            Self::String(v) => Some(v),
            _ => None,
        }
    }

    /// The elements as f32, if this is an f32 array (borrowed) or an f64 array (rounded).
    pub fn to_f32s(&self) -> Option<std::borrow::Cow<'_, [f32]>> {
        match self {
            Self::F32(v) => Some(std::borrow::Cow::Borrowed(v)),
            Self::F64(v) => Some(v.iter().map(|&x| x as f32).collect()),
            _ => None,
        }
    }

    /// The elements as i64, if this is an array of any integer type whose values all
    /// fit in i64.
    pub fn to_i64s(&self) -> Option<Vec<i64>> {
        fn conv<T: Copy>(v: &[T], f: impl Fn(T) -> Option<i64>) -> Option<Vec<i64>> {
            v.iter().map(|&x| f(x)).collect()
        }
        match self {
            Self::U8(v) => conv(v, |x| Some(x.into())),
            Self::I8(v) => conv(v, |x| Some(x.into())),
            Self::U16(v) => conv(v, |x| Some(x.into())),
            Self::I16(v) => conv(v, |x| Some(x.into())),
            Self::U32(v) => conv(v, |x| Some(x.into())),
            Self::I32(v) => conv(v, |x| Some(x.into())),
            Self::U64(v) => conv(v, |x| i64::try_from(x).ok()),
            Self::I64(v) => Some(v.clone()),
            _ => None,
        }
    }
}

/// A ggml tensor type. The named variants are the ones this crate can dequantize;
/// every other type known to ggml reads as [`GgmlType::Other`] with its id (and is
/// rejected at conversion time, naming the tensor).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// 32 weights: f16 scale, 16 bytes of 4-bit quants (offset 8).
    Q4_0,
    /// 32 weights: f16 scale, f16 minimum, 16 bytes of 4-bit quants.
    Q4_1,
    /// 32 weights: f16 scale, 32 signed bytes.
    Q8_0,
    /// 32 weights: f16 scale, 32 bits of 5th bits, 16 bytes of low nibbles (offset 16).
    Q5_0,
    /// 32 weights: f16 scale, f16 minimum, 32 bits of 5th bits, 16 bytes of nibbles.
    Q5_1,
    /// 256 weights: f16 `d`, f16 `dmin`, 12 bytes of packed 6-bit sub-block scales and
    /// minimums, 128 bytes of nibbles.
    Q4_K,
    /// 256 weights: as `Q4_K` plus 32 bytes of 5th bits.
    Q5_K,
    /// 256 weights: 128 bytes of low nibbles, 64 of high 2 bits, 16 int8 scales, f16 `d`.
    Q6_K,
    /// bfloat16.
    BF16,
    /// Another ggml type, by id.
    Other(u32),
}

/// (id, name, elements per block, bytes per block) of every ggml type; ids missing
/// here were removed from ggml and are rejected.
const GGML_TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
    (40, "NVFP4", 64, 36),
    (41, "Q1_0", 128, 18),
];

impl GgmlType {
    /// The type with this ggml id, or `None` if ggml has no such type.
    pub fn from_id(id: u32) -> Option<Self> {
        GGML_TYPES.iter().find(|t| t.0 == id)?;
        Some(match id {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            12 => Self::Q4_K,
            13 => Self::Q5_K,
            14 => Self::Q6_K,
            30 => Self::BF16,
            other => Self::Other(other),
        })
    }

    /// The ggml type id.
    pub fn id(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
            Self::Q4_K => 12,
            Self::Q5_K => 13,
            Self::Q6_K => 14,
            Self::BF16 => 30,
            Self::Other(id) => id,
        }
    }

    /// The TVL block type with the same blocks (bits and element order), if any.
    pub fn block_type(self) -> Option<tvl_format::BlockType> {
        use tvl_format::BlockType;
        Some(match self {
            Self::Q8_0 => BlockType::Q8_0,
            Self::Q4_0 => BlockType::Q4_0,
            Self::Q4_1 => BlockType::Q4_1,
            Self::Q5_0 => BlockType::Q5_0,
            Self::Q5_1 => BlockType::Q5_1,
            Self::Q4_K => BlockType::Q4_K,
            Self::Q5_K => BlockType::Q5_K,
            Self::Q6_K => BlockType::Q6_K,
            Self::F32 | Self::F16 | Self::BF16 | Self::Other(_) => return None,
        })
    }

    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        let id = self.id();
        GGML_TYPES.iter().find(|t| t.0 == id)
    }

    /// ggml's name of the type (`Q4_1`, `BF16`, ...); `"unknown"` for an id that is
    /// not a ggml type (such a value is never produced by the reader).
    pub fn name(self) -> &'static str {
        self.entry().map_or("unknown", |t| t.1)
    }

    /// Elements per block (1 for plain types); 1 for an unknown id.
    pub fn block_size(self) -> u64 {
        self.entry().map_or(1, |t| t.2)
    }

    /// Bytes per block; 0 for an unknown id.
    pub fn block_bytes(self) -> u64 {
        self.entry().map_or(0, |t| t.3)
    }

    /// Bytes of `n_elements` elements, or `None` if `n_elements` is not a whole number
    /// of blocks, the id is unknown, or the size overflows.
    pub fn nbytes(self, n_elements: u64) -> Option<u64> {
        let &(_, _, block, bytes) = self.entry()?;
        if !n_elements.is_multiple_of(block) {
            return None;
        }
        (n_elements / block).checked_mul(bytes)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Other(id) if self.entry().is_none() => write!(f, "type#{id}"),
            _ => f.write_str(self.name()),
        }
    }
}

/// One entry of the tensor table.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name (at most [`MAX_TENSOR_NAME`] bytes).
    pub name: String,
    /// Dimensions in GGUF order: `dims[0]` is the contiguous axis, so a PyTorch
    /// `[out, in]` weight has dims `[in, out]`.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Byte offset relative to the start of the data section (a multiple of the
    /// alignment).
    pub offset: u64,
    /// Bytes of the tensor's data (checked to lie inside the file).
    pub nbytes: u64,
}

impl TensorInfo {
    /// Number of elements (the product of the dims; 1 for zero dims).
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time not to overflow.
        self.dims.iter().product()
    }

    /// The shape outermost first (the reverse of [`TensorInfo::dims`]): a weight matrix
    /// reads `[out, in]`.
    pub fn shape(&self) -> Vec<u64> {
        self.dims.iter().rev().copied().collect()
    }
}

/// The bytes behind a [`GgufFile`].
enum Backing {
    Mapped(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Self::Mapped(m) => m,
            Self::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: header, metadata and tensor table, with the tensor data left
/// in the mapping.
pub struct GgufFile {
    version: u32,
    metadata: Vec<(String, Value)>,
    key_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
    alignment: u64,
    data_offset: u64,
    backing: Backing,
}

impl fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .field("data_offset", &self.data_offset)
            .field("len", &self.backing.bytes().len())
            .finish()
    }
}

impl GgufFile {
    /// Map and parse the file at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, GgufError> {
        let path = path.as_ref();
        let io = |source| GgufError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len == 0 {
            // Nothing to map; report it as the truncation it is.
            return Self::from_bytes(Vec::new());
        }
        // SAFETY: the hazard of a file mapping is that another process truncates or
        // rewrites the file while it is mapped: reads would then see changed bytes or
        // fault (SIGBUS). Every byte is validated after mapping and slices are handed
        // out only through bounds-checked accessors, but a concurrent writer is outside
        // what we can check; like every mmap-based model loader we require that model
        // files are not modified while open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        Self::parse(Backing::Mapped(map))
    }

    /// Parse a GGUF image held in memory.
    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> Result<Self, GgufError> {
        Self::parse(Backing::Owned(bytes.into()))
    }

    fn parse(backing: Backing) -> Result<Self, GgufError> {
        let buf = backing.bytes();
        let mut r = Reader { buf, pos: 0 };

        let magic = r.take(4, "magic")?;
        if magic != MAGIC {
            let mut found = [0; 4];
            found.copy_from_slice(magic);
            return Err(GgufError::BadMagic { found });
        }
        let version = r.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::UnsupportedVersion { version });
        }
        let tensor_count = r.u64("tensor count")?;
        let kv_count = r.u64("metadata count")?;
        let available = r.remaining() as u64;
        if tensor_count > available / MIN_TENSOR_INFO_BYTES as u64 {
            return Err(GgufError::TooManyTensors {
                count: tensor_count,
                available,
            });
        }
        if kv_count > available / MIN_KV_BYTES as u64 {
            return Err(GgufError::TooManyKeys {
                count: kv_count,
                available,
            });
        }

        // Both counts are now below the file size, so they fit in usize and reserving
        // them allocates no more than a few times the file size.
        let mut metadata = Vec::with_capacity(kv_count as usize);
        let mut key_index = HashMap::with_capacity(kv_count as usize);
        for _ in 0..kv_count {
            let at = r.pos as u64;
            let key = r.string("metadata key")?;
            if key_index.contains_key(&key) {
                return Err(GgufError::DuplicateKey { key, offset: at });
            }
            let type_at = r.pos as u64;
            let type_id = r.u32("metadata value type")?;
            let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
                key: key.clone(),
                type_id,
                offset: type_at,
            })?;
            let value = r.value(ty, &key)?;
            key_index.insert(key.clone(), metadata.len());
            metadata.push((key, value));
        }

        let alignment = match key_index.get(ALIGNMENT_KEY) {
            None => DEFAULT_ALIGNMENT,
            Some(&i) => {
                let v = &metadata[i].1;
                match v.as_u64() {
                    Some(a) if a.is_power_of_two() => a,
                    _ => {
                        return Err(GgufError::BadAlignment {
                            value: format!("{v} ({})", v.value_type()),
                        });
                    }
                }
            }
        };

        let mut tensors = Vec::with_capacity(tensor_count as usize);
        let mut tensor_index = HashMap::with_capacity(tensor_count as usize);
        for _ in 0..tensor_count {
            let at = r.pos as u64;
            let len = r.peek_u64("tensor name length")?;
            if len > MAX_TENSOR_NAME as u64 {
                return Err(GgufError::TensorNameTooLong { offset: at, len });
            }
            let name = r.string("tensor name")?;
            if tensor_index.contains_key(&name) {
                return Err(GgufError::DuplicateTensor { name });
            }
            let n_dims = r.u32("tensor n_dims")?;
            if n_dims as usize > MAX_DIMS {
                return Err(GgufError::TooManyDims { name, n_dims });
            }
            let mut dims = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                dims.push(r.u64("tensor dimension")?);
            }
            let type_id = r.u32("tensor type")?;
            let ggml_type =
                GgmlType::from_id(type_id).ok_or_else(|| GgufError::UnknownGgmlType {
                    name: name.clone(),
                    type_id,
                })?;
            let offset = r.u64("tensor offset")?;

            let n_elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64);
            let Some(n_elements) = n_elements else {
                return Err(GgufError::SizeOverflow { name, dims });
            };
            let row_len = dims.first().copied().unwrap_or(1);
            let block = ggml_type.block_size();
            if !row_len.is_multiple_of(block) {
                return Err(GgufError::NotBlockMultiple {
                    name,
                    row_len,
                    ggml_type,
                    block,
                });
            }
            let Some(nbytes) = ggml_type.nbytes(n_elements) else {
                return Err(GgufError::SizeOverflow { name, dims });
            };
            if offset % alignment != 0 {
                return Err(GgufError::MisalignedOffset {
                    name,
                    offset,
                    alignment,
                });
            }
            tensor_index.insert(name.clone(), tensors.len());
            tensors.push(TensorInfo {
                name,
                dims,
                ggml_type,
                offset,
                nbytes,
            });
        }

        // The data section starts at the next multiple of the alignment. A file
        // without tensors may end before that padding.
        let header_end = r.pos as u64;
        let file_len = buf.len() as u64;
        let data_offset = match header_end
            .checked_add(alignment - 1)
            .map(|n| n & !(alignment - 1))
        {
            Some(d) if d <= file_len => d,
            _ if tensors.is_empty() => file_len,
            _ => {
                return Err(GgufError::Truncated {
                    offset: header_end,
                    what: "padding before the data section",
                    needed: alignment - header_end % alignment,
                    available: file_len - header_end,
                });
            }
        };
        let data_len = file_len - data_offset;
        for t in &tensors {
            if t.offset
                .checked_add(t.nbytes)
                .is_none_or(|end| end > data_len)
            {
                return Err(GgufError::TensorOutOfBounds {
                    name: t.name.clone(),
                    offset: t.offset,
                    nbytes: t.nbytes,
                    data_len,
                });
            }
        }

        Ok(Self {
            version,
            metadata,
            key_index,
            tensors,
            tensor_index,
            alignment,
            data_offset,
            backing,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// All metadata pairs, in file order.
    pub fn metadata(&self) -> &[(String, Value)] {
        &self.metadata
    }

    /// The value of a metadata key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.key_index.get(key).map(|&i| &self.metadata[i].1)
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor with this name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensor_index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of a tensor of this file (`nbytes` bytes at its offset). A
    /// `TensorInfo` that does not describe a range inside this file yields an empty
    /// slice rather than a panic.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let range = self
            .data_offset
            .checked_add(t.offset)
            .and_then(|start| Some((start, start.checked_add(t.nbytes)?)))
            .and_then(|(s, e)| Some(usize::try_from(s).ok()?..usize::try_from(e).ok()?));
        range
            .and_then(|r| self.backing.bytes().get(r))
            .unwrap_or(&[])
    }

    /// The alignment of the data section and tensor offsets.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Absolute byte offset of the data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// Total bytes of the file.
    pub fn file_len(&self) -> u64 {
        self.backing.bytes().len() as u64
    }
}

/// A bounds-checked little-endian cursor.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], GgufError> {
        let bytes = self
            .pos
            .checked_add(n)
            .and_then(|end| self.buf.get(self.pos..end))
            .ok_or(GgufError::Truncated {
                offset: self.pos as u64,
                what,
                needed: n as u64,
                available: self.remaining() as u64,
            })?;
        self.pos += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], GgufError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N, what)?);
        Ok(a)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    fn peek_u64(&self, what: &'static str) -> Result<u64, GgufError> {
        Reader {
            buf: self.buf,
            pos: self.pos,
        }
        .u64(what)
    }

    fn string(&mut self, what: &'static str) -> Result<String, GgufError> {
        let at = self.pos as u64;
        let len = self.u64(what)?;
        let available = self.remaining() as u64;
        if len > available {
            return Err(GgufError::StringTooLong {
                offset: at,
                len,
                available,
            });
        }
        let start = self.pos;
        let bytes = self.take(len as usize, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_owned()),
            Err(e) => Err(GgufError::BadUtf8 {
                what,
                offset: (start + e.valid_up_to()) as u64,
            }),
        }
    }

    fn value(&mut self, ty: ValueType, key: &str) -> Result<Value, GgufError> {
        Ok(match ty {
            ValueType::U8 => Value::U8(self.array::<1>("u8 value")?[0]),
            ValueType::I8 => Value::I8(self.array::<1>("i8 value")?[0] as i8),
            ValueType::U16 => Value::U16(u16::from_le_bytes(self.array("u16 value")?)),
            ValueType::I16 => Value::I16(i16::from_le_bytes(self.array("i16 value")?)),
            ValueType::U32 => Value::U32(self.u32("u32 value")?),
            ValueType::I32 => Value::I32(i32::from_le_bytes(self.array("i32 value")?)),
            ValueType::F32 => Value::F32(f32::from_le_bytes(self.array("f32 value")?)),
            ValueType::Bool => Value::Bool(self.array::<1>("bool value")?[0] != 0),
            ValueType::String => Value::String(self.string("string value")?),
            ValueType::Array => Value::Array(self.array_value(key, 1)?),
            ValueType::U64 => Value::U64(self.u64("u64 value")?),
            ValueType::I64 => Value::I64(i64::from_le_bytes(self.array("i64 value")?)),
            ValueType::F64 => Value::F64(f64::from_le_bytes(self.array("f64 value")?)),
        })
    }

    /// Read an array header and its elements; `depth` is 1 for a top-level array.
    fn array_value(&mut self, key: &str, depth: usize) -> Result<Array, GgufError> {
        let at = self.pos as u64;
        if depth > MAX_ARRAY_DEPTH {
            return Err(GgufError::ArrayTooDeep {
                key: key.to_owned(),
                offset: at,
            });
        }
        let type_at = self.pos as u64;
        let type_id = self.u32("array element type")?;
        let ty = ValueType::from_id(type_id).ok_or_else(|| GgufError::UnknownValueType {
            key: key.to_owned(),
            type_id,
            offset: type_at,
        })?;
        let count = self.u64("array length")?;
        let min = ty.min_bytes();
        let available = self.remaining();
        if count > (available / min) as u64 {
            return Err(GgufError::ArrayTooLong {
                key: key.to_owned(),
                offset: at,
                count,
                min_elem_bytes: min as u64,
                available: available as u64,
            });
        }
        // count * min <= available: neither the multiplication below nor the
        // reservation can be larger than the rest of the file.
        let n = count as usize;
        fn fixed<const N: usize, T>(
            r: &mut Reader<'_>,
            n: usize,
            what: &'static str,
            f: impl Fn([u8; N]) -> T,
        ) -> Result<Vec<T>, GgufError> {
            let bytes = r.take(n * N, what)?;
            Ok(bytes
                .chunks_exact(N)
                .map(|c| {
                    let mut a = [0; N];
                    a.copy_from_slice(c);
                    f(a)
                })
                .collect())
        }
        Ok(match ty {
            ValueType::U8 => Array::U8(self.take(n, "u8 array")?.to_vec()),
            ValueType::I8 => Array::I8(fixed(self, n, "i8 array", |[b]| b as i8)?),
            ValueType::Bool => Array::Bool(fixed(self, n, "bool array", |[b]| b != 0)?),
            ValueType::U16 => Array::U16(fixed(self, n, "u16 array", u16::from_le_bytes)?),
            ValueType::I16 => Array::I16(fixed(self, n, "i16 array", i16::from_le_bytes)?),
            ValueType::U32 => Array::U32(fixed(self, n, "u32 array", u32::from_le_bytes)?),
            ValueType::I32 => Array::I32(fixed(self, n, "i32 array", i32::from_le_bytes)?),
            ValueType::F32 => Array::F32(fixed(self, n, "f32 array", f32::from_le_bytes)?),
            ValueType::U64 => Array::U64(fixed(self, n, "u64 array", u64::from_le_bytes)?),
            ValueType::I64 => Array::I64(fixed(self, n, "i64 array", i64::from_le_bytes)?),
            ValueType::F64 => Array::F64(fixed(self, n, "f64 array", f64::from_le_bytes)?),
            ValueType::String => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.string("string array element")?);
                }
                Array::String(v)
            }
            ValueType::Array => {
                let mut v = Vec::with_capacity(n);
                for _ in 0..n {
                    v.push(self.array_value(key, depth + 1)?);
                }
                Array::Array(v)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: u32, n_tensors: u64, n_kv: u64) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend(version.to_le_bytes());
        b.extend(n_tensors.to_le_bytes());
        b.extend(n_kv.to_le_bytes());
        b
    }

    fn push_str(b: &mut Vec<u8>, s: &str) {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    }

    #[test]
    fn empty_file_parses() {
        let g = GgufFile::from_bytes(header(3, 0, 0)).unwrap();
        assert_eq!(g.version(), 3);
        assert!(g.tensors().is_empty());
        assert!(g.metadata().is_empty());
    }

    #[test]
    fn scalar_values_and_lenient_ints() {
        let mut b = header(2, 0, 3);
        push_str(&mut b, "a");
        b.extend(5u32.to_le_bytes());
        b.extend((-3i32).to_le_bytes());
        push_str(&mut b, "b");
        b.extend(0u32.to_le_bytes());
        b.push(7);
        push_str(&mut b, "c");
        b.extend(7u32.to_le_bytes());
        b.push(2);
        let g = GgufFile::from_bytes(b).unwrap();
        assert_eq!(g.get("a"), Some(&Value::I32(-3)));
        assert_eq!(g.get("a").unwrap().as_u64(), None);
        assert_eq!(g.get("a").unwrap().as_i64(), Some(-3));
        assert_eq!(g.get("b").unwrap().as_u64(), Some(7));
        assert_eq!(g.get("b").unwrap().as_f32(), Some(7.0));
        assert_eq!(g.get("c").unwrap().as_bool(), Some(true));
    }

    #[test]
    fn ggml_type_table() {
        assert_eq!(GgmlType::from_id(3), Some(GgmlType::Q4_1));
        assert_eq!(GgmlType::from_id(4), None);
        assert_eq!(GgmlType::from_id(14), Some(GgmlType::Q6_K));
        assert_eq!(GgmlType::Other(10).name(), "Q2_K");
        assert_eq!(GgmlType::Q8_0.nbytes(64), Some(68));
        assert_eq!(GgmlType::Q8_0.nbytes(33), None);
        assert_eq!(GgmlType::BF16.block_bytes(), 2);
        assert_eq!(GgmlType::Other(99).to_string(), "type#99");
        for t in GGML_TYPES {
            assert_eq!(GgmlType::from_id(t.0).unwrap().id(), t.0);
        }
    }
}
