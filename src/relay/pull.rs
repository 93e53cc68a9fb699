//! A pull: plays a remote stream and publishes it locally as `app/name`, on the owner shard.

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use super::client::{self, is_refusal};
use super::resync::Backoff;
use super::{RelaySpec, StatusHandle, Stop};
use crate::engine::{Hub, Protocol, Role};
use crate::media::{Packet, PacketKind};
use crate::rtmp::client_session::{ClientEvent, ClientMode, ClientSession};

/// A remote that sends nothing (not even a ping) for this long is dropped and reconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

/// The pull's hold on the local stream. The hub may `shutdown` the socket's fd to kick this
/// publisher, so the socket is only dropped after `publish_end` (see `release`).
#[derive(Default)]
struct Slot {
    stream: Option<TcpStream>,
    publishing: Option<(Arc<str>, u64)>,
}

impl Slot {
    async fn begin(&mut self, hub: &Hub, spec: &RelaySpec, status: &StatusHandle) {
        if self.publishing.is_some() {
            return;
        }
        let Some(fd) = self.stream.as_ref().map(|s| s.as_raw_fd()) else {
            return;
        };
        self.publishing = Some(hub.publish_begin(&spec.app, &spec.name, fd).await);
        status.set_state("playing");
    }

    async fn end(&mut self, hub: &Hub) {
        if let Some((key, id)) = self.publishing.take() {
            hub.publish_end(&key, id).await;
        }
    }

    /// Ends the publish, then closes the socket. A stop cancels `begin` wherever it is, also
    /// after the hub registered this socket as the stream's publisher but before `publishing`
    /// was set; that registration is found by the socket, because the hub may shut down a
    /// replaced publisher's descriptor, which must not outlive it.
    async fn release(&mut self, hub: &Hub, spec: &RelaySpec) {
        if self.publishing.is_none() {
            if let Some(fd) = self.stream.as_ref().map(|s| s.as_raw_fd()) {
                self.publishing = hub.publisher_by_fd(&spec.stream_key(), fd);
            }
        }
        self.end(hub).await;
        self.stream = None;
    }
}

pub async fn run(hub: Rc<Hub>, spec: RelaySpec, stop: Rc<Stop>, status: StatusHandle) {
    let mut slot = Slot::default();
    future::or(pull_loop(&hub, &spec, &mut slot, &status), stop.wait()).await;
    slot.release(&hub, &spec).await;
    tracing::info!(relay = %spec.session_key(), "relay stopped");
}

async fn pull_loop(hub: &Rc<Hub>, spec: &RelaySpec, slot: &mut Slot, status: &StatusHandle) {
    let mut backoff = Backoff::default();
    loop {
        status.set_state("connecting");
        let err = match pull_once(hub, spec, slot, status, &mut backoff).await {
            Ok(()) => "remote closed the connection".to_string(),
            Err(e) => e,
        };
        slot.release(hub, spec).await;
        let delay = backoff.next_delay();
        tracing::info!(relay = %spec.session_key(), "pull from {}: {err}; retry in {delay:?}", spec.url);
        status.set_state(format!("retrying in {}s: {err}", delay.as_secs()));
        Timer::new(delay).await;
    }
}

async fn pull_once(
    hub: &Rc<Hub>,
    spec: &RelaySpec,
    slot: &mut Slot,
    status: &StatusHandle,
    backoff: &mut Backoff,
) -> Result<(), String> {
    let opened = client::open(&spec.url, ClientMode::Play).await?;
    let mut session = opened.session;
    let _ = opened.stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = opened.stream.set_write_timeout(Some(WRITE_TIMEOUT));
    slot.stream = Some(opened.stream);
    status.connected("waiting for the stream");
    let key: Arc<str> = Arc::from(spec.stream_key());
    let guard = hub.sessions().register(
        Role::Publisher,
        Protocol::Relay,
        key,
        spec.url.to_string(),
        Some(opened.peer),
    );
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        while let Some(ev) = session.poll_event() {
            match ev {
                ClientEvent::Media(msg) => {
                    let Some(packet) =
                        Packet::from_rtmp_message(msg.type_id, msg.timestamp, msg.payload)
                    else {
                        continue;
                    };
                    slot.begin(hub, spec, status).await;
                    let Some((key, id)) = slot.publishing.clone() else {
                        continue;
                    };
                    if packet.kind != PacketKind::Meta {
                        guard
                            .counters
                            .add_media(packet.is_video(), packet.payload.len());
                    }
                    if !hub.publish_packet(&key, id, packet).await {
                        return Err("local stream taken over by another publisher".into());
                    }
                    backoff.reset();
                }
                ClientEvent::Status(info) => match info.code.as_str() {
                    // The remote publisher left (and may come back on the same connection).
                    "NetStream.Play.UnpublishNotify" | "NetStream.Play.Stop" => {
                        slot.end(hub).await;
                        status.set_state("waiting for the stream");
                    }
                    "NetStream.Play.PublishNotify" | "NetStream.Play.Start" => {
                        slot.begin(hub, spec, status).await
                    }
                    c if is_refusal(c) => return Err(format!("{c} {}", info.description)),
                    _ => {}
                },
                ClientEvent::Error(info) => {
                    return Err(format!("{} {}", info.code, info.description))
                }
                _ => {}
            }
        }
        let Some(stream) = slot.stream.as_mut() else {
            return Err("socket gone".into());
        };
        while let Some(out) = session.take_output() {
            stream
                .write_all(&out)
                .await
                .map_err(|e| format!("write: {e}"))?;
        }
        let n = match stream.read(&mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => return Err("remote idle".into()),
            Err(e) => return Err(format!("read: {e}")),
        };
        guard.counters.add_wire(n);
        feed(&mut session, &buf[..n])?;
    }
}

fn feed(session: &mut ClientSession, bytes: &[u8]) -> Result<(), String> {
    session.feed(bytes).map_err(|e| e.to_string())
}
