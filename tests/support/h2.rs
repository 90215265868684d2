//! A minimal HTTP/2 client over std sockets, enough to post one event (timeouts on every read).
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::io::{Read, Write};

/// The gateway gave no answer: it reset the stream, sent GOAWAY or closed the connection.
#[derive(Debug)]
pub struct NoAnswer(pub String);

/// One POST (prior knowledge, no TLS), its body ended by a trailers HEADERS frame when `trailer`
/// is given. HPACK: literals without indexing on the way out; on the way back only the `:status`
/// (the first field) is decoded. The status and the answer's DATA, or Err when the gateway gave no
/// answer.
pub fn post(
    port: u16,
    authority: &str,
    extra: &[(&str, &str)],
    body: &[u8],
    trailer: Option<(&str, &str)>,
) -> Result<(u16, Vec<u8>), NoAnswer> {
    fn int(out: &mut Vec<u8>, value: usize) {
        if value < 127 {
            out.push(value as u8);
            return;
        }
        out.push(127);
        let mut rest = value - 127;
        while rest >= 128 {
            out.push((rest % 128 + 128) as u8);
            rest /= 128;
        }
        out.push(rest as u8);
    }
    fn block(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0);
            int(&mut out, name.len());
            out.extend_from_slice(name.as_bytes());
            int(&mut out, value.len());
            out.extend_from_slice(value.as_bytes());
        }
        out
    }
    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
    // Pseudo-header fields (extra ones included) come first, as HTTP/2 requires.
    let (pseudo, regular): (Vec<(&str, &str)>, Vec<_>) =
        extra.iter().partition(|(k, _)| k.starts_with(':'));
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/"),
        (":authority", authority),
    ];
    fields.extend(pseudo);
    fields.push(("content-type", "application/json"));
    fields.extend(regular);
    let mut request = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    request.extend(frame(4, 0, 0, &[]));
    request.extend(frame(1, 0x4, 1, &block(&fields)));
    let chunks: Vec<&[u8]> = body.chunks(16_000).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let last = i + 1 == chunks.len() && trailer.is_none();
        request.extend(frame(0, if last { 1 } else { 0 }, 1, chunk));
    }
    if let Some(trailer) = trailer {
        request.extend(frame(1, 0x5, 1, &block(&[trailer])));
    }
    let mut stream = super::http::connect(port).unwrap();
    stream.write_all(&request).unwrap();
    let (mut status, mut data) = (0u16, Vec::new());
    for _ in 0..1000 {
        let mut head = [0u8; 9];
        if let Err(e) = stream.read_exact(&mut head) {
            return Err(NoAnswer(format!("connection ended: {e}")));
        }
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let (kind, flags) = (head[3], head[4]);
        let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; length];
        stream.read_exact(&mut payload).unwrap();
        match kind {
            4 if flags & 1 == 0 => stream.write_all(&frame(4, 1, 0, &[])).unwrap(),
            1 if id == 1 => status = status_of(&payload),
            0 if id == 1 => data.extend_from_slice(&payload),
            3 if id == 1 => return Err(NoAnswer(format!("stream reset: {payload:?}"))),
            7 => return Err(NoAnswer(format!("GOAWAY: {payload:?}"))),
            _ => {}
        }
        if id == 1 && (kind == 0 || kind == 1) && flags & 1 == 1 {
            return Ok((status, data));
        }
    }
    panic!("no end of stream in 1000 frames");
}

/// The `:status` of a response header block: its first field, indexed (static table 8..=14) or
/// a literal with the indexed name `:status` and a Huffman- or plain-coded value of digits.
fn status_of(block: &[u8]) -> u16 {
    let first = block[0];
    if first & 0x80 != 0 {
        return [200, 204, 206, 304, 400, 404, 500][usize::from(first & 0x7f) - 8];
    }
    assert!(
        first & 0x0f == 8 || first & 0x3f == 8,
        "first field is not :status: {block:?}"
    );
    let (huffman, length) = (block[1] & 0x80 != 0, usize::from(block[1] & 0x7f));
    let value = &block[2..2 + length];
    if !huffman {
        return std::str::from_utf8(value).unwrap().parse().unwrap();
    }
    // Digits in the HPACK Huffman code: '0'..'2' are 5 bits (0..=2), '3'..'9' 6 bits (25..=31).
    let bits: Vec<u8> = value
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let (mut at, mut digits) = (0, 0u16);
    for _ in 0..3 {
        let five = bits[at..at + 5].iter().fold(0, |v, b| v * 2 + b);
        if five <= 2 {
            digits = digits * 10 + u16::from(five);
            at += 5;
        } else {
            let six = five * 2 + bits[at + 5];
            digits = digits * 10 + u16::from(six - 25 + 3);
            at += 6;
        }
    }
    digits
}
