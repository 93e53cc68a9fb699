//! Opening a client RTMP connection to a remote server: resolve, connect, drive the sans-I/O
//! `ClientSession` until publishing or playing, all under one deadline.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::url::RtmpUrl;
use crate::engine::OUT_CHUNK_SIZE;
use crate::rtmp::client_session::{ClientConfig, ClientEvent, ClientMode, ClientSession};

/// Connect + handshake + connect/createStream/publish|play must finish within this time.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection that reached NetStream.Publish.Start (publish), or sent play (play: the remote
/// may legitimately wait for its publisher, so Play.Start comes later). Events after that point
/// are still queued in `session`.
pub struct Opened {
    pub stream: TcpStream,
    pub session: ClientSession,
    pub peer: SocketAddr,
}

async fn resolve(url: &RtmpUrl) -> Result<SocketAddr, String> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, url.port));
    }
    // getaddrinfo blocks: it runs on the executor's blocking pool, not on the shard.
    let target = (url.host.clone(), url.port);
    let found = glommio::executor()
        .spawn_blocking(move || target.to_socket_addrs().map(|mut a| a.next()))
        .await;
    match found {
        Ok(Some(a)) => Ok(a),
        Ok(None) => Err(format!("{}: no address", url.host)),
        Err(e) => Err(format!("{}: {e}", url.host)),
    }
}

pub async fn open(url: &RtmpUrl, mode: ClientMode) -> Result<Opened, String> {
    let attempt = open_inner(url, mode);
    let deadline = async {
        Timer::new(OPEN_TIMEOUT).await;
        Err(format!("{url}: not started within {OPEN_TIMEOUT:?}"))
    };
    future::or(attempt, deadline).await
}

async fn open_inner(url: &RtmpUrl, mode: ClientMode) -> Result<Opened, String> {
    let peer = resolve(url).await?;
    let mut stream = TcpStream::connect(peer)
        .await
        .map_err(|e| format!("connect {peer}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let mut session = ClientSession::new(ClientConfig {
        app: url.app.clone(),
        tc_url: url.tc_url(),
        stream: url.stream.clone(),
        mode,
        out_chunk_size: OUT_CHUNK_SIZE,
    });
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        while let Some(out) = session.take_output() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        if mode == ClientMode::Play && session.stream_id().is_some() {
            return Ok(Opened {
                stream,
                session,
                peer,
            });
        }
        // Stop at the start event and leave later events (media) queued in the session.
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Error(info) => {
                    return Err(format!("{}: {} {}", url, info.code, info.description))
                }
                ClientEvent::Status(info) if is_refusal(&info.code) => {
                    return Err(format!("{}: {} {}", url, info.code, info.description))
                }
                ClientEvent::Publishing | ClientEvent::Playing => {
                    return Ok(Opened {
                        stream,
                        session,
                        peer,
                    })
                }
                _ => {}
            }
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err(format!("{url}: closed by the remote end"));
        }
        session.feed(&buf[..n]).map_err(|e| e.to_string())?;
    }
}

/// onStatus codes that end an attempt (a publish refused, a stream that does not exist).
pub fn is_refusal(code: &str) -> bool {
    code.ends_with(".BadName")
        || code.ends_with(".Failed")
        || code.ends_with(".Rejected")
        || code.ends_with(".StreamNotFound")
        || code == "NetStream.Publish.Denied"
}
