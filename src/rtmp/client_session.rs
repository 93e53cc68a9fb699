//! One client-side RTMP connection (relays, static push, the load harness), sans-I/O:
//! digest handshake, connect, createStream, then publish or play.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use super::ack::AckWindow;
use super::amf0::{self, Value};
use super::chunk::{
    encode_message, ChunkDecoder, ChunkLimits, Message, AUDIO, COMMAND_AMF0, COMMAND_AMF3,
    DATA_AMF0, DATA_AMF3, DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE, VIDEO,
};
use super::command::{self, StatusInfo};
use super::control::{self, ControlMessage, UserControlEvent, CONTROL_CSID};
use super::error::{protocol, SessionError};
use super::handshake::{os_random, ClientHandshake, RandomFill};
use super::metadata::add_set_data_frame;

pub const FLASH_VER: &str = "FMLE/3.0 (compatible; livego-rs)";

const COMMAND_CSID: u32 = 3;
const AUDIO_CSID: u32 = 4;
const DATA_CSID: u32 = 5;
const VIDEO_CSID: u32 = 6;
/// Buffer length announced to the server when playing.
const PLAY_BUFFER_MS: u32 = 3000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMode {
    Publish,
    Play,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    pub app: String,
    pub tc_url: String,
    /// Stream name, including any `?query`.
    pub stream: String,
    pub mode: ClientMode,
    /// Chunk size announced before the first published message.
    pub out_chunk_size: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ClientEvent {
    /// connect succeeded.
    Connected,
    /// NetStream.Publish.Start received: `send_media` may be used.
    Publishing,
    /// NetStream.Play.Start received: media events follow.
    Playing,
    /// Audio, video or data received while playing.
    Media(Message),
    /// Every onStatus the server sends (including the ones behind Publishing/Playing).
    Status(StatusInfo),
    /// The server answered connect or createStream with `_error` (or a failure code).
    Error(StatusInfo),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Handshake,
    Connecting,
    CreatingStream,
    Starting,
    Publishing,
    Playing,
    Failed,
}

pub struct ClientSession {
    cfg: ClientConfig,
    state: State,
    handshake: ClientHandshake,
    rng: Option<Box<RandomFill>>,
    decoder: ChunkDecoder,
    out: BytesMut,
    out_chunk_size: usize,
    chunk_size_sent: bool,
    events: VecDeque<ClientEvent>,
    ack: AckWindow,
    next_txn: f64,
    connect_txn: f64,
    create_txn: f64,
    stream_id: Option<u32>,
}

impl ClientSession {
    pub fn new(cfg: ClientConfig) -> Self {
        Self::with_random(cfg, Box::new(os_random))
    }

    /// C0C1 is queued immediately; take it with [`take_output`](Self::take_output).
    pub fn with_random(cfg: ClientConfig, mut rng: Box<RandomFill>) -> Self {
        let handshake = ClientHandshake::new(&mut rng);
        let mut s = ClientSession {
            cfg,
            state: State::Handshake,
            handshake,
            rng: Some(rng),
            decoder: ChunkDecoder::new(ChunkLimits::default()),
            out: BytesMut::new(),
            out_chunk_size: DEFAULT_CHUNK_SIZE as usize,
            chunk_size_sent: false,
            events: VecDeque::new(),
            ack: AckWindow::new(),
            next_txn: 1.0,
            connect_txn: 0.0,
            create_txn: 0.0,
            stream_id: None,
        };
        if s.cfg.mode == ClientMode::Play {
            s.decoder.receive_in_blocks();
        }
        if let Some(o) = s.handshake.take_output() {
            s.out.extend_from_slice(&o);
        }
        s
    }

    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    pub fn take_output(&mut self) -> Option<Bytes> {
        (!self.out.is_empty()).then(|| self.out.split().freeze())
    }

    pub fn bytes_received(&self) -> u64 {
        self.ack.total()
    }

    /// Message stream id from createStream, once known.
    pub fn stream_id(&self) -> Option<u32> {
        self.stream_id
    }

    pub fn is_publishing(&self) -> bool {
        self.state == State::Publishing
    }

    pub fn is_playing(&self) -> bool {
        self.state == State::Playing
    }

    pub fn feed(&mut self, input: &[u8]) -> Result<(), SessionError> {
        self.ack.received(input.len());
        if self.state == State::Handshake {
            let Some(rng) = self.rng.as_mut() else {
                return Err(protocol("handshake randomness missing"));
            };
            let used = self.handshake.feed(input, rng)?;
            if !self.handshake.is_done() {
                return Ok(());
            }
            if let Some(o) = self.handshake.take_output() {
                self.out.extend_from_slice(&o);
            }
            self.rng = None;
            self.send_connect();
            self.decoder.push(&input[used..]);
        } else {
            self.decoder.push(input);
        }
        while let Some(msg) = self.decoder.next_message()? {
            self.handle(msg)?;
        }
        if let Some(seq) = self.ack.due() {
            self.send(CONTROL_CSID, &control::acknowledgement(seq));
        }
        Ok(())
    }

    /// Sends one audio, video or data message on the published stream. The first call announces
    /// the configured chunk size; `onMetaData` gets `@setDataFrame` prepended.
    pub fn send_media(&mut self, msg: &Message) -> Result<(), SessionError> {
        if self.state != State::Publishing {
            return Err(protocol("send_media before NetStream.Publish.Start"));
        }
        let stream_id = self.stream_id.unwrap_or(1);
        if !self.chunk_size_sent {
            let size = self.cfg.out_chunk_size.clamp(1, MAX_CHUNK_SIZE);
            self.send(CONTROL_CSID, &control::set_chunk_size(size));
            self.out_chunk_size = size as usize;
            self.chunk_size_sent = true;
        }
        let (csid, m) = match msg.type_id {
            AUDIO => (AUDIO_CSID, msg.clone()),
            VIDEO => (VIDEO_CSID, msg.clone()),
            DATA_AMF0 => (DATA_CSID, add_set_data_frame(msg)),
            t => {
                return Err(protocol(format!(
                    "send_media: message type {t} is not media"
                )))
            }
        };
        let m = Message { stream_id, ..m };
        self.send(csid, &m);
        Ok(())
    }

    fn send(&mut self, csid: u32, msg: &Message) {
        encode_message(&mut self.out, self.out_chunk_size, csid, msg);
    }

    fn txn(&mut self) -> f64 {
        let t = self.next_txn;
        self.next_txn += 1.0;
        t
    }

    fn send_command(&mut self, stream_id: u32, name: &str, values: &[Value]) -> f64 {
        let t = self.txn();
        self.send(COMMAND_CSID, &command::build(stream_id, name, t, values));
        t
    }

    fn send_connect(&mut self) {
        let obj = amf0::object(&[
            ("app", self.cfg.app.as_str().into()),
            ("type", "nonprivate".into()),
            ("flashVer", FLASH_VER.into()),
            ("tcUrl", self.cfg.tc_url.as_str().into()),
        ]);
        self.connect_txn = self.send_command(0, "connect", &[obj]);
        self.state = State::Connecting;
    }

    fn handle(&mut self, msg: Message) -> Result<(), SessionError> {
        match msg.type_id {
            1..=6 => {
                match control::parse(&msg)? {
                    ControlMessage::SetChunkSize(n) => self.decoder.set_chunk_size(n)?,
                    ControlMessage::Abort { csid } => self.decoder.abort(csid),
                    ControlMessage::WindowAckSize(n) => self.ack.set_window(n),
                    ControlMessage::UserControl(UserControlEvent::PingRequest(t)) => {
                        let m = control::user_control(&UserControlEvent::PingResponse(t));
                        self.send(CONTROL_CSID, &m);
                    }
                    _ => {}
                }
                Ok(())
            }
            AUDIO | VIDEO | DATA_AMF0 | DATA_AMF3 => {
                if self.state == State::Playing {
                    self.events.push_back(ClientEvent::Media(msg));
                }
                Ok(())
            }
            COMMAND_AMF0 | COMMAND_AMF3 => self.handle_command(&msg),
            _ => Ok(()),
        }
    }

    fn handle_command(&mut self, msg: &Message) -> Result<(), SessionError> {
        let cmd = command::parse(msg)?;
        let info = cmd
            .args
            .first()
            .map(StatusInfo::from_value)
            .unwrap_or_default();
        match cmd.name.as_str() {
            "_error" => {
                self.state = State::Failed;
                self.events.push_back(ClientEvent::Error(info));
            }
            "_result"
                if self.state == State::Connecting && cmd.transaction_id == self.connect_txn =>
            {
                if !info.code.is_empty() && info.code != "NetConnection.Connect.Success" {
                    self.state = State::Failed;
                    self.events.push_back(ClientEvent::Error(info));
                    return Ok(());
                }
                self.events.push_back(ClientEvent::Connected);
                let name = self.cfg.stream.clone();
                if self.cfg.mode == ClientMode::Publish {
                    self.send_command(0, "releaseStream", &[Value::Null, name.as_str().into()]);
                    self.send_command(0, "FCPublish", &[Value::Null, name.as_str().into()]);
                }
                self.create_txn = self.send_command(0, "createStream", &[Value::Null]);
                self.state = State::CreatingStream;
            }
            "_result"
                if self.state == State::CreatingStream && cmd.transaction_id == self.create_txn =>
            {
                let id = cmd
                    .args
                    .first()
                    .and_then(Value::as_f64)
                    .filter(|n| *n >= 0.0 && *n <= f64::from(u32::MAX))
                    .ok_or_else(|| protocol("createStream result has no stream id"))?;
                let sid = id as u32;
                self.stream_id = Some(sid);
                let name = self.cfg.stream.clone();
                match self.cfg.mode {
                    ClientMode::Publish => {
                        self.send_command(
                            sid,
                            "publish",
                            &[Value::Null, name.into(), "live".into()],
                        );
                    }
                    ClientMode::Play => {
                        self.send_command(sid, "play", &[Value::Null, name.into()]);
                        let m = control::user_control(&UserControlEvent::SetBufferLength {
                            stream_id: sid,
                            millis: PLAY_BUFFER_MS,
                        });
                        self.send(CONTROL_CSID, &m);
                    }
                }
                self.state = State::Starting;
            }
            "onStatus" => {
                let started = match (self.cfg.mode, info.code.as_str()) {
                    (ClientMode::Publish, "NetStream.Publish.Start") => Some(State::Publishing),
                    (ClientMode::Play, "NetStream.Play.Start") => Some(State::Playing),
                    _ => None,
                };
                self.events.push_back(ClientEvent::Status(info));
                if let Some(s) = started.filter(|_| self.state == State::Starting) {
                    self.state = s;
                    self.events.push_back(if s == State::Publishing {
                        ClientEvent::Publishing
                    } else {
                        ClientEvent::Playing
                    });
                }
            }
            // onBWDone, onFCPublish, replies to releaseStream/FCPublish, ...
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "client_session_tests.rs"]
mod tests;
