//! FLV recording (`flv_archive`): one file per publish session, written by one recorder
//! thread with blocking file I/O, fed by a sink on the stream's owner shard through a bounded
//! channel, so the disk never slows a stream down.
//!
//! The file starts with our own `onMetaData` (the publisher's properties, with `duration` and
//! `filesize` moved first) whose two numbers, and the header's track flags, are patched in
//! place when the recording ends.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::engine::{PublishInfo, StreamSink};
use crate::media::{Packet, PacketKind};
use crate::rtmp::amf0::{self, Value};

use super::{encode_tag, file_header, FILE_HEADER_LEN, TAG_HEADER_LEN};

/// Tags queued for the recorder thread at most (all recordings together). At a few hundred
/// tags per second per stream this is seconds of slack for a slow disk.
const CHANNEL_TAGS: usize = 16 * 1024;
const HEADER_FLAGS_POS: u64 = 4;
const TYPE_DATA_AMF0: u8 = 18;

/// The recording's `onMetaData` body and where its `duration` and `filesize` doubles are.
pub struct RecordingMeta {
    pub body: Bytes,
    pub duration_pos: usize,
    pub filesize_pos: usize,
}

/// Builds the recording's metadata from the publisher's (if any): `duration` and `filesize`
/// first, as numbers, then every other property of the publisher's object in order.
pub fn recording_metadata(publisher: Option<&[u8]>) -> RecordingMeta {
    let mut props: Vec<(String, Value)> = vec![
        ("duration".into(), Value::Number(0.0)),
        ("filesize".into(), Value::Number(0.0)),
    ];
    if let Some(payload) = publisher {
        if let Ok(values) = amf0::decode_all(payload) {
            if let Some(Value::EcmaArray(p) | Value::Object(p)) = values.get(1) {
                props.extend(
                    p.iter()
                        .filter(|(k, _)| k != "duration" && k != "filesize")
                        .cloned(),
                );
            }
        }
    }
    let mut out = BytesMut::new();
    amf0::encode(&mut out, &Value::String("onMetaData".into()));
    let array_start = out.len();
    amf0::encode(&mut out, &Value::EcmaArray(props));
    // marker(1) + count(4), then key "duration" (2 + 8) and the number marker (1).
    let duration_pos = array_start + 5 + 10 + 1;
    // after the duration double: key "filesize" (2 + 8) and the number marker (1).
    let filesize_pos = duration_pos + 8 + 10 + 1;
    RecordingMeta {
        body: out.freeze(),
        duration_pos,
        filesize_pos,
    }
}

/// One FLV file being written. Generic over the output so it is tested on memory.
pub struct FlvFile<W: Write + Seek> {
    out: W,
    written: u64,
    /// File offsets of the metadata's duration and filesize doubles, once written.
    patch: Option<(u64, u64)>,
    has_audio: bool,
    has_video: bool,
    /// The latest media timestamp, in the wrapping order of stream timestamps (they wrap
    /// modulo 2^32 after 49.7 days): the file's `duration`.
    last_ts: Option<u32>,
}

impl<W: Write + Seek> FlvFile<W> {
    /// Writes the file header (both track flags until the end says otherwise).
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(&file_header(true, true))?;
        Ok(FlvFile {
            out,
            written: FILE_HEADER_LEN as u64,
            patch: None,
            has_audio: false,
            has_video: false,
            last_ts: None,
        })
    }

    pub fn write_packet(&mut self, p: &Packet) -> io::Result<()> {
        if self.patch.is_none() {
            let publisher =
                (p.kind == PacketKind::Meta && p.is_on_metadata()).then_some(&p.payload[..]);
            let meta = recording_metadata(publisher);
            let body_at = self.written + TAG_HEADER_LEN as u64;
            self.patch = Some((
                body_at + meta.duration_pos as u64,
                body_at + meta.filesize_pos as u64,
            ));
            self.write_tag(TYPE_DATA_AMF0, p.timestamp, &meta.body)?;
            if publisher.is_some() {
                return Ok(());
            }
        }
        match p.kind {
            PacketKind::Audio => self.has_audio = true,
            PacketKind::Video => self.has_video = true,
            PacketKind::Meta => {}
        }
        if p.kind != PacketKind::Meta {
            // Later when less than 2^31 ms ahead in wrapping arithmetic; a plain `max` would
            // stick at the last timestamp before a wrap.
            let later = match self.last_ts {
                Some(last) => p.timestamp.wrapping_sub(last) as i32 > 0,
                None => true,
            };
            if later {
                self.last_ts = Some(p.timestamp);
            }
        }
        self.write_tag(p.type_id(), p.timestamp, &p.payload)
    }

    fn write_tag(&mut self, type_id: u8, ts: u32, body: &[u8]) -> io::Result<()> {
        let mut buf = BytesMut::new();
        encode_tag(&mut buf, type_id, ts, body);
        self.out.write_all(&buf)?;
        self.written += buf.len() as u64;
        Ok(())
    }

    /// Patches duration (seconds), filesize (bytes) and the track flags; returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        if let Some((duration_pos, filesize_pos)) = self.patch {
            self.out.seek(SeekFrom::Start(duration_pos))?;
            self.out
                .write_all(&(f64::from(self.last_ts.unwrap_or(0)) / 1000.0).to_be_bytes())?;
            self.out.seek(SeekFrom::Start(filesize_pos))?;
            self.out.write_all(&(self.written as f64).to_be_bytes())?;
        }
        if self.has_audio || self.has_video {
            let flags = file_header(self.has_audio, self.has_video)[HEADER_FLAGS_POS as usize];
            self.out.seek(SeekFrom::Start(HEADER_FLAGS_POS))?;
            self.out.write_all(&[flags])?;
        }
        self.out.seek(SeekFrom::End(0))?;
        self.out.flush()?;
        Ok(self.out)
    }

    pub fn bytes_written(&self) -> u64 {
        self.written
    }
}

/// Keeps a path component from escaping the recording directory.
fn safe_component(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with('.') {
        out.insert(0, '_');
    }
    out
}

/// `<dir>/<app>/<room>_<unix>.flv` (with `_<n>` before `.flv` when that name is taken).
pub fn recording_dir_and_stem(dir: &Path, app: &str, room: &str, unix: u64) -> (PathBuf, String) {
    (
        dir.join(safe_component(app)),
        format!("{}_{unix}", safe_component(room)),
    )
}

enum Cmd {
    Open {
        id: u64,
        key: String,
        dir: PathBuf,
        stem: String,
    },
    Packet {
        id: u64,
        packet: Packet,
    },
}

/// Sent on the unbounded side channel so it is never lost.
enum Side {
    /// How many packets a sink queued, so the thread finishes its file after exactly those.
    End { id: u64, sent: u64 },
    /// The server is stopping: write what was queued, finish every file, then say so.
    Stop(Sender<()>),
}

struct Recording {
    key: String,
    path: PathBuf,
    /// `None` after a disk error: later packets of this recording are ignored.
    file: Option<FlvFile<BufWriter<File>>>,
    received: u64,
    end_after: Option<u64>,
}

/// Where sinks send their packets; one recorder thread per process.
#[derive(Clone)]
pub struct RecorderHandle {
    data: Sender<Cmd>,
    end: Sender<Side>,
}

static RECORDER: OnceLock<RecorderHandle> = OnceLock::new();
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl RecorderHandle {
    /// The process's recorder thread, started on first use.
    pub fn global() -> RecorderHandle {
        RECORDER
            .get_or_init(|| {
                let (data, data_rx) = crossbeam_channel::bounded(CHANNEL_TAGS);
                let (end, end_rx) = crossbeam_channel::unbounded();
                std::thread::Builder::new()
                    .name("flv-recorder".into())
                    .spawn(move || recorder_thread(data_rx, end_rx))
                    .expect("spawn the FLV recorder thread");
                RecorderHandle { data, end }
            })
            .clone()
    }

    /// At shutdown, after the shards stopped: writes what the recorder thread still has
    /// queued and finishes every open recording (patched header and metadata), waiting at most
    /// `limit`. False when that did not happen in time. A no-op when nothing was recorded.
    pub fn shutdown(limit: std::time::Duration) -> bool {
        let Some(h) = RECORDER.get() else {
            return true;
        };
        let (done, done_rx) = crossbeam_channel::bounded(1);
        if h.end.send(Side::Stop(done)).is_err() {
            return true;
        }
        done_rx.recv_timeout(limit).is_ok()
    }

    /// A sink recording one publish session under `dir`.
    pub fn sink(&self, dir: &Path, info: &PublishInfo) -> RecordSink {
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (dir, stem) = recording_dir_and_stem(dir, &info.app, &info.room, unix);
        let mut sink = RecordSink {
            handle: self.clone(),
            id,
            key: info.key.to_string(),
            sent: 0,
            dropped: false,
            opened: false,
        };
        sink.opened = sink
            .handle
            .data
            .try_send(Cmd::Open {
                id,
                key: sink.key.clone(),
                dir,
                stem,
            })
            .is_ok();
        if !sink.opened {
            tracing::warn!(stream = %sink.key, "flv recording not started: recorder queue full");
        }
        sink
    }
}

/// The owner-shard side of one recording: never blocks, drops (and says so once) when the
/// recorder thread is behind.
pub struct RecordSink {
    handle: RecorderHandle,
    id: u64,
    key: String,
    sent: u64,
    dropped: bool,
    opened: bool,
}

impl StreamSink for RecordSink {
    fn on_packet(&mut self, packet: &Packet) {
        if !self.opened {
            return;
        }
        let cmd = Cmd::Packet {
            id: self.id,
            packet: packet.clone(),
        };
        match self.handle.data.try_send(cmd) {
            Ok(()) => self.sent += 1,
            Err(TrySendError::Full(_)) => {
                if !self.dropped {
                    self.dropped = true;
                    tracing::warn!(stream = %self.key, "flv recording: disk too slow, dropping packets");
                }
            }
            Err(TrySendError::Disconnected(_)) => self.opened = false,
        }
    }

    fn on_end(&mut self) {
        if self.opened {
            self.opened = false;
            let _ = self.handle.end.send(Side::End {
                id: self.id,
                sent: self.sent,
            });
        }
    }
}

impl Drop for RecordSink {
    fn drop(&mut self) {
        self.on_end();
    }
}

fn open_file(dir: &Path, stem: &str) -> io::Result<(PathBuf, File)> {
    fs::create_dir_all(dir)?;
    for n in 0..1000 {
        let name = if n == 0 {
            format!("{stem}.flv")
        } else {
            format!("{stem}_{n}.flv")
        };
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        "no free file name",
    ))
}

fn recorder_thread(data: Receiver<Cmd>, end: Receiver<Side>) {
    let mut recs: HashMap<u64, Recording> = HashMap::new();
    let stopped = loop {
        crossbeam_channel::select! {
            recv(data) -> cmd => match cmd {
                Ok(cmd) => on_cmd(&mut recs, cmd),
                Err(_) => break None,
            },
            recv(end) -> msg => match msg {
                Ok(Side::End { id, sent }) => on_end(&mut recs, id, sent),
                Ok(Side::Stop(done)) => break Some(done),
                Err(_) => break None,
            },
        }
    };
    // Whatever the shards queued before they stopped is written before the files are closed.
    for cmd in data.try_iter() {
        on_cmd(&mut recs, cmd);
    }
    for msg in end.try_iter() {
        if let Side::End { id, sent } = msg {
            on_end(&mut recs, id, sent);
        }
    }
    for (_, r) in recs.drain() {
        finish(Some(r));
    }
    if let Some(done) = stopped {
        let _ = done.send(());
    }
}

fn on_cmd(recs: &mut HashMap<u64, Recording>, cmd: Cmd) {
    match cmd {
        Cmd::Open { id, key, dir, stem } => {
            let (path, file) = match open_file(&dir, &stem)
                .and_then(|(p, f)| Ok((p, FlvFile::new(BufWriter::with_capacity(256 * 1024, f))?)))
            {
                Ok((p, f)) => {
                    tracing::info!(stream = %key, path = %p.display(), "flv recording start");
                    (p, Some(f))
                }
                Err(e) => {
                    tracing::error!(stream = %key, dir = %dir.display(), "flv recording failed: {e}");
                    (dir.join(&stem), None)
                }
            };
            recs.insert(
                id,
                Recording {
                    key,
                    path,
                    file,
                    received: 0,
                    end_after: None,
                },
            );
        }
        Cmd::Packet { id, packet } => {
            let Some(r) = recs.get_mut(&id) else { return };
            r.received += 1;
            if let Some(f) = r.file.as_mut() {
                if let Err(e) = f.write_packet(&packet) {
                    tracing::error!(stream = %r.key, path = %r.path.display(), "flv recording stopped: {e}");
                    r.file = None;
                }
            }
            if r.end_after.is_some_and(|n| r.received >= n) {
                finish(recs.remove(&id));
            }
        }
    }
}

fn on_end(recs: &mut HashMap<u64, Recording>, id: u64, sent: u64) {
    if let Some(r) = recs.get_mut(&id) {
        if r.received >= sent {
            finish(recs.remove(&id));
        } else {
            r.end_after = Some(sent);
        }
    }
}

fn finish(rec: Option<Recording>) {
    let Some(r) = rec else { return };
    let Some(f) = r.file else { return };
    let size = f.bytes_written();
    match f.finish() {
        Ok(_) => {
            tracing::info!(stream = %r.key, path = %r.path.display(), bytes = size, "flv recording end")
        }
        Err(e) => {
            tracing::error!(stream = %r.key, path = %r.path.display(), "flv recording not finalised: {e}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn on_metadata(props: Vec<(String, Value)>) -> Bytes {
        let mut out = BytesMut::new();
        amf0::encode(&mut out, &Value::String("onMetaData".into()));
        amf0::encode(&mut out, &Value::EcmaArray(props));
        out.freeze()
    }

    fn number_at(b: &[u8], pos: usize) -> f64 {
        f64::from_be_bytes(b[pos..pos + 8].try_into().unwrap())
    }

    #[test]
    fn metadata_positions_point_at_the_doubles() {
        let publisher = on_metadata(vec![
            ("width".into(), Value::Number(640.0)),
            ("duration".into(), Value::Number(99.0)),
            ("encoder".into(), Value::String("x".into())),
        ]);
        let m = recording_metadata(Some(&publisher));
        assert_eq!(m.body[m.duration_pos - 1], 0x00);
        assert_eq!(&m.body[m.duration_pos - 9..m.duration_pos - 1], b"duration");
        assert_eq!(&m.body[m.filesize_pos - 9..m.filesize_pos - 1], b"filesize");
        let values = amf0::decode_all(&m.body).unwrap();
        let Value::EcmaArray(props) = &values[1] else {
            panic!("not an ECMA array: {values:?}")
        };
        let keys: Vec<&str> = props.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["duration", "filesize", "width", "encoder"]);
        let plain = recording_metadata(None);
        assert_eq!(plain.duration_pos, m.duration_pos);
        assert_eq!(number_at(&plain.body, plain.filesize_pos), 0.0);
    }

    fn pkt(type_id: u8, ts: u32, body: &[u8]) -> Packet {
        Packet::from_message(type_id, ts, Bytes::copy_from_slice(body)).unwrap()
    }

    #[test]
    fn file_is_patched_at_the_end() {
        let meta = on_metadata(vec![("videocodecid".into(), Value::Number(7.0))]);
        let mut f = FlvFile::new(Cursor::new(Vec::new())).unwrap();
        f.write_packet(&pkt(18, 0, &meta)).unwrap();
        f.write_packet(&pkt(9, 0, &[0x17, 0, 0, 0, 0, 1])).unwrap();
        f.write_packet(&pkt(9, 2500, &[0x27, 1, 0, 0, 0, 2]))
            .unwrap();
        let written = f.bytes_written();
        let bytes = f.finish().unwrap().into_inner();
        assert_eq!(bytes.len() as u64, written);
        assert_eq!(&bytes[..3], b"FLV");
        assert_eq!(bytes[4], 0x01, "video only");
        let m = recording_metadata(Some(&meta));
        let body_at = FILE_HEADER_LEN + TAG_HEADER_LEN;
        assert_eq!(bytes[FILE_HEADER_LEN], 18);
        assert_eq!(number_at(&bytes, body_at + m.duration_pos), 2.5);
        assert_eq!(number_at(&bytes, body_at + m.filesize_pos), written as f64);
        // The media tags follow unchanged.
        let tail = &bytes[body_at + m.body.len() + 4..];
        let mut expect = BytesMut::new();
        encode_tag(&mut expect, 9, 0, &[0x17, 0, 0, 0, 0, 1]);
        encode_tag(&mut expect, 9, 2500, &[0x27, 1, 0, 0, 0, 2]);
        assert_eq!(tail, &expect[..]);
    }

    #[test]
    fn own_metadata_when_publisher_sends_none() {
        let mut f = FlvFile::new(Cursor::new(Vec::new())).unwrap();
        f.write_packet(&pkt(8, 40, &[0xaf, 1, 9])).unwrap();
        let bytes = f.finish().unwrap().into_inner();
        assert_eq!(bytes[4], 0x04, "audio only");
        assert_eq!(bytes[FILE_HEADER_LEN], 18);
        let m = recording_metadata(None);
        let audio_at = FILE_HEADER_LEN + TAG_HEADER_LEN + m.body.len() + 4;
        assert_eq!(bytes[audio_at], 8);
        assert_eq!(
            number_at(&bytes, FILE_HEADER_LEN + TAG_HEADER_LEN + m.duration_pos),
            0.04
        );
    }

    #[test]
    fn duration_follows_timestamps_across_the_wrap() {
        let duration = |stamps: &[u32]| {
            let mut f = FlvFile::new(Cursor::new(Vec::new())).unwrap();
            for &ts in stamps {
                f.write_packet(&pkt(8, ts, &[0xaf, 1, 9])).unwrap();
            }
            let bytes = f.finish().unwrap().into_inner();
            let m = recording_metadata(None);
            number_at(&bytes, FILE_HEADER_LEN + TAG_HEADER_LEN + m.duration_pos)
        };
        // the last tag's timestamp, as before, even when it is behind a little (interleaving)
        assert_eq!(duration(&[0, 40, 30]), 0.04);
        // the first timestamp of a session that starts late on the timeline counts
        assert_eq!(duration(&[0x9000_0000]), f64::from(0x9000_0000u32) / 1000.0);
        // after the wrap the file's timeline is the wrapped one, not stuck before it
        assert_eq!(duration(&[u32::MAX - 20, u32::MAX - 10, 30]), 0.03);
    }

    #[test]
    fn names_stay_inside_the_directory() {
        let (d, stem) = recording_dir_and_stem(Path::new("/r"), "live", "../../etc/x", 7);
        assert_eq!(d, Path::new("/r/live"));
        assert_eq!(stem, "_.._.._etc_x_7");
        let (d, _) = recording_dir_and_stem(Path::new("/r"), "..", "a", 7);
        assert_eq!(d, Path::new("/r/_.."));
    }

    #[test]
    fn open_failure_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"x").unwrap();
        assert!(open_file(&blocker.join("sub"), "a_1").is_err());
        let (p1, _) = open_file(&dir.path().join("live"), "a_1").unwrap();
        let (p2, _) = open_file(&dir.path().join("live"), "a_1").unwrap();
        assert_ne!(p1, p2);
    }
}
