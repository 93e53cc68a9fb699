//! Sans-I/O RTMP: AMF, handshake, chunk codec, messages, server and client sessions.
//!
//! Nothing here touches a socket or a clock: sessions take bytes in and queue bytes and events
//! out. `chunk::encode_message` is the serialiser the engine shares for player output.

pub mod ack;
pub mod amf0;
pub mod amf3;
pub mod chunk;
pub mod client_session;
pub mod command;
pub mod control;
pub mod error;
pub mod handshake;
pub mod metadata;
pub mod server_session;

pub use chunk::{encode_message, ChunkDecoder, ChunkError, ChunkLimits, Message};
pub use client_session::{ClientConfig, ClientEvent, ClientMode, ClientSession};
pub use command::StatusInfo;
pub use error::SessionError;
pub use server_session::{ServerConfig, ServerEvent, ServerSession, STREAM_ID};
