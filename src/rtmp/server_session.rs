//! One server-side RTMP connection, sans-I/O: handshake, chunk decoding, protocol control and
//! the command state machine. The serve layer feeds bytes, reacts to events (answering
//! connect/publish/play with accept_* / reject_*), and writes `take_output()` to the socket.
//!
//! While a connect/publish/play decision is pending, further input stays buffered unparsed so
//! later commands are handled in order once the decision is made (the accept/reject call
//! resumes processing).

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::ack::AckWindow;
use super::amf0::{self, Value};
use super::chunk::{
    encode_message, ChunkDecoder, ChunkLimits, Message, AUDIO, COMMAND_AMF0, COMMAND_AMF3,
    DATA_AMF0, DATA_AMF3, VIDEO,
};
use super::command::{self, Command};
use super::control::{self, ControlMessage, UserControlEvent, CONTROL_CSID, LIMIT_DYNAMIC};
use super::error::{protocol, SessionError};
use super::handshake::{os_random, RandomFill, ServerHandshake};
use super::metadata::strip_set_data_frame;

/// The message stream id `createStream` hands out (livego always used 1; the engine relies on it).
pub const STREAM_ID: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    pub max_message_size: usize,
    pub max_chunk_size: u32,
    pub out_chunk_size: u32,
    pub window_ack_size: u32,
    pub peer_bandwidth: u32,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_message_size: 16 * 1024 * 1024,
            max_chunk_size: 16 * 1024 * 1024,
            out_chunk_size: 4096,
            window_ack_size: 2_500_000,
            peer_bandwidth: 2_500_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    Connect {
        app: String,
        tc_url: Option<String>,
        flash_ver: Option<String>,
        object_encoding: f64,
    },
    Publish {
        stream_id: u32,
        name: String,
        query: Option<String>,
        /// "live", "record" or "append" (as sent; "live" when absent).
        kind: String,
    },
    Play {
        stream_id: u32,
        name: String,
        query: Option<String>,
    },
    /// Audio (8), video (9) or data (18, `@setDataFrame` stripped, type 15 normalised to 18).
    Media(Message),
    /// The publisher stopped (FCUnpublish, deleteStream or closeStream).
    Unpublish { stream_id: u32 },
    /// The player stopped (deleteStream or closeStream).
    CloseStream { stream_id: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    AwaitConnect,
    ConnectPending,
    Connected,
    PublishPending,
    Publishing,
    PlayPending,
    Playing,
    /// Connect was rejected: input is ignored until the serve layer closes.
    Rejected,
}

/// Where and how to answer the request whose decision is pending.
#[derive(Debug, Clone, Copy)]
struct Reply {
    csid: u32,
    stream_id: u32,
    transaction_id: f64,
    object_encoding: f64,
}

pub struct ServerSession {
    cfg: ServerConfig,
    state: State,
    handshake: ServerHandshake,
    rng: Option<Box<RandomFill>>,
    decoder: ChunkDecoder,
    out: BytesMut,
    out_chunk_size: usize,
    events: VecDeque<ServerEvent>,
    ack: AckWindow,
    pending: Option<Reply>,
    /// Reply target of the active publish or play.
    active: Option<Reply>,
    has_published: bool,
}

/// Longest app and stream name accepted (a query after the stream name is not counted). Names
/// end up as keys of per-stream state (the hub, HLS sequence numbers, playlist lines), so a
/// peer must not choose their size; real ones are a few dozen bytes.
pub const MAX_NAME_LEN: usize = 1024;
/// Longest query accepted after a stream name (tokens and signed URLs stay well below).
pub const MAX_QUERY_LEN: usize = 8192;

fn split_query(s: &str) -> (String, Option<String>) {
    match s.split_once('?') {
        Some((name, q)) => (name.to_owned(), Some(q.to_owned())),
        None => (s.to_owned(), None),
    }
}

/// Replies never go to 2 (protocol control) or 4/5/6 (media written by the engine).
fn reply_csid(request_csid: u32) -> u32 {
    match request_csid {
        2 | 4..=6 => 3,
        c => c,
    }
}

fn optional_string(obj: &Value, key: &str) -> Result<Option<String>, SessionError> {
    match obj.get(key) {
        None => Ok(None),
        Some(v) if v.is_nullish() => Ok(None),
        Some(v) => v
            .as_str()
            .map(|s| Some(s.to_owned()))
            .ok_or_else(|| protocol(format!("connect: {key} is not a string"))),
    }
}

impl ServerSession {
    /// A session whose handshake randomness comes from the OS.
    pub fn new(cfg: ServerConfig) -> Self {
        Self::with_random(cfg, Box::new(os_random))
    }

    /// A session with injected handshake randomness (deterministic tests).
    pub fn with_random(cfg: ServerConfig, rng: Box<RandomFill>) -> Self {
        ServerSession {
            decoder: ChunkDecoder::new(ChunkLimits {
                max_message_size: cfg.max_message_size,
                max_chunk_size: cfg.max_chunk_size,
                ..ChunkLimits::default()
            }),
            cfg,
            state: State::Handshake,
            handshake: ServerHandshake::new(),
            rng: Some(rng),
            out: BytesMut::new(),
            out_chunk_size: super::chunk::DEFAULT_CHUNK_SIZE as usize,
            events: VecDeque::new(),
            ack: AckWindow::new(),
            pending: None,
            active: None,
            has_published: false,
        }
    }

    pub fn handshake_done(&self) -> bool {
        self.state != State::Handshake
    }

    /// Total bytes fed so far.
    pub fn bytes_received(&self) -> u64 {
        self.ack.total()
    }

    /// Chunk size of the bytes this session writes (the engine must serialise with the same).
    pub fn out_chunk_size(&self) -> u32 {
        self.out_chunk_size as u32
    }

    /// A connect/publish/play decision is awaited; input is buffered meanwhile.
    pub fn is_waiting_decision(&self) -> bool {
        self.pending.is_some()
    }

    pub fn is_publishing(&self) -> bool {
        self.state == State::Publishing
    }

    pub fn is_playing(&self) -> bool {
        self.state == State::Playing
    }

    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Everything queued for the peer since the last call.
    pub fn take_output(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    pub fn feed(&mut self, input: &[u8]) -> Result<(), SessionError> {
        self.ack.received(input.len());
        match self.state {
            State::Rejected => return Ok(()),
            State::Handshake => {
                let Some(rng) = self.rng.as_mut() else {
                    return Err(protocol("handshake randomness missing"));
                };
                let used = self.handshake.feed(input, rng)?;
                if let Some(o) = self.handshake.take_output() {
                    self.out.extend_from_slice(&o);
                }
                if !self.handshake.is_done() {
                    return Ok(());
                }
                self.rng = None;
                self.state = State::AwaitConnect;
                self.decoder.push(&input[used..]);
            }
            _ => self.decoder.push(input),
        }
        self.process()
    }

    fn process(&mut self) -> Result<(), SessionError> {
        while self.pending.is_none() {
            let Some((csid, msg)) = self.decoder.next_with_csid()? else {
                break;
            };
            self.handle(csid, msg)?;
        }
        if self.pending.is_some()
            && self.decoder.buffered() > self.cfg.max_message_size.saturating_add(64 * 1024)
        {
            return Err(protocol(
                "peer sent too much data while a request was being decided",
            ));
        }
        if let Some(seq) = self.ack.due() {
            self.send(CONTROL_CSID, &control::acknowledgement(seq));
        }
        Ok(())
    }

    fn send(&mut self, csid: u32, msg: &Message) {
        encode_message(&mut self.out, self.out_chunk_size, csid, msg);
    }

    fn handle(&mut self, csid: u32, msg: Message) -> Result<(), SessionError> {
        match msg.type_id {
            1..=6 => self.handle_control(&msg),
            AUDIO | VIDEO => {
                if self.state == State::Publishing {
                    self.events.push_back(ServerEvent::Media(msg));
                    Ok(())
                } else if self.has_published {
                    // Stragglers after an unpublish are harmless.
                    Ok(())
                } else {
                    Err(protocol(format!(
                        "media message (type {}) before publish",
                        msg.type_id
                    )))
                }
            }
            DATA_AMF0 | DATA_AMF3 => {
                if self.state == State::Publishing {
                    self.events
                        .push_back(ServerEvent::Media(strip_set_data_frame(&msg)));
                }
                Ok(())
            }
            COMMAND_AMF0 | COMMAND_AMF3 => {
                let cmd = command::parse(&msg)?;
                self.handle_command(csid, &msg, cmd)
            }
            // Shared objects, aggregates and unknown types: nothing livego acted on.
            _ => Ok(()),
        }
    }

    fn handle_control(&mut self, msg: &Message) -> Result<(), SessionError> {
        match control::parse(msg)? {
            ControlMessage::SetChunkSize(n) => self.decoder.set_chunk_size(n)?,
            ControlMessage::Abort { csid } => self.decoder.abort(csid),
            ControlMessage::WindowAckSize(n) => self.ack.set_window(n),
            ControlMessage::UserControl(UserControlEvent::PingRequest(t)) => {
                let m = control::user_control(&UserControlEvent::PingResponse(t));
                self.send(CONTROL_CSID, &m);
            }
            ControlMessage::Acknowledgement { .. }
            | ControlMessage::SetPeerBandwidth { .. }
            | ControlMessage::UserControl(_) => {}
        }
        Ok(())
    }

    fn handle_command(
        &mut self,
        csid: u32,
        msg: &Message,
        cmd: Command,
    ) -> Result<(), SessionError> {
        let reply = |object_encoding| Reply {
            csid: reply_csid(csid),
            stream_id: msg.stream_id,
            transaction_id: cmd.transaction_id,
            object_encoding,
        };
        if self.state == State::AwaitConnect && cmd.name != "connect" {
            return Err(protocol(format!("{} before connect", cmd.name)));
        }
        match cmd.name.as_str() {
            "connect" => {
                if self.state != State::AwaitConnect {
                    return Err(protocol("second connect on one connection"));
                }
                let obj = &cmd.object;
                if obj.properties().is_none() {
                    return Err(protocol("connect: command object is not an object"));
                }
                let app = match obj.get("app") {
                    Some(v) => v
                        .as_str()
                        .ok_or_else(|| protocol("connect: app is not a string"))?
                        .to_owned(),
                    None => return Err(protocol("connect: no app")),
                };
                if app.len() > MAX_NAME_LEN {
                    return Err(protocol(format!(
                        "connect: app name of {} bytes is longer than {MAX_NAME_LEN}",
                        app.len()
                    )));
                }
                let tc_url = optional_string(obj, "tcUrl")?;
                let flash_ver = optional_string(obj, "flashVer")?;
                let object_encoding = match obj.get("objectEncoding") {
                    None => 0.0,
                    Some(v) if v.is_nullish() => 0.0,
                    Some(v) => v
                        .as_f64()
                        .ok_or_else(|| protocol("connect: objectEncoding is not a number"))?,
                };
                self.pending = Some(reply(object_encoding));
                self.state = State::ConnectPending;
                self.events.push_back(ServerEvent::Connect {
                    app,
                    tc_url,
                    flash_ver,
                    object_encoding,
                });
            }
            "createStream" => {
                let m = command::build(
                    msg.stream_id,
                    "_result",
                    cmd.transaction_id,
                    &[Value::Null, Value::Number(f64::from(STREAM_ID))],
                );
                self.send(reply_csid(csid), &m);
            }
            "publish" | "play" => {
                if self.state != State::Connected {
                    return Err(protocol(format!(
                        "{} while {}",
                        cmd.name,
                        match self.state {
                            State::Publishing => "publishing",
                            State::Playing => "playing",
                            _ => "not connected",
                        }
                    )));
                }
                let full = cmd.args.first().and_then(Value::as_str).ok_or_else(|| {
                    protocol(format!("{}: stream name is not a string", cmd.name))
                })?;
                let (name, query) = split_query(full);
                let query_len = query.as_ref().map_or(0, String::len);
                if name.len() > MAX_NAME_LEN || query_len > MAX_QUERY_LEN {
                    return Err(protocol(format!(
                        "{}: stream name of {} bytes (query {query_len}) is longer than \
                         {MAX_NAME_LEN} ({MAX_QUERY_LEN})",
                        cmd.name,
                        name.len()
                    )));
                }
                self.pending = Some(reply(0.0));
                if cmd.name == "publish" {
                    let kind = cmd
                        .args
                        .get(1)
                        .and_then(Value::as_str)
                        .unwrap_or("live")
                        .to_owned();
                    self.state = State::PublishPending;
                    self.events.push_back(ServerEvent::Publish {
                        stream_id: msg.stream_id,
                        name,
                        query,
                        kind,
                    });
                } else {
                    self.state = State::PlayPending;
                    self.events.push_back(ServerEvent::Play {
                        stream_id: msg.stream_id,
                        name,
                        query,
                    });
                }
            }
            "FCUnpublish" | "deleteStream" | "closeStream" => {
                let stream_id = self.active.map_or(msg.stream_id, |a| a.stream_id);
                match self.state {
                    State::Publishing => {
                        self.events.push_back(ServerEvent::Unpublish { stream_id });
                        self.state = State::Connected;
                        self.active = None;
                    }
                    State::Playing if cmd.name != "FCUnpublish" => {
                        self.events
                            .push_back(ServerEvent::CloseStream { stream_id });
                        self.state = State::Connected;
                        self.active = None;
                    }
                    _ => {}
                }
            }
            // releaseStream, FCPublish, getStreamLength, _checkbw, receiveAudio/Video, pause,
            // seek, FCSubscribe, _result, ...: livego sent no reply and neither do we.
            _ => {}
        }
        Ok(())
    }

    fn take_pending(&mut self, expected: State, what: &str) -> Result<Reply, SessionError> {
        match self.pending {
            Some(r) if self.state == expected => {
                self.pending = None;
                Ok(r)
            }
            _ => Err(protocol(format!("{what} without a pending request"))),
        }
    }

    /// Answers the pending connect: window ack size, peer bandwidth, chunk size, `_result`.
    pub fn accept_connect(&mut self) -> Result<(), SessionError> {
        let r = self.take_pending(State::ConnectPending, "accept_connect")?;
        self.send(
            CONTROL_CSID,
            &control::window_ack_size(self.cfg.window_ack_size),
        );
        self.send(
            CONTROL_CSID,
            &control::set_peer_bandwidth(self.cfg.peer_bandwidth, LIMIT_DYNAMIC),
        );
        let size = self
            .cfg
            .out_chunk_size
            .clamp(1, super::chunk::MAX_CHUNK_SIZE);
        self.send(CONTROL_CSID, &control::set_chunk_size(size));
        self.out_chunk_size = size as usize;
        let m = command::build(
            r.stream_id,
            "_result",
            r.transaction_id,
            &[
                amf0::object(&[
                    ("fmsVer", "FMS/3,0,1,123".into()),
                    ("capabilities", Value::Number(31.0)),
                ]),
                amf0::object(&[
                    ("level", "status".into()),
                    ("code", "NetConnection.Connect.Success".into()),
                    ("description", "Connection succeeded.".into()),
                    ("objectEncoding", Value::Number(r.object_encoding)),
                ]),
            ],
        );
        self.send(r.csid, &m);
        self.state = State::Connected;
        self.process()
    }

    /// Refuses the pending connect with `_error` (NetConnection.Connect.Rejected); the serve
    /// layer should flush the output and close.
    pub fn reject_connect(&mut self, description: &str) -> Result<(), SessionError> {
        let r = self.take_pending(State::ConnectPending, "reject_connect")?;
        let m = command::build(
            r.stream_id,
            "_error",
            r.transaction_id,
            &[
                Value::Null,
                amf0::object(&[
                    ("level", "error".into()),
                    ("code", "NetConnection.Connect.Rejected".into()),
                    ("description", description.into()),
                ]),
            ],
        );
        self.send(r.csid, &m);
        self.state = State::Rejected;
        Ok(())
    }

    pub fn accept_publish(&mut self) -> Result<(), SessionError> {
        let r = self.take_pending(State::PublishPending, "accept_publish")?;
        self.decoder.receive_in_blocks();
        self.send(
            CONTROL_CSID,
            &control::user_control(&UserControlEvent::StreamBegin(r.stream_id)),
        );
        let m = command::on_status(
            r.stream_id,
            "status",
            "NetStream.Publish.Start",
            "Start publishing.",
        );
        self.send(r.csid, &m);
        self.state = State::Publishing;
        self.has_published = true;
        self.active = Some(r);
        self.process()
    }

    /// onStatus with level "error" and `code` (e.g. NetStream.Publish.BadName); the client may
    /// try again on the same connection.
    pub fn reject_publish(&mut self, code: &str, description: &str) -> Result<(), SessionError> {
        self.reject_pending(State::PublishPending, "reject_publish", code, description)
    }

    pub fn accept_play(&mut self) -> Result<(), SessionError> {
        let r = self.take_pending(State::PlayPending, "accept_play")?;
        let sid = r.stream_id;
        self.send(
            CONTROL_CSID,
            &control::user_control(&UserControlEvent::StreamIsRecorded(sid)),
        );
        self.send(
            CONTROL_CSID,
            &control::user_control(&UserControlEvent::StreamBegin(sid)),
        );
        for (code, description) in [
            ("NetStream.Play.Reset", "Playing and resetting stream."),
            ("NetStream.Play.Start", "Started playing stream."),
            ("NetStream.Data.Start", "Started playing stream."),
            ("NetStream.Play.PublishNotify", "Started playing notify."),
        ] {
            self.send(
                r.csid,
                &command::on_status(sid, "status", code, description),
            );
        }
        self.state = State::Playing;
        self.active = Some(r);
        self.process()
    }

    /// onStatus with level "error" and `code` (e.g. NetStream.Play.StreamNotFound).
    pub fn reject_play(&mut self, code: &str, description: &str) -> Result<(), SessionError> {
        self.reject_pending(State::PlayPending, "reject_play", code, description)
    }

    /// Answers a pending publish/play with an error onStatus; the connection goes back to the
    /// connected state, where the client may try again.
    fn reject_pending(
        &mut self,
        pending: State,
        what: &'static str,
        code: &str,
        description: &str,
    ) -> Result<(), SessionError> {
        let r = self.take_pending(pending, what)?;
        self.send(
            r.csid,
            &command::on_status(r.stream_id, "error", code, description),
        );
        self.state = State::Connected;
        self.process()
    }

    /// Tells a player its stream's publisher left: onStatus Play.UnpublishNotify + StreamEOF.
    pub fn play_unpublish_notify(&mut self) {
        let Some(r) = self.active.filter(|_| self.state == State::Playing) else {
            return;
        };
        let m = command::on_status(
            r.stream_id,
            "status",
            "NetStream.Play.UnpublishNotify",
            "Stopped playing notify.",
        );
        self.send(r.csid, &m);
        self.send(
            CONTROL_CSID,
            &control::user_control(&UserControlEvent::StreamEof(r.stream_id)),
        );
    }

    /// Tells a waiting player a publisher (re)started: StreamBegin + onStatus Play.PublishNotify.
    pub fn play_publish_notify(&mut self) {
        let Some(r) = self.active.filter(|_| self.state == State::Playing) else {
            return;
        };
        self.send(
            CONTROL_CSID,
            &control::user_control(&UserControlEvent::StreamBegin(r.stream_id)),
        );
        let m = command::on_status(
            r.stream_id,
            "status",
            "NetStream.Play.PublishNotify",
            "Started playing notify.",
        );
        self.send(r.csid, &m);
    }
}

#[cfg(test)]
#[path = "server_session_tests.rs"]
mod tests;
