//! The error both sessions return: any of them means "log once and close the connection".

use std::fmt;

use super::chunk::ChunkError;
use super::command::CommandError;
use super::control::ControlError;
use super::handshake::HandshakeError;

#[derive(Debug, Clone, PartialEq)]
pub enum SessionError {
    Handshake(HandshakeError),
    Chunk(ChunkError),
    Control(ControlError),
    Command(CommandError),
    /// A well-formed message that is not acceptable now (wrong state, bad argument types).
    Protocol(String),
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::Handshake(e) => write!(f, "rtmp: {e}"),
            SessionError::Chunk(e) => write!(f, "rtmp: {e}"),
            SessionError::Control(e) => write!(f, "rtmp: {e}"),
            SessionError::Command(e) => write!(f, "rtmp: {e}"),
            SessionError::Protocol(e) => write!(f, "rtmp: {e}"),
        }
    }
}

impl std::error::Error for SessionError {}

impl From<HandshakeError> for SessionError {
    fn from(e: HandshakeError) -> Self {
        SessionError::Handshake(e)
    }
}

impl From<ChunkError> for SessionError {
    fn from(e: ChunkError) -> Self {
        SessionError::Chunk(e)
    }
}

impl From<ControlError> for SessionError {
    fn from(e: ControlError) -> Self {
        SessionError::Control(e)
    }
}

impl From<CommandError> for SessionError {
    fn from(e: CommandError) -> Self {
        SessionError::Command(e)
    }
}

pub(crate) fn protocol(msg: impl Into<String>) -> SessionError {
    SessionError::Protocol(msg.into())
}
