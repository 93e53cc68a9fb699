//! `flv_archive`: a full publish is recorded byte for byte, with duration and filesize patched
//! into the metadata; a directory that cannot be written stops the recording, not the stream.

mod common;

use common::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// The recordings under `dir/live`, waiting up to a few seconds for `n` finished ones (the
/// recorder thread finalises a file shortly after the publisher left).
fn recordings(dir: &Path, n: usize) -> Vec<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut files: Vec<PathBuf> = fs::read_dir(dir.join("live"))
            .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        if files.len() >= n || Instant::now() > deadline {
            return files;
        }
        sleep(Duration::from_millis(100));
    }
}

/// How long a server stopped mid-recording may take to exit: the shards stop, then the
/// recordings are finalised (bounded by 10 s in the server).
const STOP_SLACK: Duration = Duration::from_secs(20);

/// The value of a Number property in the AMF0 body of the first (script) tag.
fn meta_number(data: &[u8], name: &str) -> Option<f64> {
    let mut key = (name.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(name.as_bytes());
    let at = data.windows(key.len()).position(|w| w == key)? + key.len();
    (data.get(at) == Some(&0)).then(|| f64::from_be_bytes(data[at + 1..at + 9].try_into().unwrap()))
}

#[test]
fn full_publish_is_recorded_exactly_and_finalised() {
    let flv_dir = scratch_dir();
    let dir_arg = flv_dir.path().to_str().unwrap().to_string();
    let s = Server::start(&["--flv_archive", "--flv_dir", &dir_arg, "--shards", "2"]);
    let key = s.key_for("movie");
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    publisher.wait_success(PUBLISH_TIMEOUT);
    let files = recordings(flv_dir.path(), 1);
    assert_eq!(
        files.len(),
        1,
        "one file per publish: {files:?}\n{}",
        s.log()
    );
    let name = files[0].file_name().unwrap().to_str().unwrap().to_string();
    assert!(
        name.starts_with("movie_") && name.ends_with(".flv"),
        "name {name}"
    );
    // Wait for the end-of-recording patch (filesize set). Until then the recorder may be
    // mid-write (its buffer flushes at any byte, even inside a tag), so a file that does not
    // parse yet is "not yet"; one that never parses fails at the bound.
    let deadline = Instant::now() + Duration::from_secs(10);
    let bytes = loop {
        let bytes = fs::read(&files[0]).unwrap();
        let state = match flv::parse_flv(&bytes) {
            Ok(tags) if tags.is_empty() => "no tags yet".to_string(),
            Ok(tags) => match meta_number(&tags[0].data, "filesize") {
                Some(f) if f > 0.0 => break bytes,
                f => format!("filesize {f:?}"),
            },
            Err(e) => format!("not FLV (yet): {e}"),
        };
        assert!(
            Instant::now() < deadline,
            "recording never finalised ({state})\n{}",
            s.log()
        );
        sleep(Duration::from_millis(100));
    };
    assert_eq!(&bytes[..5], b"FLV\x01\x05");
    let tags = flv::parse_flv(&bytes).unwrap();
    assert_eq!(tags[0].kind, flv::TAG_SCRIPT);
    assert!(tags[0].data.windows(10).any(|w| w == b"onMetaData"));
    assert_eq!(
        meta_number(&tags[0].data, "filesize"),
        Some(bytes.len() as f64)
    );
    let duration = meta_number(&tags[0].data, "duration").unwrap();
    let source = media_tags(Media::Av);
    let last_ts = source.iter().map(|t| t.timestamp).max().unwrap() as f64 / 1000.0;
    assert!(
        (duration - last_ts).abs() < 0.2,
        "duration {duration} vs source {last_ts}"
    );
    let m = flv::compare_media(&source, &tags, false).unwrap_or_else(|e| panic!("recording: {e}"));
    assert_eq!((m.video_start, m.audio_start, m.offset), (0, 0, 0));
    // The recorder logs the end just after patching the file: give it a moment.
    s.wait_log("flv recording end", Duration::from_secs(10));
}

#[test]
fn unwritable_directory_keeps_the_stream_playing() {
    let base = scratch_dir();
    // A regular file where the directory should be: create_dir_all fails even for root.
    let blocker = base.path().join("not-a-dir");
    fs::write(&blocker, b"x").unwrap();
    let dir_arg = blocker.join("flv").to_str().unwrap().to_string();
    let s = Server::start(&["--flv_archive", "--flv_dir", &dir_arg]);
    let out = scratch_dir();
    let key = s.key_for("movie");
    let mut player = Recorder::start(
        PlayerKind::Ffmpeg,
        &s.rtmp_url("live/movie"),
        out.path(),
        "player",
    );
    wait_players(&s, 1);
    let mut publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    publisher.wait_success(PUBLISH_TIMEOUT);
    assert_recording(&mut player, &media_tags(Media::Av), true);
    let log = s.log();
    assert_eq!(
        log.matches("flv recording failed").count(),
        1,
        "one log line for the failed recording:\n{log}"
    );
}

#[test]
fn recording_in_progress_is_finalised_when_the_server_stops() {
    let flv_dir = scratch_dir();
    let dir_arg = flv_dir.path().to_str().unwrap().to_string();
    let mut s = Server::start(&["--flv_archive", "--flv_dir", &dir_arg]);
    let key = s.key_for("movie");
    let _publisher = ffmpeg_publish(&media(Media::Av), &s.rtmp_url(&format!("live/{key}")));
    let files = recordings(flv_dir.path(), 1);
    assert_eq!(files.len(), 1, "recording started: {files:?}\n{}", s.log());
    // Mid-stream (8 s of media), the server is stopped: once the file holds as many bytes as
    // the source up to its 50th video frame (the recorder writes through a buffer, so the file
    // lags what arrived), rather than after a guess at how far the publish got by then.
    let source = media_tags(Media::Av);
    let mut want_bytes = 13; // FLV header and PreviousTagSize0
    let mut video = 0;
    for t in &source {
        want_bytes += 11 + t.data.len() as u64 + 4;
        video += usize::from(t.kind == flv::TAG_VIDEO && t.is_media_frame());
        if video == 50 {
            break;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let len = fs::metadata(&files[0]).map(|m| m.len()).unwrap_or(0);
        if len >= want_bytes {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{len} of {want_bytes} bytes written to {} within 20 s\n{}",
            files[0].display(),
            s.log()
        );
        sleep(Duration::from_millis(20));
    }
    // SIGTERM; recordings are finalised at shutdown (the server allows that up to 10 s), so
    // wait for the exit with more slack than the harness's `stop` bound.
    s.signal(libc::SIGTERM);
    let st = s.wait_exit(STOP_SLACK);
    assert_eq!(
        st.and_then(|st| st.code()),
        Some(0),
        "SIGTERM while recording: exit {st:?}\n{}",
        s.log()
    );

    let bytes = fs::read(&files[0]).unwrap();
    let tags = flv::parse_flv(&bytes).expect("the stopped recording is whole FLV");
    assert_eq!(&bytes[..5], b"FLV\x01\x05", "track flags patched");
    assert_eq!(
        meta_number(&tags[0].data, "filesize"),
        Some(bytes.len() as f64),
        "filesize patched"
    );
    let frames = |tags: &[flv::Tag], kind: u8| -> Vec<Vec<u8>> {
        tags.iter()
            .filter(|t| t.kind == kind && t.is_media_frame())
            .map(|t| t.data.clone())
            .collect()
    };
    let (got, src) = (
        frames(&tags, flv::TAG_VIDEO),
        frames(&source, flv::TAG_VIDEO),
    );
    // About 3 s of the 25 fps source arrived before the stop; all of it is in the file.
    assert!(
        got.len() >= 40 && got.len() < src.len(),
        "{} of {} video frames recorded",
        got.len(),
        src.len()
    );
    assert!(
        got.iter().zip(&src).all(|(a, b)| a == b),
        "the recording is the start of the source, byte for byte"
    );
    let last_ts = tags.iter().map(|t| t.timestamp).max().unwrap() as f64 / 1000.0;
    let duration = meta_number(&tags[0].data, "duration").unwrap();
    assert!(
        (duration - last_ts).abs() < 0.2,
        "duration {duration} vs last tag {last_ts}"
    );
}
