//! A deliberately small RTMP client for the tests: simple handshake, hand-built chunks, and just
//! enough chunk and AMF0 decoding to read the server's replies. It lets the bad-input tests send
//! exactly the bytes they want, which ffmpeg and rtmpdump never would.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

pub const MSG_SET_CHUNK_SIZE: u8 = 1;
pub const MSG_WINDOW_ACK: u8 = 5;
pub const MSG_AUDIO: u8 = 8;
pub const MSG_VIDEO: u8 = 9;
pub const MSG_DATA_AMF0: u8 = 18;
pub const MSG_COMMAND_AMF0: u8 = 20;

/// Bounds for decoding the server's replies; a reply beyond them is a server bug worth failing on.
const MAX_MESSAGE: usize = 8 * 1024 * 1024;
const MAX_AMF_DEPTH: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub enum Amf {
    Number(f64),
    Bool(bool),
    Str(String),
    Object(Vec<(String, Amf)>),
    Null,
    Undefined,
    Array(Vec<(String, Amf)>),
}

impl Amf {
    pub fn get(&self, key: &str) -> Option<&Amf> {
        match self {
            Amf::Object(p) | Amf::Array(p) => p.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Amf::Str(s) => Some(s),
            _ => None,
        }
    }
}

pub fn amf_encode(v: &Amf, out: &mut Vec<u8>) {
    match v {
        Amf::Number(n) => {
            out.push(0);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Amf::Bool(b) => out.extend_from_slice(&[1, *b as u8]),
        Amf::Str(s) => {
            out.push(2);
            out.extend_from_slice(&(s.len() as u16).to_be_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Amf::Object(props) => {
            out.push(3);
            for (k, v) in props {
                out.extend_from_slice(&(k.len() as u16).to_be_bytes());
                out.extend_from_slice(k.as_bytes());
                amf_encode(v, out);
            }
            out.extend_from_slice(&[0, 0, 9]);
        }
        Amf::Null => out.push(5),
        Amf::Undefined => out.push(6),
        Amf::Array(props) => {
            out.push(8);
            out.extend_from_slice(&(props.len() as u32).to_be_bytes());
            for (k, v) in props {
                out.extend_from_slice(&(k.len() as u16).to_be_bytes());
                out.extend_from_slice(k.as_bytes());
                amf_encode(v, out);
            }
            out.extend_from_slice(&[0, 0, 9]);
        }
    }
}

pub fn amf_encode_all(values: &[Amf]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        amf_encode(v, &mut out);
    }
    out
}

fn take<'a>(buf: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if buf.len() < n {
        return Err(format!("AMF0: need {n} bytes, have {}", buf.len()));
    }
    let (a, b) = buf.split_at(n);
    *buf = b;
    Ok(a)
}

fn decode_props(buf: &mut &[u8], depth: usize) -> Result<Vec<(String, Amf)>, String> {
    let mut props = Vec::new();
    loop {
        let l = take(buf, 2)?;
        let klen = u16::from_be_bytes([l[0], l[1]]) as usize;
        if klen == 0 {
            if take(buf, 1)? != [9] {
                return Err("AMF0: empty key without object end".into());
            }
            return Ok(props);
        }
        let k = String::from_utf8_lossy(take(buf, klen)?).into_owned();
        let v = amf_decode(buf, depth + 1)?;
        props.push((k, v));
    }
}

pub fn amf_decode(buf: &mut &[u8], depth: usize) -> Result<Amf, String> {
    if depth > MAX_AMF_DEPTH {
        return Err("AMF0: nested too deep".into());
    }
    let marker = take(buf, 1)?[0];
    Ok(match marker {
        0 => {
            let b = take(buf, 8)?;
            Amf::Number(f64::from_be_bytes(b.try_into().map_err(|_| "AMF0 number")?))
        }
        1 => Amf::Bool(take(buf, 1)?[0] != 0),
        2 => {
            let l = take(buf, 2)?;
            let n = u16::from_be_bytes([l[0], l[1]]) as usize;
            Amf::Str(String::from_utf8_lossy(take(buf, n)?).into_owned())
        }
        3 => Amf::Object(decode_props(buf, depth)?),
        5 => Amf::Null,
        6 => Amf::Undefined,
        8 => {
            take(buf, 4)?;
            Amf::Array(decode_props(buf, depth)?)
        }
        12 => {
            let l = take(buf, 4)?;
            let n = u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize;
            Amf::Str(String::from_utf8_lossy(take(buf, n)?).into_owned())
        }
        m => return Err(format!("AMF0: unsupported marker {m}")),
    })
}

pub fn amf_decode_all(mut buf: &[u8]) -> Result<Vec<Amf>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        out.push(amf_decode(&mut buf, 0)?);
    }
    Ok(out)
}

/// The chunk basic header for any chunk stream id 2..=65599.
pub fn basic_header(fmt: u8, csid: u32) -> Vec<u8> {
    match csid {
        2..=63 => vec![(fmt << 6) | csid as u8],
        64..=319 => vec![fmt << 6, (csid - 64) as u8],
        _ => {
            let v = csid - 64;
            vec![(fmt << 6) | 1, (v & 0xff) as u8, (v >> 8) as u8]
        }
    }
}

/// Serialises one message as a type-0 chunk followed by type-3 continuations.
pub fn chunk_message(
    csid: u32,
    timestamp: u32,
    type_id: u8,
    msid: u32,
    payload: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    let mut out = basic_header(0, csid);
    let ext = timestamp >= 0xff_ffff;
    let ts_field = if ext { 0xff_ffff } else { timestamp };
    out.extend_from_slice(&ts_field.to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&msid.to_le_bytes());
    if ext {
        out.extend_from_slice(&timestamp.to_be_bytes());
    }
    let chunk_size = chunk_size.max(1);
    for (i, part) in payload.chunks(chunk_size).enumerate() {
        if i > 0 {
            out.extend_from_slice(&basic_header(3, csid));
            if ext {
                out.extend_from_slice(&timestamp.to_be_bytes());
            }
        }
        out.extend_from_slice(part);
    }
    out
}

pub fn command(name: &str, txn: f64, args: &[Amf]) -> Vec<u8> {
    let mut v = vec![Amf::Str(name.into()), Amf::Number(txn)];
    v.extend_from_slice(args);
    amf_encode_all(&v)
}

pub fn connect_command(app: &str, tc_url: &str) -> Vec<u8> {
    command(
        "connect",
        1.0,
        &[Amf::Object(vec![
            ("app".into(), Amf::Str(app.into())),
            ("type".into(), Amf::Str("nonprivate".into())),
            (
                "flashVer".into(),
                Amf::Str("FMLE/3.0 (compatible; test)".into()),
            ),
            ("tcUrl".into(), Amf::Str(tc_url.into())),
        ])],
    )
}

#[derive(Debug, Clone)]
pub struct Message {
    pub csid: u32,
    pub timestamp: u32,
    pub type_id: u8,
    pub msid: u32,
    pub payload: Vec<u8>,
}

impl Message {
    /// Decoded AMF0 command values (name, transaction id, args...), if this is a command.
    pub fn command(&self) -> Option<Vec<Amf>> {
        if self.type_id != MSG_COMMAND_AMF0 {
            return None;
        }
        amf_decode_all(&self.payload).ok()
    }

    pub fn command_name(&self) -> Option<String> {
        self.command()?.first()?.as_str().map(str::to_owned)
    }

    /// `info.code` of an onStatus/_result/_error command.
    pub fn status_code(&self) -> Option<String> {
        let values = self.command()?;
        values
            .iter()
            .skip(2)
            .find_map(|v| v.get("code").and_then(Amf::as_str).map(str::to_owned))
    }
}

#[derive(Default, Clone)]
struct ChunkState {
    timestamp: u32,
    delta: u32,
    length: usize,
    type_id: u8,
    msid: u32,
    partial: Vec<u8>,
    seen: bool,
}

/// Incremental decoder of the server's chunk stream (follows its Set Chunk Size).
#[derive(Default)]
pub struct ChunkReader {
    buf: Vec<u8>,
    chunk_size: usize,
    streams: HashMap<u32, ChunkState>,
}

impl ChunkReader {
    pub fn new() -> Self {
        ChunkReader {
            buf: Vec::new(),
            chunk_size: 128,
            streams: HashMap::new(),
        }
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Next complete message, `Ok(None)` if more bytes are needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, String> {
        loop {
            let b = &self.buf;
            let Some(&first) = b.first() else {
                return Ok(None);
            };
            let fmt = first >> 6;
            let (csid, mut pos) = match first & 0x3f {
                0 if b.len() >= 2 => (64 + b[1] as u32, 2),
                1 if b.len() >= 3 => (64 + b[1] as u32 + ((b[2] as u32) << 8), 3),
                0 | 1 => return Ok(None),
                c => (c as u32, 1),
            };
            let hlen = [11, 7, 3, 0][fmt as usize];
            if b.len() < pos + hlen {
                return Ok(None);
            }
            let h = &b[pos..pos + hlen];
            let mut st = self.streams.get(&csid).cloned().unwrap_or_default();
            if fmt != 0 && !st.seen {
                return Err(format!(
                    "fmt {fmt} chunk on csid {csid} with no previous header"
                ));
            }
            let ts_field = if fmt < 3 {
                u32::from_be_bytes([0, h[0], h[1], h[2]])
            } else {
                0
            };
            let new_message = st.partial.is_empty();
            if fmt <= 1 {
                st.length = u32::from_be_bytes([0, h[3], h[4], h[5]]) as usize;
                st.type_id = h[6];
                if st.length > MAX_MESSAGE {
                    return Err(format!("server message of {} bytes", st.length));
                }
            }
            if fmt == 0 {
                st.msid = u32::from_le_bytes([h[7], h[8], h[9], h[10]]);
            }
            pos += hlen;
            let ext = if fmt < 3 {
                ts_field == 0xff_ffff
            } else {
                st.timestamp >= 0xff_ffff || st.delta >= 0xff_ffff
            };
            let mut ts = ts_field;
            if ext {
                if b.len() < pos + 4 {
                    return Ok(None);
                }
                ts = u32::from_be_bytes([b[pos], b[pos + 1], b[pos + 2], b[pos + 3]]);
                pos += 4;
            }
            // A fmt 0/1 header inside a message may announce a length below what already
            // arrived: a protocol error of the server, not a panic of the test client.
            let left = st.length.checked_sub(st.partial.len()).ok_or_else(|| {
                format!(
                    "fmt {fmt} chunk on csid {csid} announces a {}-byte message with {} bytes \
                     of the current one already received",
                    st.length,
                    st.partial.len()
                )
            })?;
            let want = left.min(self.chunk_size);
            if b.len() < pos + want {
                return Ok(None);
            }
            if new_message {
                match fmt {
                    0 => {
                        st.timestamp = ts;
                        st.delta = 0;
                    }
                    1 | 2 => {
                        st.delta = ts;
                        st.timestamp = st.timestamp.wrapping_add(ts);
                    }
                    _ => st.timestamp = st.timestamp.wrapping_add(st.delta),
                }
            }
            st.seen = true;
            st.partial.extend_from_slice(&b[pos..pos + want]);
            pos += want;
            self.buf.drain(..pos);
            if st.partial.len() == st.length {
                let payload = std::mem::take(&mut st.partial);
                let msg = Message {
                    csid,
                    timestamp: st.timestamp,
                    type_id: st.type_id,
                    msid: st.msid,
                    payload,
                };
                self.streams.insert(csid, st);
                if msg.type_id == MSG_SET_CHUNK_SIZE && msg.payload.len() >= 4 {
                    let p = &msg.payload;
                    let size = u32::from_be_bytes([p[0], p[1], p[2], p[3]]) & 0x7fff_ffff;
                    if size == 0 || size as usize > MAX_MESSAGE {
                        return Err(format!("server announced chunk size {size}"));
                    }
                    self.chunk_size = size as usize;
                }
                return Ok(Some(msg));
            }
            self.streams.insert(csid, st);
        }
    }
}

/// How a wait on the server ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The server closed (EOF or reset).
    Yes,
    /// Still open when the deadline passed.
    TimedOut,
}

pub struct RawRtmp {
    pub stream: TcpStream,
    reader: ChunkReader,
    pub out_chunk_size: usize,
    pub received: Vec<Message>,
}

impl RawRtmp {
    pub fn connect(port: u16) -> RawRtmp {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect to RTMP port {port}: {e}"));
        stream.set_nodelay(true).ok();
        RawRtmp {
            stream,
            reader: ChunkReader::new(),
            out_chunk_size: 128,
            received: Vec::new(),
        }
    }

    pub fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// C0 (version 3) + C1 with a zero version field (which asks for the simple handshake);
    /// reads S0+S1+S2 and answers C2 = S1.
    pub fn handshake(&mut self) -> io::Result<()> {
        let mut c0c1 = vec![3u8];
        let mut c1 = vec![0u8; 1536];
        for (i, b) in c1.iter_mut().enumerate().skip(8) {
            *b = (i * 7 + 13) as u8;
        }
        c0c1.extend_from_slice(&c1);
        self.send(&c0c1)?;
        let mut s = vec![0u8; 3073];
        self.stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        self.stream.read_exact(&mut s)?;
        if s[0] != 3 {
            return Err(io::Error::other(format!("S0 = {}", s[0])));
        }
        if s[1537..] != c1[..] {
            return Err(io::Error::other("S2 does not echo C1"));
        }
        let s1 = s[1..1537].to_vec();
        self.send(&s1)
    }

    pub fn send_message(
        &mut self,
        csid: u32,
        type_id: u8,
        msid: u32,
        payload: &[u8],
    ) -> io::Result<()> {
        let bytes = chunk_message(csid, 0, type_id, msid, payload, self.out_chunk_size);
        self.send(&bytes)
    }

    pub fn set_chunk_size(&mut self, size: u32) -> io::Result<()> {
        self.send_message(2, MSG_SET_CHUNK_SIZE, 0, &size.to_be_bytes())?;
        if size > 0 && size <= 0x7fff_ffff {
            self.out_chunk_size = size as usize;
        }
        Ok(())
    }

    /// Next message from the server, or `Err` on close/timeout/undecodable bytes.
    pub fn read_message(&mut self, timeout: Duration) -> Result<Message, String> {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16384];
        loop {
            if let Some(m) = self.reader.next_message()? {
                self.received.push(m.clone());
                return Ok(m);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err("timed out waiting for a message".into());
            }
            self.stream
                .set_read_timeout(Some(left))
                .map_err(|e| e.to_string())?;
            match self.stream.read(&mut buf) {
                Ok(0) => return Err("connection closed by the server".into()),
                Ok(n) => self.reader.push(&buf[..n]),
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Err("timed out waiting for a message".into())
                }
                Err(e) => return Err(format!("read error: {e}")),
            }
        }
    }

    /// Reads until a command whose name is one of `names`; other messages are kept in `received`.
    pub fn wait_command(&mut self, names: &[&str], timeout: Duration) -> Result<Message, String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self.read_message(left)?;
            if let Some(n) = m.command_name() {
                if names.contains(&n.as_str()) {
                    return Ok(m);
                }
            }
        }
    }

    /// connect(app) and wait for `_result`.
    pub fn connect_app(&mut self, port: u16, app: &str) -> Result<Message, String> {
        let tc_url = format!("rtmp://127.0.0.1:{port}/{app}");
        self.send_message(3, MSG_COMMAND_AMF0, 0, &connect_command(app, &tc_url))
            .map_err(|e| e.to_string())?;
        let m = self.wait_command(&["_result", "_error"], Duration::from_secs(5))?;
        match m.command_name().as_deref() {
            Some("_result") => Ok(m),
            _ => Err(format!("connect refused: {:?}", m.command())),
        }
    }

    /// createStream, returns the message stream id.
    pub fn create_stream(&mut self) -> Result<u32, String> {
        self.send_message(
            3,
            MSG_COMMAND_AMF0,
            0,
            &command("createStream", 2.0, &[Amf::Null]),
        )
        .map_err(|e| e.to_string())?;
        let m = self.wait_command(&["_result", "_error"], Duration::from_secs(5))?;
        match m.command().as_deref() {
            Some([Amf::Str(n), _, _, Amf::Number(id), ..]) if n == "_result" => Ok(*id as u32),
            other => Err(format!("createStream failed: {other:?}")),
        }
    }

    /// publish(name) and return the first onStatus code.
    pub fn publish(&mut self, msid: u32, name: &str) -> Result<String, String> {
        let args = [Amf::Null, Amf::Str(name.into()), Amf::Str("live".into())];
        self.send_message(4, MSG_COMMAND_AMF0, msid, &command("publish", 3.0, &args))
            .map_err(|e| e.to_string())?;
        let m = self.wait_command(&["onStatus"], Duration::from_secs(5))?;
        m.status_code()
            .ok_or_else(|| format!("onStatus without code: {:?}", m.command()))
    }

    /// Sends play(name); the replies are read with `read_message`/`wait_closed`.
    pub fn play(&mut self, msid: u32, name: &str) -> Result<(), String> {
        let args = [Amf::Null, Amf::Str(name.into()), Amf::Number(-2.0)];
        self.send_message(4, MSG_COMMAND_AMF0, msid, &command("play", 4.0, &args))
            .map_err(|e| e.to_string())
    }

    /// Reads and discards until the server closes or `timeout` passes.
    pub fn wait_closed(&mut self, timeout: Duration) -> Closed {
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 16384];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Closed::TimedOut;
            }
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return Closed::Yes;
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Closed::Yes,
                Ok(n) => {
                    self.reader.push(&buf[..n]);
                    // Keep whatever decodes, so a test can look at what came before the close.
                    while let Ok(Some(m)) = self.reader.next_message() {
                        self.received.push(m);
                    }
                }
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.kind() == io::ErrorKind::TimedOut =>
                {
                    return Closed::TimedOut
                }
                Err(_) => return Closed::Yes,
            }
        }
    }

    /// All onStatus codes seen so far.
    pub fn status_codes(&self) -> Vec<String> {
        self.received
            .iter()
            .filter_map(Message::status_code)
            .collect()
    }
}
