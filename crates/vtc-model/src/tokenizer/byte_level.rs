//! GPT-2's byte-to-unicode mapping: every byte is stored in the vocabulary as one printable
//! character, so that token strings are valid UTF-8 without spaces or control characters.
//!
//! Bytes `!`..=`~`, `¡`..=`¬` and `®`..=`ÿ` map to the character with the same code; the
//! other 68 bytes map, in increasing order, to U+0100, U+0101, ... (so a space, byte 0x20,
//! is `Ġ` U+0120 and a newline, 0x0A, is `Ċ` U+010A).

/// Whether byte `b` maps to the character of the same code.
const fn is_direct(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Character that stands for byte `b` in a token string.
pub(crate) const BYTE_TO_CHAR: [char; 256] = {
    let mut table = ['\0'; 256];
    let mut next = 0x100u32;
    let mut b = 0usize;
    while b < 256 {
        let code = if is_direct(b as u8) {
            b as u32
        } else {
            let c = next;
            next += 1;
            c
        };
        table[b] = match char::from_u32(code) {
            Some(c) => c,
            None => '\0',
        };
        b += 1;
    }
    table
};

/// Number of characters in the mapping's image below which [`CHAR_TO_BYTE`] is indexed:
/// the largest mapped character is U+0143.
const CHAR_LIMIT: usize = 0x144;

/// Inverse of [`BYTE_TO_CHAR`], indexed by character code; `-1` where no byte maps.
const CHAR_TO_BYTE: [i16; CHAR_LIMIT] = {
    let mut table = [-1i16; CHAR_LIMIT];
    let mut b = 0usize;
    while b < 256 {
        table[BYTE_TO_CHAR[b] as usize] = b as i16;
        b += 1;
    }
    table
};

/// The byte that character `c` stands for, or `None` if `c` is not in the mapping.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let v = *CHAR_TO_BYTE.get(c as usize)?;
    u8::try_from(v).ok()
}

/// Undo the mapping for a whole token string, appending the bytes to `out`. `Err(offset)`
/// gives the byte offset of the first character outside the mapping (`out` then holds
/// the bytes before it).
pub(crate) fn decode_token_into(s: &str, out: &mut Vec<u8>) -> Result<(), usize> {
    for (offset, c) in s.char_indices() {
        out.push(char_to_byte(c).ok_or(offset)?);
    }
    Ok(())
}

/// [`decode_token_into`] a new vector.
#[cfg(test)]
fn decode_token(s: &str) -> Result<Vec<u8>, usize> {
    let mut out = Vec::with_capacity(s.len());
    decode_token_into(s, &mut out).map(|()| out)
}

/// Apply the mapping to raw bytes (the form token strings have in the vocabulary).
pub fn byte_level_form(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| BYTE_TO_CHAR[b as usize]).collect()
}

/// [`byte_level_form`] into `out` (cleared first).
pub(crate) fn byte_level_form_into(bytes: &[u8], out: &mut String) {
    out.clear();
    out.extend(bytes.iter().map(|&b| BYTE_TO_CHAR[b as usize]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_characters() {
        assert_eq!(BYTE_TO_CHAR[b' ' as usize], 'Ġ');
        assert_eq!(BYTE_TO_CHAR[b'\n' as usize], 'Ċ');
        assert_eq!(BYTE_TO_CHAR[b'\t' as usize], 'ĉ');
        assert_eq!(BYTE_TO_CHAR[b'a' as usize], 'a');
        assert_eq!(BYTE_TO_CHAR[0], 'Ā');
        assert_eq!(BYTE_TO_CHAR[0xAD], 'Ń');
        assert_eq!(BYTE_TO_CHAR[0xFF], 'ÿ');
    }

    #[test]
    fn mapping_is_a_bijection() {
        let mut seen = std::collections::HashSet::new();
        for b in 0..=255u8 {
            let c = BYTE_TO_CHAR[b as usize];
            assert!(seen.insert(c), "{c:?} used twice");
            assert!(!c.is_whitespace() && !c.is_control(), "{c:?}");
            assert_eq!(char_to_byte(c), Some(b));
        }
        assert_eq!(char_to_byte(' '), None);
        assert_eq!(char_to_byte('\u{144}'), None);
        assert_eq!(char_to_byte('€'), None);
    }

    #[test]
    fn whole_tokens() {
        assert_eq!(decode_token("Ġthe").unwrap(), b" the");
        assert_eq!(decode_token("ĊĊ").unwrap(), b"\n\n");
        assert_eq!(decode_token("ab cd"), Err(2));
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(decode_token(&byte_level_form(&all)).unwrap(), all);
    }
}
