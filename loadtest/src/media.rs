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
    let tmp = path.with_extension("tmp.flv");
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
    std::fs::rename(&tmp, &path).map_err(|e| e.to_string())?;
    Ok(path)
}

pub fn load(path: &Path) -> Result<Vec<Tag>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    read_file(&bytes)
}
