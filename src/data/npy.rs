//! NumPy `.npy` arrays: a strict reader of the header and of every numeric element type.
//!
//! The format (numpy's `format.py`): the magic `\x93NUMPY`, a version, a header length, a Python
//! dict literal `{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }`, then the elements.
//! The header is parsed as that literal, not searched for keys: each key once, no other keys, and
//! a shape whose element and byte counts are checked for overflow before anything is allocated.
//! Arrays of any rank in either memory order come out row-major (C order).

use crate::ir::DType;
use crate::runtime::Buffer;

/// What is wrong with an array file, worded to follow the file's name.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NpyError {
    #[error("not a NumPy array file: {0}")]
    Format(String),
    #[error("element type `{0}` is not supported (floats, integers and booleans are)")]
    Unsupported(String),
    #[error("shape {shape:?} of `{descr}` needs {needed} data bytes, the file has {found}")]
    Length {
        shape: Vec<usize>,
        descr: String,
        needed: String,
        found: usize,
    },
    #[error("element {index} (row {row}) is {value}, not a boolean (0 or 1)")]
    Bool { index: usize, row: usize, value: u8 },
}

fn format_error(why: impl Into<String>) -> NpyError {
    NpyError::Format(why.into())
}

/// An array's shape and its values as f64, row-major.
pub type Array = (Vec<usize>, Vec<f64>);

/// Parses the bytes of a `.npy` file.
pub fn parse(bytes: &[u8]) -> Result<Array, NpyError> {
    parse_into(bytes, |v| v)
}

/// An array's shape and its values in a model's dtype, row-major.
pub type TypedArray = (Vec<usize>, Buffer);

/// Parses the bytes of a `.npy` file into values of `dtype`, each element converted as it is
/// read (so an f32 model's array is never held as f64 as well).
pub fn parse_as(bytes: &[u8], dtype: DType) -> Result<TypedArray, NpyError> {
    Ok(match dtype {
        DType::F32 => {
            let (shape, values) = parse_into(bytes, |v| v as f32)?;
            (shape, Buffer::F32(values))
        }
        DType::F64 => {
            let (shape, values) = parse_into(bytes, |v| v)?;
            (shape, Buffer::F64(values))
        }
    })
}

/// Parses the bytes of a `.npy` file, converting each element's value with `convert`.
fn parse_into<T: Copy + Default>(
    bytes: &[u8],
    convert: impl Fn(f64) -> T,
) -> Result<(Vec<usize>, Vec<T>), NpyError> {
    let (header, data) = split_header(bytes)?;
    let header = Header::parse(header)?;
    let element = Element::from_descr(&header.descr)?;
    let count = header
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d));
    let needed = count.and_then(|n| n.checked_mul(element.size));
    if needed != Some(data.len()) {
        return Err(NpyError::Length {
            needed: needed.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string()),
            shape: header.shape,
            descr: header.descr,
            found: data.len(),
        });
    }
    let width = header.shape.iter().skip(1).product::<usize>().max(1);
    let mut values = Vec::with_capacity(data.len() / element.size);
    for (index, bytes) in data.chunks_exact(element.size).enumerate() {
        values.push(convert(element.value(bytes).map_err(|value| {
            NpyError::Bool {
                index,
                row: index / width + 1,
                value,
            }
        })?));
    }
    if header.fortran_order {
        values = to_row_major(&header.shape, &values);
    }
    Ok((header.shape, values))
}

/// The header text and the data after it.
fn split_header(bytes: &[u8]) -> Result<(&str, &[u8]), NpyError> {
    let rest = bytes
        .strip_prefix(b"\x93NUMPY")
        .ok_or_else(|| format_error("no `\\x93NUMPY` magic"))?;
    let (version, rest) = rest
        .split_first_chunk::<2>()
        .ok_or_else(|| format_error("truncated before the version"))?;
    let (header_len, rest) = match version[0] {
        1 => {
            let (len, rest) = rest
                .split_first_chunk::<2>()
                .ok_or_else(|| format_error("truncated before the header length"))?;
            (u16::from_le_bytes(*len) as usize, rest)
        }
        2 | 3 => {
            let (len, rest) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| format_error("truncated before the header length"))?;
            (u32::from_le_bytes(*len) as usize, rest)
        }
        v => {
            return Err(format_error(format!(
                "format version {v}.{} is not supported (1, 2 and 3 are)",
                version[1]
            )));
        }
    };
    if rest.len() < header_len {
        return Err(format_error(format!(
            "the header is {header_len} bytes but the file has {} after the length",
            rest.len()
        )));
    }
    let (header, data) = rest.split_at(header_len);
    // Versions 1 and 2 are ASCII (Latin-1); version 3 allows UTF-8 in field names.
    let text = std::str::from_utf8(header).map_err(|_| format_error("the header is not text"))?;
    if version[0] < 3 && !text.is_ascii() {
        return Err(format_error("the header is not ASCII"));
    }
    Ok((text, data))
}

#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran_order: bool,
    shape: Vec<usize>,
}

impl Header {
    /// Parses the dict literal; padding (spaces, a newline) may follow it.
    fn parse(text: &str) -> Result<Header, NpyError> {
        let mut p = Literal { rest: text };
        p.expect('{')?;
        let (mut descr, mut fortran_order, mut shape) = (None, None, None);
        loop {
            p.skip_space();
            if p.eat('}') {
                break;
            }
            let key = p.string()?;
            p.expect(':')?;
            let duplicate = match key.as_str() {
                "descr" => descr.replace(p.descr()?).is_some(),
                "fortran_order" => fortran_order.replace(p.boolean()?).is_some(),
                "shape" => shape.replace(p.shape()?).is_some(),
                other => return Err(format_error(format!("unexpected header key `{other}`"))),
            };
            if duplicate {
                return Err(format_error(format!("the header gives `{key}` twice")));
            }
            p.skip_space();
            if !p.eat(',') {
                p.expect('}')?;
                break;
            }
        }
        if !p.rest.trim_end_matches([' ', '\n', '\0']).is_empty() {
            return Err(format_error("text after the header's dict"));
        }
        let missing = |key: &str| format_error(format!("the header has no `{key}`"));
        Ok(Header {
            descr: descr.ok_or_else(|| missing("descr"))?,
            fortran_order: fortran_order.ok_or_else(|| missing("fortran_order"))?,
            shape: shape.ok_or_else(|| missing("shape"))?,
        })
    }
}

/// A cursor over the header's Python literal.
struct Literal<'a> {
    rest: &'a str,
}

impl Literal<'_> {
    fn skip_space(&mut self) {
        self.rest = self.rest.trim_start_matches([' ', '\t', '\n', '\r']);
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_space();
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    fn expect(&mut self, c: char) -> Result<(), NpyError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(format_error(format!("expected `{c}` in the header")))
        }
    }

    /// A quoted string without escapes (keys and type descriptions have none).
    fn string(&mut self) -> Result<String, NpyError> {
        self.skip_space();
        let quote = match self.rest.chars().next() {
            Some(q @ ('\'' | '"')) => q,
            _ => return Err(format_error("expected a quoted string in the header")),
        };
        let body = &self.rest[1..];
        let end = body
            .find(quote)
            .ok_or_else(|| format_error("unterminated string in the header"))?;
        if body[..end].contains('\\') {
            return Err(format_error("escapes in header strings are not supported"));
        }
        self.rest = &body[end + 1..];
        Ok(body[..end].to_string())
    }

    /// `descr` is a string for a simple type; a list describes a structured type.
    fn descr(&mut self) -> Result<String, NpyError> {
        self.skip_space();
        if self.rest.starts_with('[') {
            return Err(NpyError::Unsupported("structured (record) array".into()));
        }
        self.string()
    }

    fn boolean(&mut self) -> Result<bool, NpyError> {
        self.skip_space();
        for (word, value) in [("True", true), ("False", false)] {
            if let Some(rest) = self.rest.strip_prefix(word) {
                self.rest = rest;
                return Ok(value);
            }
        }
        Err(format_error("`fortran_order` is not `True` or `False`"))
    }

    /// A tuple of whole numbers: `()`, `(5,)`, `(3, 4)`.
    fn shape(&mut self) -> Result<Vec<usize>, NpyError> {
        self.expect('(')?;
        let mut dims = Vec::new();
        loop {
            if self.eat(')') {
                break;
            }
            let digits = self.rest.len()
                - self
                    .rest
                    .trim_start_matches(|c: char| c.is_ascii_digit())
                    .len();
            if digits == 0 {
                return Err(format_error("the shape is not a tuple of whole numbers"));
            }
            let dim = self.rest[..digits].parse::<usize>().map_err(|_| {
                format_error(format!("dimension {} is too large", &self.rest[..digits]))
            })?;
            self.rest = &self.rest[digits..];
            dims.push(dim);
            if !self.eat(',') {
                self.expect(')')?;
                break;
            }
        }
        Ok(dims)
    }
}

/// How one element is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Element {
    kind: Kind,
    size: usize,
    little_endian: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Float,
    Signed,
    Unsigned,
    Bool,
}

impl Element {
    fn from_descr(descr: &str) -> Result<Element, NpyError> {
        let (order, code) = match descr.chars().next() {
            Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
            _ => ('|', descr),
        };
        let unsupported = || NpyError::Unsupported(code.to_string());
        let (kind, size) = code.split_at_checked(1).ok_or_else(unsupported)?;
        let size: usize = size.parse().map_err(|_| unsupported())?;
        let kind = match (kind, size) {
            ("f", 2 | 4 | 8) => Kind::Float,
            ("i", 1 | 2 | 4 | 8) => Kind::Signed,
            ("u", 1 | 2 | 4 | 8) => Kind::Unsigned,
            ("b", 1) => Kind::Bool,
            _ => return Err(unsupported()),
        };
        let little_endian = match order {
            '<' => true,
            '>' => false,
            // `|` (order irrelevant) is only right for one-byte elements.
            '|' if size == 1 => true,
            '|' => return Err(format_error(format!("`{descr}` gives no byte order"))),
            _ => cfg!(target_endian = "little"),
        };
        Ok(Element {
            kind,
            size,
            little_endian,
        })
    }

    /// The element's value; a boolean byte other than 0 or 1 is returned as the error.
    fn value(&self, bytes: &[u8]) -> Result<f64, u8> {
        let mut word = [0u8; 8];
        if self.little_endian {
            word[..bytes.len()].copy_from_slice(bytes);
        } else {
            for (w, b) in word.iter_mut().zip(bytes.iter().rev()) {
                *w = *b;
            }
        }
        let [b0, b1, b2, b3, ..] = word;
        Ok(match (self.kind, self.size) {
            (Kind::Float, 2) => half_to_f64(u16::from_le_bytes([b0, b1])),
            (Kind::Float, 4) => f32::from_le_bytes([b0, b1, b2, b3]) as f64,
            (Kind::Float, _) => f64::from_le_bytes(word),
            (Kind::Signed, 1) => b0 as i8 as f64,
            (Kind::Signed, 2) => i16::from_le_bytes([b0, b1]) as f64,
            (Kind::Signed, 4) => i32::from_le_bytes([b0, b1, b2, b3]) as f64,
            (Kind::Signed, _) => i64::from_le_bytes(word) as f64,
            (Kind::Unsigned, _) => u64::from_le_bytes(word) as f64,
            (Kind::Bool, _) if b0 <= 1 => b0 as f64,
            (Kind::Bool, _) => return Err(b0),
        })
    }
}

/// IEEE binary16 to f64 (exact: every half is a double).
fn half_to_f64(h: u16) -> f64 {
    let sign = if h >> 15 == 1 { -1.0 } else { 1.0 };
    let exponent = i32::from((h >> 10) & 0x1f);
    let fraction = f64::from(h & 0x3ff);
    sign * match exponent {
        0 => fraction * 2f64.powi(-24),
        31 if fraction == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + fraction / 1024.0) * 2f64.powi(e - 15),
    }
}

/// Column-major (Fortran) values of `shape` in row-major order.
fn to_row_major<T: Copy + Default>(shape: &[usize], values: &[T]) -> Vec<T> {
    let rank = shape.len();
    // The row-major stride of each axis.
    let mut strides = vec![1usize; rank];
    for a in (0..rank.saturating_sub(1)).rev() {
        strides[a] = strides[a + 1] * shape[a + 1];
    }
    let mut out = vec![T::default(); values.len()];
    let mut index = vec![0usize; rank];
    let mut at = 0usize;
    for &v in values {
        out[at] = v;
        // Advance the multi-index with the first axis fastest, as Fortran order stores it.
        for a in 0..rank {
            index[a] += 1;
            at += strides[a];
            if index[a] < shape[a] {
                break;
            }
            at -= strides[a] * shape[a];
            index[a] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(header: &str, data: &[u8]) -> Vec<u8> {
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        bytes.extend((header.len() as u16).to_le_bytes());
        bytes.extend(header.as_bytes());
        bytes.extend(data);
        bytes
    }

    #[test]
    fn the_header_is_parsed_as_a_literal() {
        let h = Header::parse("{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }   \n");
        assert_eq!(
            h,
            Ok(Header {
                descr: "<f8".into(),
                fortran_order: false,
                shape: vec![3, 4]
            })
        );
        let h = Header::parse("{\"shape\":(),\"fortran_order\":True,\"descr\":\"|u1\"}");
        assert_eq!(h.unwrap().shape, Vec::<usize>::new());
        for (bad, why) in [
            ("{'descr': '<f8', 'shape': (3,)}", "no `fortran_order`"),
            (
                "{'descr': '<f8', 'descr': '<f4', 'fortran_order': False, 'shape': (3,)}",
                "`descr` twice",
            ),
            (
                "{'descr': '<f8', 'fortran_order': 0, 'shape': (3,)}",
                "`True` or `False`",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3, x)}",
                "whole numbers",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (-3,)}",
                "whole numbers",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), 'x': 1}",
                "key `x`",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3,)} junk",
                "after the header",
            ),
            (
                "{'descr': '<f8', 'fortran_order': False, 'shape': (99999999999999999999999,)}",
                "too large",
            ),
            ("{'descr': '<f8'", "expected"),
        ] {
            let e = Header::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn a_shape_whose_size_overflows_is_an_error_not_a_panic() {
        let bytes = file(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (2305843009213693955,), }\n",
            &[0; 24],
        );
        assert_eq!(
            parse(&bytes).unwrap_err().to_string(),
            "shape [2305843009213693955] of `<f8` needs more than 2^64 data bytes, the file has 24"
        );
        let bytes = file(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296), }\n",
            &[0; 8],
        );
        assert!(
            parse(&bytes)
                .unwrap_err()
                .to_string()
                .contains("more than 2^64")
        );
    }

    #[test]
    fn every_numeric_element_type_is_read() {
        let cases: Vec<(&str, Vec<u8>, f64)> = vec![
            ("<f2", vec![0x00, 0xc0], -2.0),
            (">f2", vec![0x3c, 0x01], 1.0 + 1.0 / 1024.0),
            ("<f2", vec![0x01, 0x00], 2f64.powi(-24)),
            ("<f4", 1.5f32.to_le_bytes().to_vec(), 1.5),
            (">f4", 1.5f32.to_be_bytes().to_vec(), 1.5),
            ("<f8", (-0.25f64).to_le_bytes().to_vec(), -0.25),
            ("|i1", vec![0xff], -1.0),
            ("<i2", (-300i16).to_le_bytes().to_vec(), -300.0),
            (">i4", (-70000i32).to_be_bytes().to_vec(), -70000.0),
            ("<i8", (1i64 << 40).to_le_bytes().to_vec(), 2f64.powi(40)),
            ("|u1", vec![200], 200.0),
            (">u2", 60000u16.to_be_bytes().to_vec(), 60000.0),
            ("<u4", 4_000_000_000u32.to_le_bytes().to_vec(), 4e9),
            ("<u8", (1u64 << 63).to_le_bytes().to_vec(), 2f64.powi(63)),
            ("|b1", vec![1], 1.0),
        ];
        for (descr, data, want) in cases {
            let header =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}\n");
            assert_eq!(
                parse(&file(&header, &data)),
                Ok((vec![1], vec![want])),
                "{descr}"
            );
        }
        for descr in ["<c16", "<f16", "<U3", "|O", "<M8[s]", "<i3"] {
            let header =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (1,), }}\n");
            let e = parse(&file(&header, &[0; 16])).unwrap_err();
            assert!(matches!(e, NpyError::Unsupported(_)), "{descr}: {e}");
        }
        let header = "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }\n";
        assert!(matches!(
            parse(&file(header, &[0; 8])),
            Err(NpyError::Unsupported(_))
        ));
        let header = "{'descr': '|b1', 'fortran_order': False, 'shape': (2, 2), }\n";
        assert_eq!(
            parse(&file(header, &[0, 1, 1, 7])).unwrap_err().to_string(),
            "element 3 (row 2) is 7, not a boolean (0 or 1)"
        );
    }

    #[test]
    fn fortran_order_of_any_rank_comes_out_row_major() {
        // A 2×3×4 array whose element [i][j][k] is 100i + 10j + k, stored column-major.
        let shape = [2usize, 3, 4];
        let mut data = Vec::new();
        for k in 0..4 {
            for j in 0..3 {
                for i in 0..2 {
                    data.extend((100.0 * i as f64 + 10.0 * j as f64 + k as f64).to_le_bytes());
                }
            }
        }
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3, 4), }\n";
        let (got_shape, values) = parse(&file(header, &data)).unwrap();
        assert_eq!(got_shape, shape);
        let want: Vec<f64> = (0..2)
            .flat_map(|i| {
                (0..3).flat_map(move |j| (0..4).map(move |k| (100 * i + 10 * j + k) as f64))
            })
            .collect();
        assert_eq!(values, want);
        // Ranks 0 and 1 and an empty axis are the same in both orders.
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (), }\n";
        assert_eq!(
            parse(&file(header, &7.0f64.to_le_bytes())),
            Ok((vec![], vec![7.0]))
        );
        let header = "{'descr': '<f8', 'fortran_order': True, 'shape': (0, 3), }\n";
        assert_eq!(parse(&file(header, &[])), Ok((vec![0, 3], vec![])));
    }

    #[test]
    fn truncated_and_foreign_files_are_errors() {
        let header = "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }\n";
        let full = file(header, &[0; 16]);
        for cut in 0..full.len() - 1 {
            assert!(parse(&full[..cut]).is_err(), "cut at {cut}");
        }
        assert!(
            parse(b"not numpy")
                .unwrap_err()
                .to_string()
                .contains("magic")
        );
        let mut v9 = full.clone();
        v9[6] = 9;
        assert!(parse(&v9).unwrap_err().to_string().contains("version 9.0"));
        assert_eq!(
            parse(&file(header, &[0; 17])).unwrap_err().to_string(),
            "shape [2] of `<f8` needs 16 data bytes, the file has 17"
        );
    }
}
