//! Sans-I/O RTMP: AMF, handshake, chunk codec, messages, server and client sessions.
