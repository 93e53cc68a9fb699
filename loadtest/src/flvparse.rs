//! Incremental parsers for what a player receives over HTTP: the response head, chunked
//! transfer-coding, and FLV tags. Bounded: a peer cannot make them buffer without limit.

use bytes::{Buf, Bytes, BytesMut};

/// Largest tag body the 24-bit size field can carry; nothing larger can be buffered.
const MAX_TAG: usize = 0xff_ffff;
const MAX_HEAD: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq)]
pub struct Tag {
    pub tag_type: u8,
    pub timestamp: u32,
    pub body: Bytes,
}

#[derive(Debug, Default)]
pub struct FlvReader {
    buf: BytesMut,
    header_done: bool,
}

impl FlvReader {
    pub fn new() -> FlvReader {
        FlvReader::default()
    }

    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    pub fn next_tag(&mut self) -> Result<Option<Tag>, String> {
        if !self.header_done {
            if self.buf.len() < 9 {
                return Ok(None);
            }
            if &self.buf[..3] != b"FLV" {
                return Err("not an FLV stream".into());
            }
            let off = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]]);
            let skip = off as usize + 4;
            if !(9..=64).contains(&off) {
                return Err(format!("FLV header size {off}"));
            }
            if self.buf.len() < skip {
                return Ok(None);
            }
            self.buf.advance(skip);
            self.header_done = true;
        }
        if self.buf.len() < 11 {
            return Ok(None);
        }
        let b = &self.buf;
        let size = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
        let ts = u32::from_be_bytes([b[7], b[4], b[5], b[6]]);
        let tag_type = b[0] & 0x1f;
        if size > MAX_TAG {
            return Err("tag too large".into());
        }
        if self.buf.len() < 11 + size + 4 {
            return Ok(None);
        }
        let mut t = self.buf.split_to(11 + size + 4);
        t.advance(11);
        t.truncate(size);
        Ok(Some(Tag {
            tag_type,
            timestamp: ts,
            body: t.freeze(),
        }))
    }
}

/// Reads a whole FLV file into tags.
pub fn read_file(bytes: &[u8]) -> Result<Vec<Tag>, String> {
    let mut r = FlvReader::new();
    r.feed(bytes);
    let mut tags = vec![];
    while let Some(t) = r.next_tag()? {
        tags.push(t);
    }
    Ok(tags)
}

/// The parts of an HTTP response head the player needs.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub status: u16,
    pub chunked: bool,
    /// Bytes after the head: the start of the body.
    pub len: usize,
}

/// Ok(None) until the whole head is in `buf`.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > MAX_HEAD {
            Err("response head too large".into())
        } else {
            Ok(None)
        };
    };
    let text = std::str::from_utf8(&buf[..end]).map_err(|_| "response head not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line '{status_line}'"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    Ok(Some(Head {
        status,
        chunked,
        len: end + 4,
    }))
}

/// Decoder of the chunked transfer-coding.
#[derive(Debug, Default)]
pub struct Dechunker {
    buf: BytesMut,
    /// Data bytes left in the current chunk; None while reading a size line.
    left: Option<usize>,
    done: bool,
}

impl Dechunker {
    pub fn new() -> Dechunker {
        Dechunker::default()
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Appends the decoded data of `input` to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        self.buf.extend_from_slice(input);
        loop {
            if self.done {
                return Ok(());
            }
            match self.left {
                Some(0) => {
                    if self.buf.len() < 2 {
                        return Ok(());
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err("chunk not followed by CRLF".into());
                    }
                    self.buf.advance(2);
                    self.left = None;
                }
                Some(n) => {
                    if self.buf.is_empty() {
                        return Ok(());
                    }
                    let take = n.min(self.buf.len());
                    out.extend_from_slice(&self.buf[..take]);
                    self.buf.advance(take);
                    self.left = Some(n - take);
                }
                None => {
                    let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") else {
                        if self.buf.len() > 1024 {
                            return Err("chunk size line too long".into());
                        }
                        return Ok(());
                    };
                    let line =
                        std::str::from_utf8(&self.buf[..eol]).map_err(|_| "bad chunk size")?;
                    let hex = line.split(';').next().unwrap_or("").trim();
                    let n = usize::from_str_radix(hex, 16)
                        .map_err(|_| format!("bad chunk size '{hex}'"))?;
                    if n > 64 * 1024 * 1024 {
                        return Err("chunk too large".into());
                    }
                    self.buf.advance(eol + 2);
                    if n == 0 {
                        self.done = true;
                    } else {
                        self.left = Some(n);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_parsing() {
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Type: video/x-flv").unwrap(),
            None
        );
        let h = parse_head(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFLV").unwrap();
        assert_eq!(
            h,
            Some(Head {
                status: 200,
                chunked: true,
                len: 47
            })
        );
        let h = parse_head(b"HTTP/1.0 404 Not Found\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!((h.status, h.chunked), (404, false));
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
        assert!(parse_head(&vec![b'a'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn dechunk_in_pieces() {
        let wire = b"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\n\r\n";
        for step in 1..wire.len() {
            let mut d = Dechunker::new();
            let mut out = vec![];
            for piece in wire.chunks(step) {
                d.feed(piece, &mut out).unwrap();
            }
            assert_eq!(out, b"hello, world", "step {step}");
            assert!(d.is_done());
        }
        let mut out = vec![];
        assert!(Dechunker::new().feed(b"zz\r\n", &mut out).is_err());
        assert!(Dechunker::new().feed(b"2\r\nabXY", &mut out).is_err());
    }

    #[test]
    fn flv_reader_rejects_garbage() {
        let mut r = FlvReader::new();
        r.feed(b"GIF89a\0\0\0\0\0\0\0");
        assert!(r.next_tag().is_err());
        let mut r = FlvReader::new();
        r.feed(&livego::flv::file_header(true, true));
        r.feed(&[9, 0, 0, 2, 0, 0, 1, 2]);
        assert_eq!(r.next_tag().unwrap(), None);
        r.feed(&[0, 0, 0, 0x17, 1, 0, 0, 0, 13]);
        let t = r.next_tag().unwrap().unwrap();
        assert_eq!(
            (t.tag_type, t.timestamp, &t.body[..]),
            (9, 0x0200_0001, &[0x17, 1][..])
        );
    }
}
