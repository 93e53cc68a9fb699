//! Starting the server under test on free loopback ports and stopping it by PID: our release
//! binary, nginx with Debian's RTMP module (one worker), or the Go livego from a given path.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::free_port;

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    LivegoRs(PathBuf),
    NginxRtmp,
    Livego(PathBuf),
}

impl Kind {
    pub fn parse(s: &str, workspace: &Path) -> Result<Kind, String> {
        match s.split_once('=') {
            None if s == "livego-rs" => Ok(Kind::LivegoRs(workspace.join("target/release/livego"))),
            Some(("livego-rs", p)) => Ok(Kind::LivegoRs(p.into())),
            None if s == "nginx-rtmp" => Ok(Kind::NginxRtmp),
            Some(("livego", p)) => Ok(Kind::Livego(p.into())),
            None if s == "livego" => Err("livego needs the Go binary: livego=PATH".into()),
            _ => Err(format!(
                "unknown server '{s}' (livego-rs, nginx-rtmp, livego=PATH)"
            )),
        }
    }

    /// The name in reports. A binary not called `livego` is named after its file as well, so
    /// two builds compared in one run (`livego-rs=a/livego-base,livego-rs=b/livego-new`) keep
    /// apart.
    pub fn name(&self) -> String {
        let labelled = |kind: &str, bin: &Path| match bin.file_name().and_then(|f| f.to_str()) {
            Some("livego") | None => kind.to_string(),
            Some(file) => format!("{kind}:{file}"),
        };
        match self {
            Kind::LivegoRs(bin) => labelled("livego-rs", bin),
            Kind::NginxRtmp => "nginx-rtmp".into(),
            Kind::Livego(bin) => labelled("livego", bin),
        }
    }
}

pub struct Server {
    pub kind: Kind,
    child: Child,
    pub rtmp_port: u16,
    pub http_port: Option<u16>,
    api_port: Option<u16>,
    _dir: tempfile::TempDir,
}

fn wait_port(port: u16, timeout: Duration) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Blocking GET of a small JSON document.
fn http_get(port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default())
}

const NGINX_TEMPLATE: &str = include_str!("../nginx/nginx.conf");
const NGINX_MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

impl Server {
    pub fn start(kind: Kind) -> Result<Server, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let rtmp_port = free_port();
        let log =
            std::fs::File::create(dir.path().join("server.log")).map_err(|e| e.to_string())?;
        let (mut cmd, http_port, api_port) = match &kind {
            Kind::LivegoRs(bin) => {
                let (flv, hls, api) = (free_port(), free_port(), free_port());
                let cfg = format!(
                    "rtmp_addr = \"127.0.0.1:{rtmp_port}\"\nhttpflv_addr = \"127.0.0.1:{flv}\"\n\
                     hls_addr = \"127.0.0.1:{hls}\"\napi_addr = \"127.0.0.1:{api}\"\nlevel = \"warn\"\n\
                     [[server]]\nappname = \"live\"\nlive = true\nhls = false\nflv = true\napi = true\n"
                );
                let path = dir.path().join("livego.toml");
                std::fs::write(&path, cfg).map_err(|e| e.to_string())?;
                let mut c = Command::new(bin);
                c.arg("--config_file").arg(&path);
                (c, Some(flv), Some(api))
            }
            Kind::Livego(bin) => {
                let (flv, hls, api) = (free_port(), free_port(), free_port());
                let path = dir.path().join("livego.yaml");
                std::fs::write(
                    &path,
                    "server:\n- appname: live\n  live: true\n  hls: false\n",
                )
                .map_err(|e| e.to_string())?;
                let mut c = Command::new(bin);
                c.arg("--config_file").arg(&path);
                c.arg(format!("--rtmp_addr=127.0.0.1:{rtmp_port}"));
                c.arg(format!("--httpflv_addr=127.0.0.1:{flv}"));
                c.arg(format!("--hls_addr=127.0.0.1:{hls}"));
                c.arg(format!("--api_addr=127.0.0.1:{api}"));
                c.arg("--level=error");
                c.current_dir(dir.path());
                (c, Some(flv), Some(api))
            }
            Kind::NginxRtmp => {
                if !Path::new(NGINX_MODULE).exists() {
                    return Err(format!(
                        "{NGINX_MODULE} missing: apt-get install libnginx-mod-rtmp"
                    ));
                }
                let conf = NGINX_TEMPLATE
                    .replace("@MODULE@", NGINX_MODULE)
                    .replace("@DIR@", &dir.path().display().to_string())
                    .replace("@RTMP_PORT@", &rtmp_port.to_string());
                let path = dir.path().join("nginx.conf");
                std::fs::write(&path, conf).map_err(|e| e.to_string())?;
                let bin = ["/usr/sbin/nginx", "nginx"]
                    .into_iter()
                    .find(|b| Path::new(b).exists());
                let mut c = Command::new(bin.unwrap_or("nginx"));
                c.arg("-p").arg(dir.path()).arg("-c").arg(&path);
                (c, None, None)
            }
        };
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", kind.name()))?;
        let mut s = Server {
            kind,
            child,
            rtmp_port,
            http_port,
            api_port,
            _dir: dir,
        };
        let ready = wait_port(rtmp_port, Duration::from_secs(10))
            && s.api_port
                .is_none_or(|p| wait_port(p, Duration::from_secs(10)));
        if !ready || s.child.try_wait().ok().flatten().is_some() {
            let log = std::fs::read_to_string(s._dir.path().join("server.log")).unwrap_or_default();
            return Err(format!("{} did not start: {log}", s.kind.name()));
        }
        Ok(s)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// URL a publisher uses for `room`: livego and livego-rs want the room's channel key.
    pub fn publish_url(&self, room: &str) -> Result<String, String> {
        let name = match self.api_port {
            Some(api) => {
                let body = http_get(api, &format!("/control/get?room={room}"))?;
                let v: serde_json::Value =
                    serde_json::from_str(&body).map_err(|e| format!("control/get: {e}: {body}"))?;
                v["data"]
                    .as_str()
                    .ok_or(format!("control/get: {body}"))?
                    .to_string()
            }
            None => room.to_string(),
        };
        Ok(format!("rtmp://127.0.0.1:{}/live/{name}", self.rtmp_port))
    }

    pub fn rtmp_url(&self, room: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{room}", self.rtmp_port)
    }

    pub fn flv_url(&self, room: &str) -> Option<String> {
        self.http_port
            .map(|p| format!("http://127.0.0.1:{p}/live/{room}.flv"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A child already reaped (it exited during start) keeps no claim on its PID, which the
        // kernel may have given to some other process by now: signal only one still ours.
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        // SIGTERM to our own child (nginx's master stops its workers), then SIGKILL if it lingers
        // SAFETY: kill(2) has no memory effects, and the PID is our unreaped child's.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_given_by_path_are_told_apart_by_file_name() {
        let ws = Path::new("/ws");
        let name = |s: &str| Kind::parse(s, ws).unwrap().name();
        assert_eq!(name("livego-rs"), "livego-rs");
        assert_eq!(name("livego-rs=/tmp/a/livego"), "livego-rs");
        assert_eq!(name("livego-rs=/tmp/livego-base"), "livego-rs:livego-base");
        assert_eq!(name("nginx-rtmp"), "nginx-rtmp");
        assert_eq!(name("livego=/opt/livego"), "livego");
        assert_eq!(name("livego=/opt/livego-copyfix"), "livego:livego-copyfix");
        assert!(Kind::parse("livego", ws).is_err());
    }
}
