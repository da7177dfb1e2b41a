//! Protobuf wire format, read without decoding: walk the fields of an encoded message and copy them as bytes.
//!
//! Routing needs only a few fields of an OTLP request (trace ids, `service.name`, metric names); everything else is
//! carried from the client to the backend as the exact bytes it arrived in. This module is the small reader and
//! writer that makes that possible; it validates the framing (tags, lengths, wire types) of every field it walks.

use thiserror::Error;

/// A framing error in an encoded message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum WireError {
    #[error("truncated varint at byte {0}")]
    Varint(usize),
    #[error("field length {len} at byte {at} runs past the end of the message ({remaining} bytes left)")]
    Length { at: usize, len: u64, remaining: usize },
    #[error("unsupported wire type {wire_type} for field {field} at byte {at}")]
    WireType { field: u32, wire_type: u8, at: usize },
    #[error("invalid field number 0 at byte {0}")]
    FieldZero(usize),
    #[error("field {field}: expected wire type {expected}, found {found}")]
    Unexpected { field: u32, expected: u8, found: u8 },
    #[error("field {0}: invalid UTF-8 in string")]
    Utf8(u32),
}

/// The value of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

impl Value<'_> {
    pub fn wire_type(&self) -> u8 {
        match self {
            Value::Varint(_) => 0,
            Value::Fixed64(_) => 1,
            Value::Len(_) => 2,
            Value::Fixed32(_) => 5,
        }
    }
}

/// One field of a message: its number, its value, and the field's full encoding (tag included), ready to copy.
#[derive(Debug, Clone, Copy)]
pub struct Field<'a> {
    pub number: u32,
    pub value: Value<'a>,
    pub raw: &'a [u8],
}

impl<'a> Field<'a> {
    /// The payload of a length-delimited field (message, string, bytes, packed).
    pub fn bytes(&self) -> Result<&'a [u8], WireError> {
        match self.value {
            Value::Len(b) => Ok(b),
            other => Err(WireError::Unexpected { field: self.number, expected: 2, found: other.wire_type() }),
        }
    }

    /// The payload of a string field.
    pub fn str(&self) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| WireError::Utf8(self.number))
    }

    pub fn varint(&self) -> Result<u64, WireError> {
        match self.value {
            Value::Varint(v) => Ok(v),
            other => Err(WireError::Unexpected { field: self.number, expected: 0, found: other.wire_type() }),
        }
    }
}

/// Iterator over the fields of an encoded message.
#[derive(Debug, Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Walks the fields of `buf`.
pub fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf, pos: 0 }
}

#[inline]
fn read_varint(buf: &[u8], pos: &mut usize) -> Result<u64, WireError> {
    let start = *pos;
    let mut value: u64 = 0;
    for shift in 0..10 {
        let Some(&b) = buf.get(*pos) else { return Err(WireError::Varint(start)) };
        *pos += 1;
        value |= u64::from(b & 0x7f) << (shift * 7);
        if b < 0x80 {
            return Ok(value);
        }
    }
    Err(WireError::Varint(start))
}

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Field<'a>, WireError> {
        let start = self.pos;
        let key = read_varint(self.buf, &mut self.pos)?;
        let number = u32::try_from(key >> 3).map_err(|_| WireError::FieldZero(start))?;
        if number == 0 {
            return Err(WireError::FieldZero(start));
        }
        let wire_type = (key & 7) as u8;
        let value = match wire_type {
            0 => Value::Varint(read_varint(self.buf, &mut self.pos)?),
            1 => Value::Fixed64(u64::from_le_bytes(self.take(8, start)?.try_into().unwrap_or_default())),
            2 => {
                let len = read_varint(self.buf, &mut self.pos)?;
                let remaining = self.buf.len() - self.pos;
                let n = usize::try_from(len).ok().filter(|n| *n <= remaining);
                let n = n.ok_or(WireError::Length { at: start, len, remaining })?;
                Value::Len(self.take(n, start)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.take(4, start)?.try_into().unwrap_or_default())),
            _ => return Err(WireError::WireType { field: number, wire_type, at: start }),
        };
        Ok(Field { number, value, raw: &self.buf[start..self.pos] })
    }

    fn take(&mut self, n: usize, at: usize) -> Result<&'a [u8], WireError> {
        let remaining = self.buf.len() - self.pos;
        if n > remaining {
            return Err(WireError::Length { at, len: n as u64, remaining });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<Field<'a>, WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        let item = self.next_field();
        if item.is_err() {
            self.pos = self.buf.len();
        }
        Some(item)
    }
}

/// Bytes needed to encode `v` as a varint.
#[inline]
pub fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Appends `v` as a varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Bytes a length-delimited field of `len` payload bytes takes (tag, length prefix, payload).
#[inline]
pub fn len_field_size(number: u32, len: usize) -> usize {
    varint_len(u64::from(number) << 3) + varint_len(len as u64) + len
}

/// Appends the tag and length prefix of a length-delimited field; the caller appends `len` payload bytes.
#[inline]
pub fn put_len_header(out: &mut Vec<u8>, number: u32, len: usize) {
    put_varint(out, (u64::from(number) << 3) | 2);
    put_varint(out, len as u64);
}

/// Appends a whole length-delimited field.
pub fn put_len_field(out: &mut Vec<u8>, number: u32, payload: &[u8]) {
    put_len_header(out, number, payload.len());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn varint_roundtrip_and_length() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "length of {v}");
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
            assert_eq!(prost::encoding::encoded_len_varint(v), varint_len(v));
        }
    }

    #[test]
    fn walks_fields_of_a_prost_message_and_raw_reassembles_it() {
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
        let kv = KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue { value: Some(any_value::Value::StringValue("checkout".into())) }),
            ..Default::default()
        };
        let buf = kv.encode_to_vec();
        let fs: Vec<_> = fields(&buf).collect::<Result<_, _>>().expect("valid");
        assert_eq!(fs.len(), 2);
        assert_eq!(fs[0].number, 1);
        assert_eq!(fs[0].str(), Ok("service.name"));
        let inner: Vec<_> = fields(fs[1].bytes().expect("len")).collect::<Result<_, _>>().expect("valid");
        assert_eq!(inner[0].str(), Ok("checkout"));
        let rebuilt: Vec<u8> = fs.iter().flat_map(|f| f.raw.iter().copied()).collect();
        assert_eq!(rebuilt, buf);
        let mut out = Vec::new();
        put_len_field(&mut out, 1, b"service.name");
        assert_eq!(out, fs[0].raw);
        assert_eq!(len_field_size(1, 12), out.len());
    }

    #[test]
    fn rejects_bad_framing() {
        // Length prefix runs past the end.
        assert!(matches!(fields(&[0x0a, 0x05, 1, 2]).next(), Some(Err(WireError::Length { .. }))));
        // Truncated varint.
        assert!(matches!(fields(&[0x08, 0x80]).next(), Some(Err(WireError::Varint(_)))));
        // Group wire type (3) is not accepted.
        assert!(matches!(fields(&[0x0b]).next(), Some(Err(WireError::WireType { .. }))));
        // Field number 0.
        assert!(matches!(fields(&[0x02, 0x00]).next(), Some(Err(WireError::FieldZero(0)))));
        // After an error the iterator ends.
        let mut it = fields(&[0x0b, 0x08, 0x01]);
        assert!(it.next().is_some_and(|r| r.is_err()));
        assert!(it.next().is_none());
    }
}
