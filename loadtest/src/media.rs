//! Test media: H.264 + AAC FLV made by ffmpeg from lavfi sources, cached under target/.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::flvparse::{read_file, Tag};

/// Seconds of media in the file; publishers loop it.
const LENGTH_SECS: u32 = 30;

/// Path of the cached file for this bitrate and GOP, made on first use.
pub fn ensure(dir: &Path, kbit: u32, gop_secs: u32) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(format!("testsrc2-{kbit}k-gop{gop_secs}.flv"));
    if path.exists() {
        return Ok(path);
    }
    // Concurrent makers (parallel tests) each write their own file; the first rename wins and
    // the others find the finished file.
    static MAKER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let maker = MAKER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("{}-{maker}.tmp.flv", std::process::id()));
    let video_kbit = kbit.saturating_sub(64).max(100);
    let status = Command::new("ffmpeg")
        .args(["-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=1280x720:rate=25")
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100"])
        .args(["-t", &LENGTH_SECS.to_string()])
        .args(["-c:v", "libx264", "-preset", "veryfast", "-bf", "0"])
        .args(["-g", &(25 * gop_secs).to_string()])
        .args([
            "-b:v",
            &format!("{video_kbit}k"),
            "-maxrate",
            &format!("{video_kbit}k"),
        ])
        .args(["-bufsize", &format!("{video_kbit}k")])
        .args(["-c:a", "aac", "-b:a", "64k", "-f", "flv"])
        .arg(&tmp)
        .status()
        .map_err(|e| format!("cannot run ffmpeg: {e}"))?;
    if !status.success() {
        return Err(format!("ffmpeg failed making {}", path.display()));
    }
    if let Err(e) = std::fs::rename(&tmp, &path) {
        let _ = std::fs::remove_file(&tmp);
        if !path.exists() {
            return Err(format!("{}: {e}", path.display()));
        }
    }
    Ok(path)
}

pub fn load(path: &Path) -> Result<Vec<Tag>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_file(&bytes)
}
