use super::*;
use crate::rtmp::handshake::HandshakeKind;
use crate::rtmp::server_session::{ServerConfig, ServerEvent, ServerSession};

fn seeded(seed: u64) -> Box<RandomFill> {
    let mut x = seed | 1;
    Box::new(move |buf: &mut [u8]| {
        for b in buf {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    })
}

fn cfg(mode: ClientMode) -> ClientConfig {
    ClientConfig {
        app: "live".into(),
        tc_url: "rtmp://127.0.0.1:1935/live".into(),
        stream: "key?token=1".into(),
        mode,
        out_chunk_size: 4096,
    }
}

/// Client and server connected in memory; the test plays the server's application.
struct Pair {
    c: ClientSession,
    s: ServerSession,
    server_events: Vec<ServerEvent>,
    client_events: Vec<ClientEvent>,
}

impl Pair {
    fn new(mode: ClientMode) -> Self {
        Pair {
            c: ClientSession::with_random(cfg(mode), seeded(1)),
            s: ServerSession::with_random(ServerConfig::default(), seeded(2)),
            server_events: Vec::new(),
            client_events: Vec::new(),
        }
    }

    /// Moves bytes both ways (in small pieces) until both sides are quiet; accepts every request.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            if let Some(b) = self.c.take_output() {
                for piece in b.chunks(700) {
                    self.s.feed(piece).unwrap();
                }
                moved = true;
            }
            while let Some(e) = self.s.poll_event() {
                match &e {
                    ServerEvent::Connect { .. } => self.s.accept_connect().unwrap(),
                    ServerEvent::Publish { .. } => self.s.accept_publish().unwrap(),
                    ServerEvent::Play { .. } => self.s.accept_play().unwrap(),
                    _ => {}
                }
                self.server_events.push(e);
                moved = true;
            }
            if let Some(b) = self.s.take_output() {
                for piece in b.chunks(333) {
                    self.c.feed(piece).unwrap();
                }
                moved = true;
            }
            while let Some(e) = self.c.poll_event() {
                self.client_events.push(e);
                moved = true;
            }
            if !moved {
                return;
            }
        }
    }
}

fn media(type_id: u8, timestamp: u32, payload: Vec<u8>) -> Message {
    Message {
        type_id,
        timestamp,
        stream_id: 1,
        payload: Bytes::from(payload),
    }
}

#[test]
fn publish_against_our_server() {
    let mut p = Pair::new(ClientMode::Publish);
    p.pump();
    assert!(p.c.is_publishing());
    assert!(matches!(p.client_events[0], ClientEvent::Connected));
    assert!(matches!(
        p.client_events.last(),
        Some(ClientEvent::Publishing)
    ));
    assert!(p
        .client_events
        .iter()
        .any(|e| matches!(e, ClientEvent::Status(s) if s.code == "NetStream.Publish.Start")));
    match &p.server_events[..] {
        [ServerEvent::Connect {
            app,
            tc_url,
            flash_ver,
            ..
        }, ServerEvent::Publish {
            stream_id,
            name,
            query,
            kind,
        }] => {
            assert_eq!(app, "live");
            assert_eq!(tc_url.as_deref(), Some("rtmp://127.0.0.1:1935/live"));
            assert_eq!(flash_ver.as_deref(), Some(FLASH_VER));
            assert_eq!(
                (*stream_id, name.as_str(), query.as_deref(), kind.as_str()),
                (1, "key", Some("token=1"), "live")
            );
        }
        e => panic!("{e:?}"),
    }

    let meta_body = amf0::encode_all(&[
        "onMetaData".into(),
        Value::EcmaArray(vec![("duration".into(), Value::Number(0.0))]),
    ])
    .to_vec();
    let sent = vec![
        media(18, 0, meta_body.clone()),
        media(9, 0, vec![0x17, 0, 0, 0, 0, 1, 2, 3]),
        media(8, 0, vec![0xAF, 0, 0x12, 0x10]),
        media(9, 40, vec![0x27; 10_000]),
        media(8, 0x0100_0000, vec![0xAF, 1, 9]),
    ];
    for m in &sent {
        p.c.send_media(m).unwrap();
    }
    p.server_events.clear();
    p.pump();
    let got: Vec<Message> = p
        .server_events
        .iter()
        .map(|e| match e {
            ServerEvent::Media(m) => m.clone(),
            e => panic!("{e:?}"),
        })
        .collect();
    // The server strips the @setDataFrame the client added: metadata arrives as sent.
    assert_eq!(got, sent);
    assert!(p.c.send_media(&media(20, 0, vec![])).is_err());
}

#[test]
fn play_against_our_server() {
    let mut p = Pair::new(ClientMode::Play);
    p.pump();
    assert!(p.c.is_playing());
    assert!(matches!(
        &p.server_events[..],
        [ServerEvent::Connect { .. }, ServerEvent::Play { name, .. }] if name == "key"
    ));
    let codes: Vec<&str> = p
        .client_events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Status(s) => Some(s.code.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        [
            "NetStream.Play.Reset",
            "NetStream.Play.Start",
            "NetStream.Data.Start",
            "NetStream.Play.PublishNotify"
        ]
    );
    // The engine's pre-serialised media, as it would write it to the socket.
    let sent = vec![
        media(18, 0, amf0::encode_all(&["onMetaData".into()]).to_vec()),
        media(9, 0, vec![0x17; 9000]),
        media(8, 23, vec![0xAF, 1, 5]),
    ];
    let mut wire = BytesMut::new();
    for (csid, m) in [5u32, 6, 4].iter().zip(&sent) {
        encode_message(&mut wire, p.s.out_chunk_size() as usize, *csid, m);
    }
    p.client_events.clear();
    p.c.feed(&wire).unwrap();
    let got: Vec<Message> = std::iter::from_fn(|| p.c.poll_event())
        .map(|e| match e {
            ClientEvent::Media(m) => m,
            e => panic!("{e:?}"),
        })
        .collect();
    assert_eq!(got, sent);
}

#[test]
fn digest_handshake_is_used_between_our_ends() {
    let mut c = ClientSession::with_random(cfg(ClientMode::Play), seeded(3));
    let mut hs = crate::rtmp::handshake::ServerHandshake::new();
    let mut rng = seeded(4);
    let c0c1 = c.take_output().unwrap();
    hs.feed(&c0c1, &mut rng).unwrap();
    assert_eq!(hs.kind(), Some(HandshakeKind::Digest));
    c.feed(&hs.take_output().unwrap()).unwrap();
    let out = c.take_output().unwrap();
    // C2 followed by the connect command.
    assert_eq!(hs.feed(&out, &mut rng).unwrap(), 1536);
    assert_eq!(hs.c2_valid(), Some(true));
}

#[test]
fn rejected_connect_is_an_error_event() {
    let mut c = ClientSession::with_random(cfg(ClientMode::Publish), seeded(5));
    let mut s = ServerSession::with_random(ServerConfig::default(), seeded(6));
    s.feed(&c.take_output().unwrap()).unwrap();
    c.feed(&s.take_output().unwrap()).unwrap();
    s.feed(&c.take_output().unwrap()).unwrap();
    assert!(matches!(s.poll_event(), Some(ServerEvent::Connect { .. })));
    s.reject_connect("unknown app").unwrap();
    c.feed(&s.take_output().unwrap()).unwrap();
    match c.poll_event() {
        Some(ClientEvent::Error(info)) => {
            assert_eq!(info.code, "NetConnection.Connect.Rejected");
            assert_eq!(info.description, "unknown app");
        }
        e => panic!("{e:?}"),
    }
    assert!(c.send_media(&media(8, 0, vec![1])).is_err());
}

#[test]
fn rejected_publish_is_a_status_event() {
    let mut c = ClientSession::with_random(cfg(ClientMode::Publish), seeded(7));
    let mut s = ServerSession::with_random(ServerConfig::default(), seeded(8));
    let mut events = Vec::new();
    for _ in 0..10 {
        if let Some(b) = c.take_output() {
            s.feed(&b).unwrap();
        }
        while let Some(e) = s.poll_event() {
            match e {
                ServerEvent::Connect { .. } => s.accept_connect().unwrap(),
                ServerEvent::Publish { .. } => s
                    .reject_publish("NetStream.Publish.BadName", "invalid key")
                    .unwrap(),
                _ => {}
            }
        }
        if let Some(b) = s.take_output() {
            c.feed(&b).unwrap();
        }
        events.extend(std::iter::from_fn(|| c.poll_event()));
    }
    assert!(events.iter().any(|e| matches!(
        e,
        ClientEvent::Status(s) if s.level == "error" && s.code == "NetStream.Publish.BadName"
    )));
    assert!(!c.is_publishing());
}

#[test]
fn client_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<ClientSession>();
}
