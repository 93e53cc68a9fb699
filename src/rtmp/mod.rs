//! Sans-I/O RTMP: AMF, handshake, chunk codec, messages, server and client sessions.

pub mod ack;
pub mod amf0;
pub mod amf3;
pub mod chunk;
pub mod command;
pub mod control;
pub mod error;
pub mod handshake;
pub mod metadata;
pub mod server_session;
